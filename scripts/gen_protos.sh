#!/usr/bin/env bash
# Regenerates the Python stubs of proto/conveyor/v1 into sdk/python/src (the one place
# generated code lives). Generator versions are pinned in requirements/dev.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
out=sdk/python/src
rm -f "$out"/conveyor/v1/*_pb2*.py "$out"/conveyor/v1/*_pb2*.pyi
"$PY" -m grpc_tools.protoc -I proto \
  --plugin=protoc-gen-mypy="$(dirname "$PY")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$PY")/protoc-gen-mypy_grpc" \
  --python_out="$out" --mypy_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  proto/conveyor/v1/*.proto
