# Conveyor developer commands. `make run` and `make test` work on a fresh machine:
# they create .venv and node_modules themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install proto proto-check lint test run bench certs clean

install: $(STAMP) node_modules/.installed

$(STAMP): requirements/dev.txt sdk/python/pyproject.toml services/scheduler/pyproject.toml services/worker/pyproject.toml \
		services/dashboard/pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt -e 'sdk/python[otlp]' -e 'services/scheduler[otlp]' \
		-e 'services/worker[otlp]' -e services/dashboard
	touch $@

# `npm install` honours package-lock.json; `npm ci` is avoided because npm wrongly reports the
# lock as out of sync when it lacks other platforms' optional binaries (npm/cli#4828).
node_modules/.installed: package.json package-lock.json scripts/dashboard_assets.sh
	npm install --no-audit --no-fund --loglevel=error
	scripts/dashboard_assets.sh
	touch $@

proto: $(STAMP)
	PYTHON=$(PY) scripts/gen_protos.sh

proto-check: proto
	git diff --exit-code -- sdk/python/src/conveyor/v1 || (echo "generated stubs differ from proto/: run make proto and commit" && exit 1)
	test -z "$$(git status --porcelain -- sdk/python/src/conveyor/v1)" || (echo "untracked generated files: run make proto and commit" && exit 1)

lint: install
	$(PY) -m ruff check .
	cd proto && ../node_modules/.bin/buf lint

test: install lint proto-check
	$(PY) -m pytest

run: install
	$(VENV)/bin/conveyor dev --demo

# Celery (the comparison) and the optional gevent/py-spy/coredis/valkey-glide are installed here only,
# never by `make install`.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) bench/requirements.txt bench/requirements-extra.txt
	$(PY) -m pip install --quiet -r bench/requirements.txt
	$(PY) -m pip install --quiet -r bench/requirements-extra.txt || \
		echo "bench: bench/requirements-extra.txt is not installable here: Celery calibrated without gevent," \
			"no --profile, the Redis clients' micro-benchmark without coredis and valkey-glide"
	touch $@

bench: install $(BENCH_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

# A private CA, certificates, tokens and Redis' ACL for compose.yaml (deploy/certs, not in git);
# CERTS_ARGS=--force makes new ones (the schedulers pick changed files up without a restart).
certs: install
	$(PY) scripts/make_certs.py --out deploy/certs $(CERTS_ARGS)

clean:
	rm -rf $(VENV) node_modules .conveyor .pytest_cache .ruff_cache
