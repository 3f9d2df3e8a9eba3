"""A Triton client for the Triton tests and docs/triton.md, run from the PyTriton env: it
imported infersight, so each call is a CLIENT span whose ``traceparent`` Triton continues, and
a client latency observation (``infersight_client_request_duration_seconds``).

    python tests/apps/triton_client.py HTTP_PORT GRPC_PORT CALLS RPS [METRICS_PORT LINGER_S]

Calls ``double`` over HTTP and gRPC in turn, CALLS times at about RPS calls a second (at most
MAX_SECONDS: a slow box makes fewer calls, not an endless run), then
prints one JSON line: the calls made and the client-side P50/P99 in seconds. With METRICS_PORT,
it serves its /metrics there and stays LINGER_S more seconds for a last scrape.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import infersight
import infersight.auto

MAX_SECONDS = 60


def main() -> None:
    http, grpc, calls, rps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    if len(sys.argv) > 5:
        infersight.start_metrics_server(int(sys.argv[5]), "127.0.0.1")
    clients = [
        (httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{http}")),
        (grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")),
    ]
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    took: list[float] = []
    end = time.monotonic() + MAX_SECONDS
    n = 0
    while n < calls and time.monotonic() < end:
        module, client = clients[n % 2]
        x = module.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(data)
        start = time.perf_counter()
        result = client.infer("double", [x])
        took.append(time.perf_counter() - start)
        assert (result.as_numpy("y") == data * 2).all()
        n += 1
        time.sleep(max(0.0, 1.0 / rps - took[-1]))
    took.sort()
    print(json.dumps({"calls": n, "p50_s": took[len(took) // 2], "p99_s": took[int(len(took) * 0.99)]}), flush=True)
    if len(sys.argv) > 6:
        time.sleep(float(sys.argv[6]))
    infersight.shutdown()


if __name__ == "__main__":
    main()
