#!/usr/bin/env bash
# Regenerates the Python stubs in service/oip/ from proto/. tests/oip/test_stubs_fresh.py
# runs this into a temporary folder and fails when the committed stubs differ.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-"$here/service/oip"}
python -m grpc_tools.protoc -I "$here/proto" \
  --python_out="$out" --mypy_out="$out" --grpc_python_out="$out" --mypy_grpc_out="$out" \
  "$here/proto/open_inference.proto" "$here/proto/grpc_inference_service.proto"
rm -f "$out/open_inference_pb2_grpc.py" "$out/open_inference_pb2_grpc.pyi"  # no service in that file
# protoc writes top-level imports (`import open_inference_pb2`); the stubs live in a package.
for f in "$out"/*_pb2*.py "$out"/*_pb2*.pyi; do
  sed -i -E 's/^import (open_inference_pb2|grpc_inference_service_pb2)( as |$)/from . import \1\2/' "$f"
done
