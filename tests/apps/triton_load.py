"""Concurrent load on Triton for the layered test (tests/e2e/test_triton_live.py), run from the
PyTriton env: an app that imported infersight, so every call is a client latency observation
(``infersight_client_request_duration_seconds``, its endpoint naming the model).

    python tests/apps/triton_load.py HTTP_PORT GRPC_PORT CALLS THREADS METRICS_PORT LINGER_S [MODEL]

THREADS threads call MODEL (default ``double``) over HTTP and gRPC in turn (each its own clients), CALLS in all
(at most MAX_SECONDS: a slow box makes fewer calls, not an endless run); serves /metrics on
METRICS_PORT and stays LINGER_S more seconds for a last scrape, then prints one JSON line: the
calls made and the client-side P50/P99 in seconds.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import infersight
import infersight.auto

MAX_SECONDS = 60


def main() -> None:
    http, grpc, calls, threads = (int(a) for a in sys.argv[1:5])
    model = sys.argv[7] if len(sys.argv) > 7 else "double"
    infersight.start_metrics_server(int(sys.argv[5]), "127.0.0.1")
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    took: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + MAX_SECONDS
    left = [calls]

    def worker() -> None:
        clients = [
            (httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{http}")),
            (grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")),
        ]
        n = 0
        while time.monotonic() < end:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            module, client = clients[n % 2]
            n += 1
            x = module.InferInput("x", [1, 4], "FP32")
            x.set_data_from_numpy(data)
            start = time.perf_counter()
            result = client.infer(model, [x])
            seconds = time.perf_counter() - start
            assert (result.as_numpy("y") == data * 2).all()
            with lock:
                took.append(seconds)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(MAX_SECONDS + 30)
    took.sort()
    print(json.dumps({"calls": len(took), "p50_s": took[len(took) // 2], "p99_s": took[int(len(took) * 0.99)]}))
    sys.stdout.flush()
    time.sleep(float(sys.argv[6]))
    infersight.shutdown()


if __name__ == "__main__":
    main()
