"""A gRPC sentiment server on the KServe v2 / Open Inference Protocol, written as one usually is,
plus one line: ``import infersight.auto``. That line gives a server span per RPC (named after the
method, e.g. ``inference.GRPCInferenceService/ModelInfer``, continuing the caller's trace from
the ``traceparent`` metadata), ``preprocess`` / ``model`` / ``postprocess`` stage spans from the
pipeline, latency histograms with exemplars on ``http://<host>:9464/metrics``, and the model's
load time.

    python examples/grpc_server/server.py --port 8001 [--aio] [--model-dir DIR_OR_HUB_ID]
    python examples/load/grpc_load.py --target 127.0.0.1:8001 --rps 20 --duration 30

ModelInfer takes a BYTES input ``text`` of shape [N] (typed ``bytes_contents`` or
``raw_input_contents``) and answers BYTES ``label`` and FP32 ``score``, both of shape [N].
Server-side faults come from the file named by $INFERSIGHT_DEMO_FAULTS (examples/faults.py).
"""

import infersight.auto  # noqa: F401, I001  (the one added line: first, before the app imports)

import argparse
import asyncio
import os
import struct
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
sys.path[:0] = [str(HERE), str(EXAMPLES)]
import grpc_predict_v2_pb2 as pb  # noqa: E402
import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402

import faults  # noqa: E402
from sentiment_model import DEFAULT_MODEL, load_model  # noqa: E402


class BadRequest(Exception):
    """The request doesn't fit the model's signature: INVALID_ARGUMENT for the client."""


def decode_bytes_tensor(raw: bytes) -> list[bytes]:
    """KServe v2 raw BYTES: each element is a 4-byte little-endian length, then its bytes."""
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise BadRequest("truncated BYTES tensor")
        (size,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + size > len(raw):
            raise BadRequest("truncated BYTES tensor")
        items.append(raw[at : at + size])
        at += size
    return items


def encode_bytes_tensor(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


class SentimentModel:
    """The served model: a name, a pipeline, and the v2 signature."""

    def __init__(self, source: str, name: str | None = None, version: str = "1") -> None:
        self.source = source
        self.name = name or Path(source.rstrip("/")).name
        self.version = version
        self._lock = threading.Lock()
        self._classifier = load_model(source)

    def classifier(self) -> Any:
        with self._lock:
            if faults.take_cold_start():
                self._classifier = load_model(self.source)
            return self._classifier

    def texts(self, request: pb.ModelInferRequest) -> list[str]:
        for index, tensor in enumerate(request.inputs):
            if tensor.name != "text":
                continue
            if tensor.datatype != "BYTES":
                raise BadRequest(f"input 'text' must be BYTES, got {tensor.datatype}")
            if request.raw_input_contents:
                items = decode_bytes_tensor(request.raw_input_contents[index])
            else:
                items = list(tensor.contents.bytes_contents)
            if not items:
                raise BadRequest("input 'text' is empty")
            return [item.decode("utf-8", errors="replace") for item in items]
        raise BadRequest("expected a BYTES input named 'text'")

    def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        texts = self.texts(request)
        clf = self.classifier()
        # Long inputs are cut to what the model's position embeddings can take.
        max_length = getattr(clf.model.config, "max_position_embeddings", 512)
        results = clf(texts, truncation=True, max_length=max_length)
        labels = [r["label"].encode() for r in results]
        scores = np.array([r["score"] for r in results], dtype="<f4")
        response = pb.ModelInferResponse(model_name=self.name, model_version=self.version, id=request.id)
        label_out = response.outputs.add(name="label", datatype="BYTES", shape=[len(texts)])
        score_out = response.outputs.add(name="score", datatype="FP32", shape=[len(texts)])
        if request.raw_input_contents:  # answer in the form the client used (Triton clients: raw)
            response.raw_output_contents.extend([encode_bytes_tensor(labels), scores.tobytes()])
        else:
            label_out.contents.bytes_contents.extend(labels)
            score_out.contents.fp32_contents.extend(scores.tolist())
        return response

    def metadata(self) -> pb.ModelMetadataResponse:
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=self.name,
            versions=[self.version],
            platform="transformers",
            inputs=[tensor(name="text", datatype="BYTES", shape=[-1])],
            outputs=[
                tensor(name="label", datatype="BYTES", shape=[-1]),
                tensor(name="score", datatype="FP32", shape=[-1]),
            ],
        )

    def serves(self, name: str, version: str = "") -> bool:
        return name == self.name and version in ("", self.version)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The v2 service for one model, on a thread-pool ``grpc.server``."""

    def __init__(self, model: SentimentModel) -> None:
        self.model = model

    def ServerLive(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=True)

    def ServerMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(name="infersight-example", version="1")

    def ModelReady(self, request: Any, context: grpc.ServicerContext) -> Any:
        return pb.ModelReadyResponse(ready=self.model.serves(request.name, request.version))

    def ModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not self.model.serves(request.name, request.version):
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name!r}")
        return self.model.metadata()

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not self.model.serves(request.model_name, request.model_version):
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model_name!r}")
        try:
            return self.model.infer(request)
        except BadRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


class AioInferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The same service on ``grpc.aio``: the pipeline runs in a worker thread, off the loop."""

    def __init__(self, model: SentimentModel) -> None:
        self.model = model

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(name="infersight-example", version="1")

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ModelReadyResponse(ready=self.model.serves(request.name, request.version))

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not self.model.serves(request.name, request.version):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name!r}")
        return self.model.metadata()

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not self.model.serves(request.model_name, request.model_version):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model_name!r}")
        try:
            return await asyncio.to_thread(self.model.infer, request)
        except BadRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


def serve(model: SentimentModel, address: str, workers: int = 8) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(model), server)
    port = server.add_insecure_port(address)
    server.start()
    print(f"serving {model.name} (gRPC, KServe v2) on port {port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=2).wait()


async def serve_aio(model: SentimentModel, address: str) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(AioInferenceServicer(model), server)
    port = server.add_insecure_port(address)
    await server.start()
    print(f"serving {model.name} (grpc.aio, KServe v2) on port {port}", flush=True)
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(grace=2)


def main() -> None:
    parser = argparse.ArgumentParser(description="Sentiment server (gRPC KServe v2 + transformers).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--model-dir", default=os.environ.get("MODEL", str(DEFAULT_MODEL)), help="local model dir or hub id (env MODEL)"
    )
    parser.add_argument("--model-name", default=None, help="name clients use (default: the dir name)")
    parser.add_argument("--aio", action="store_true", help="serve with grpc.aio instead of a thread pool")
    parser.add_argument("--workers", type=int, default=8, help="threads of the sync server")
    args = parser.parse_args()
    model = SentimentModel(args.model_dir, args.model_name)  # loaded before serving: no cold start
    address = f"{args.host}:{args.port}"
    if args.aio:
        try:
            asyncio.run(serve_aio(model, address))
        except KeyboardInterrupt:
            pass
    else:
        serve(model, address, args.workers)


if __name__ == "__main__":
    main()
