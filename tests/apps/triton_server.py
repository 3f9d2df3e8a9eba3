"""A PyTriton server for the Triton tests and docs/triton.md, run from the PyTriton env
(tools/build-triton-env.sh): the real ``tritonserver`` on loopback, its metrics with summaries,
its OpenTelemetry traces to ``TRACE_URL``, and two models, ``double`` and ``double_slow``,
whose inference callables run in this process, which imported infersight (its stages, its
/metrics with the SLO gauge).

    python tests/apps/triton_server.py HTTP_PORT GRPC_PORT METRICS_PORT TRACE_URL

``DOUBLE_SLEEP_S`` (default 0.005): the models' compute time per batch. ``DOUBLE_SLOW_FILE``:
a path; while that file exists, ``double_slow`` sleeps the seconds it holds instead (a slow
model, switched on and off while the server runs; a model of its own, so that its 5 m window
holds only the slow calls).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

import infersight.auto  # noqa: F401  (before pytriton: its bind is patched on import)

SLEEP_S = float(os.environ.get("DOUBLE_SLEEP_S", "0.005"))
SLOW_FILE = os.environ.get("DOUBLE_SLOW_FILE", "")


def _sleep_s() -> float:
    try:
        with open(SLOW_FILE) as switch:
            return float(switch.read().strip() or SLEEP_S)
    except (OSError, ValueError):
        return SLEEP_S


@batch
def double(x: np.ndarray) -> dict[str, np.ndarray]:
    time.sleep(SLEEP_S)
    return {"y": x * 2}


@batch
def double_slow(x: np.ndarray) -> dict[str, np.ndarray]:
    time.sleep(_sleep_s() if SLOW_FILE else SLEEP_S)
    return {"y": x * 2}


def main() -> None:
    http, grpc, metrics, trace_url = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=http,
        grpc_address="127.0.0.1",
        grpc_port=grpc,
        metrics_address="127.0.0.1",
        metrics_port=metrics,
        allow_gpu_metrics=False,
        metrics_config=["summary_latencies=true"],
        trace_config=[
            "mode=opentelemetry",
            "rate=1",
            "level=TIMESTAMPS",
            f"opentelemetry,url={trace_url}",
            "opentelemetry,resource=service.name=triton",
        ],
    )
    with Triton(config=config) as triton:
        for name, func in (("double", double), ("double_slow", double_slow)):
            triton.bind(
                model_name=name,
                infer_func=func,
                inputs=[Tensor(name="x", dtype=np.float32, shape=(-1,))],
                outputs=[Tensor(name="y", dtype=np.float32, shape=(-1,))],
                config=ModelConfig(max_batch_size=8, batcher=DynamicBatcher(max_queue_delay_microseconds=500)),
            )
        triton.serve()


if __name__ == "__main__":
    main()
