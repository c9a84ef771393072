#!/bin/sh
# Regenerate the Python modules of the snapshot API protos (run from anywhere; needs grpcio-tools).
# The include root is src/, so the generated imports read `from sealpod.runtime.snapshotter.proto import ...`.
set -eu
repo=$(cd "$(dirname "$0")/../../../../.." && pwd)
python=${PYTHON:-"$repo/.venv/bin/python"}
cd "$repo/src"
"$python" -m grpc_tools.protoc -I. \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    sealpod/runtime/snapshotter/proto/mount.proto \
    sealpod/runtime/snapshotter/proto/snapshots.proto
rm -f sealpod/runtime/snapshotter/proto/mount_pb2_grpc.py  # mount.proto has no service
