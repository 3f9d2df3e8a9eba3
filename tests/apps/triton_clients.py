"""The other tritonclient clients, for tests/e2e/test_triton_live.py, run from the PyTriton env
in an app that imported infersight: the asyncio HTTP client (tritonclient.http.aio) and gRPC
streams (tritonclient.grpc's ``stream_infer``, and tritonclient.grpc.aio's).

    python tests/apps/triton_clients.py HTTP_PORT GRPC_PORT METRICS_PORT

Makes CALLS calls with each, then prints one JSON line: per client, the calls that came back
right, and this process's client latency counts by endpoint (read from its own /metrics).
"""

from __future__ import annotations

import asyncio
import json
import queue
import sys
import time
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http.aio as httpaio

import infersight
import infersight.auto

CALLS = 3
DATA = np.arange(4, dtype=np.float32).reshape(1, 4)


async def http_aio(port: int) -> int:
    client = httpaio.InferenceServerClient(f"127.0.0.1:{port}")
    ok = 0
    try:
        for _ in range(CALLS):
            x = httpaio.InferInput("x", [1, 4], "FP32")
            x.set_data_from_numpy(DATA)
            result = await client.infer("double", [x])
            ok += bool((result.as_numpy("y") == DATA * 2).all())
    finally:
        await client.close()
    return ok


def grpc_stream(port: int) -> int:
    """One stream, CALLS requests on it."""
    answers: queue.Queue[object] = queue.Queue()
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    client.start_stream(callback=lambda result, error: answers.put(error or result))
    for _ in range(CALLS):
        x = grpcclient.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(DATA)
        client.async_stream_infer("double", [x])
    ok = 0
    for _ in range(CALLS):
        answer = answers.get(timeout=30)
        ok += bool(hasattr(answer, "as_numpy") and (answer.as_numpy("y") == DATA * 2).all())  # type: ignore[union-attr]
    client.stop_stream()
    client.close()
    return ok


async def grpc_aio_stream(port: int) -> int:
    client = grpcaio.InferenceServerClient(f"127.0.0.1:{port}")

    async def requests():  # type: ignore[no-untyped-def]
        for _ in range(CALLS):
            x = grpcaio.InferInput("x", [1, 4], "FP32")
            x.set_data_from_numpy(DATA)
            yield {"model_name": "double", "inputs": [x]}

    ok = 0
    try:
        async for result, error in client.stream_infer(requests()):
            ok += bool(error is None and (result.as_numpy("y") == DATA * 2).all())
    finally:
        await client.close()
    return ok


def main() -> None:
    http, grpc, metrics = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    infersight.start_metrics_server(metrics, "127.0.0.1")
    done = {
        "http_aio": asyncio.run(http_aio(http)),
        "grpc_stream": grpc_stream(grpc),
        "grpc_aio_stream": asyncio.run(grpc_aio_stream(grpc)),
    }
    counts: dict[str, float] = {}
    name = "infersight_client_request_duration_seconds_count"
    deadline = time.monotonic() + 10  # the worker records the calls off the request path
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        counts = {
            line.split("{", 1)[1].rsplit("}", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{")
        }
        if sum(counts.values()) >= CALLS + 2:  # the aio calls, one per stream
            break
        time.sleep(0.2)
    print(json.dumps({"ok": done, "counts": counts}), flush=True)
    infersight.shutdown()


if __name__ == "__main__":
    main()
