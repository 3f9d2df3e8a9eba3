#!/bin/sh
# Regenerate grpc_predict_v2_pb2.py / _pb2_grpc.py from grpc_predict_v2.proto.
# The generated modules are committed, so running the example needs no grpcio-tools.
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-${INFERSIGHT_VENV:-$HOME/.cache/infersight/venv}/bin/python}"
"$PYTHON" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. grpc_predict_v2.proto
