#!/bin/sh
# Regenerate the Python modules of cri_subset.proto (run from anywhere; needs grpcio-tools).
# The include root is the repository, so the generated imports read `from tests.cri.proto import ...`.
set -eu
repo=$(cd "$(dirname "$0")/../../.." && pwd)
python=${PYTHON:-"$repo/.venv/bin/python"}
cd "$repo"
"$python" -m grpc_tools.protoc -I. \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    tests/cri/proto/cri_subset.proto
