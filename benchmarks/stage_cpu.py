"""What computing-vs-waiting costs: thread CPU time at stage boundaries, and the GIL probe.

    python benchmarks/stage_cpu.py [--rounds 7] [--requests 20000] [--quick]

Side by side, in one process, rounds interleaved so that the machine's other load falls on
both sides alike; the minimum of the rounds is compared. Spans are off
(OTEL_TRACES_EXPORTER=none); metrics are on, so the worker's part is included.
  stage boundaries   a request with three empty stages, INFERSIGHT_STAGE_CPU_TIME on / off
  thread_time_ns     one call, against perf_counter_ns (the clock stages already read)
  GIL probe          a fixed pure-Python loop (a CPU-bound request) with INFERSIGHT_GIL_PROBE on / off
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

import infersight
from infersight import _runtime


def _requests(n: int) -> None:
    for _ in range(n):
        with infersight.request(model="m"):
            with infersight.stage("preprocess"):
                pass
            with infersight.stage("model"):
                pass
            with infersight.stage("postprocess"):
                pass


def _loop(n: int) -> None:
    total = 0
    for i in range(n):
        total += i * i % 7


def _timed(setup: dict[str, bool], work: Callable[[int], None], n: int) -> float:
    infersight.init(registry=CollectorRegistry(), traces=False, gpu="off", metrics_port=0, **setup)
    try:
        start = time.perf_counter()
        work(n)
        return time.perf_counter() - start
    finally:
        _runtime.shutdown()


def _pair(
    name: str,
    on: dict[str, bool],
    off: dict[str, bool],
    work: Callable[[int], None],
    n: int,
    rounds: int,
    unit: str,
    per: int,
) -> None:
    with_, without = [], []
    for _ in range(rounds):
        without.append(_timed(off, work, n))
        with_.append(_timed(on, work, n))
    a, b = min(with_) / per * 1e9, min(without) / per * 1e9
    print(f"| {name} | {a:.0f} | {b:.0f} | {a / b:.3f} | {(a - b):+.0f} {unit} |")


def _call_cost(fn: Callable[[], int], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--quick", action="store_true", help="a few rounds, to check that it runs")
    args = parser.parse_args()
    rounds, n = (2, 2000) if args.quick else (args.rounds, args.requests)
    print("Spans off (OTEL_TRACES_EXPORTER=none), metrics on; minimum of", rounds, "interleaved rounds.\n")
    print("| what | on ns | off ns | on / off | added |")
    print("| --- | --- | --- | --- | --- |")
    quiet = {"gil_probe": False}
    _pair(
        "request, 3 stages",
        {**quiet, "stage_cpu_time": True},
        {**quiet, "stage_cpu_time": False},
        _requests,
        n,
        rounds,
        "ns/request",
        n,
    )
    loop_n = n * 100
    cpu = {"stage_cpu_time": False}
    _pair(
        "CPU-bound loop, GIL probe",
        {**cpu, "gil_probe": True},
        {**cpu, "gil_probe": False},
        _loop,
        loop_n,
        rounds,
        "ns/iteration",
        loop_n,
    )
    calls = n * 50
    tt = min(_call_cost(time.thread_time_ns, calls) for _ in range(rounds))
    pc = min(_call_cost(time.perf_counter_ns, calls) for _ in range(rounds))
    print(f"\nthread_time_ns: {tt:.0f} ns a call; perf_counter_ns: {pc:.0f} ns (two calls per stage)")


if __name__ == "__main__":
    main()
