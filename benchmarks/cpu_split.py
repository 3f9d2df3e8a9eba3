"""Where a request's CPU goes, by thread: request path, infersight worker, span export.

    python benchmarks/cpu_split.py [--rounds 40] [--requests 100] [--quick]

Throughput at saturation of a CPU-bound server is its CPU per request, so the added CPU per
request predicts the throughput ratio (bare / instrumented) without the load generator's noise:
server_load.py's saturation figures vary +-30% between rounds on a shared 2-core box, CPU time
per thread much less. One process, benchmarks/bench_app.py (Flask + a transformers pipeline)
driven by Flask's test client, variants switched in place and interleaved (paired rounds):
  bare            instrumentation off
  floor           no infersight: a bare function at each of the 6 points infersight hooks (WSGI
                  app, route dispatch, pipeline call, preprocess / _forward / postprocess) that
                  reads the clock twice and appends to a list. No design that times the stages
                  from Python can cost less on the request path.
  metrics only    infersight on, spans not exported (the worker observes metrics only)
  infersight      on, spans exported over OTLP/gRPC (our encoder)
  stock encoder   on, the OTel exporter's own encoder (what plain OTel costs)
  keep 0.1        on, INFERSIGHT_TRACES_KEEP_RATIO=0.1 (errors and slow traces kept, 10% of the rest)
The process is pinned to CPU 0 and the collector to CPU 1, as in server_load.py: a server
saturating its cores leaves no idle core for the background threads, and on SMT siblings a
concurrent thread would slow the request path's own instructions (measured here: ~+100 µs per
request unpinned). Spans go to our built collector (shipped config on loopback) when it is built, else nowhere
(OTEL_TRACES_EXPORTER=none, export column empty). Each block drains the worker and flushes the
exporter before its CPU is read, so background work lands in the block that caused it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench_support import export_to_shipped_collector

VARIANTS = ("bare", "floor", "metrics only", "infersight", "stock encoder", "keep 0.1")
THREADS = {"MainThread": "request path", "infersight-worker": "worker", "OtelBatchSpanRecordProcessor": "export"}
BODY = {"text": "the movie was good and the service was very fast"}


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each of this process's threads, by the name we report it under."""
    out: dict[str, float] = dict.fromkeys(THREADS.values(), 0.0)
    for thread in threading.enumerate():
        name = THREADS.get(thread.name)
        if name is not None and thread.ident is not None:
            with contextlib.suppress(OSError):
                out[name] += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return out


def cpu_in_thread(fn: Any) -> float:
    """Run ``fn`` on a helper thread and return its CPU seconds: a flush or drain called from
    the main thread would bill background work to the request path."""
    spent: list[float] = []

    def run() -> None:
        start = time.thread_time()
        fn()
        spent.append(time.thread_time() - start)

    helper = threading.Thread(target=run)
    helper.start()
    helper.join()
    return spent[0]


def timed(fn: Any, log: list[tuple[int, int]]) -> Any:
    """The floor's hook: two clock reads and an append around the hooked function."""
    clock = time.perf_counter_ns

    def hook(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        result = fn(*args, **kwargs)
        log.append((start, clock()))
        return result

    return hook


def floor_hooks(app_class: type, pipeline_class: type) -> list[tuple[type, str, Any]]:
    """(owner, attribute, original) for the 6 points infersight hooks in bench_app."""
    from transformers.pipelines.base import Pipeline

    points = [(app_class, "wsgi_app"), (app_class, "dispatch_request"), (Pipeline, "__call__")]
    points += [(pipeline_class, name) for name in ("preprocess", "_forward", "postprocess")]
    return [(owner, name, vars(owner)[name]) for owner, name in points]


def measure(rounds: int, per_block: int) -> dict[str, dict[str, list[float]]]:
    os.environ["BENCH_VARIANT"] = "infersight"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    import bench_app
    import infersight
    from infersight import _compat
    from infersight._keep import TailKeep
    from infersight.config import Config
    from infersight.instrumentation import instrument_all, uninstrument_all

    rt = infersight.get_runtime()
    assert rt is not None
    uninstrument_all()
    floor_log: list[tuple[int, int]] = []
    floor_points = floor_hooks(type(bench_app.app), type(bench_app.classifier))
    emitter = rt.worker.emitter
    keep10 = TailKeep(Config.from_env(traces_keep_ratio=0.1))
    fast_translate = _compat.fast_otlp_exporter_class()._translate_data

    def switch(variant: str) -> None:
        uninstrument_all()
        for owner, name, original in floor_points:
            setattr(owner, name, timed(original, floor_log) if variant == "floor" else original)
        floor_log.clear()
        if variant not in ("bare", "floor"):
            instrument_all()
        rt.worker.emitter = None if variant == "metrics only" else emitter
        rt.worker.keep = keep10 if variant == "keep 0.1" else None
        stock = variant == "stock encoder"
        _compat.fast_otlp_exporter_class()._translate_data = (  # type: ignore[method-assign]
            OTLPSpanExporter._translate_data if stock else fast_translate
        )

    def settle() -> dict[str, float]:
        provider = rt.provider
        return {
            "worker": cpu_in_thread(rt.worker.drain),
            "export": cpu_in_thread(provider.force_flush) if provider is not None else 0.0,
        }

    client = bench_app.app.test_client()
    for _ in range(200):
        client.post("/predict", json=BODY)
    settle()
    per_req: dict[str, dict[str, list[float]]] = {v: {t: [] for t in THREADS.values()} for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            switch(variant)
            client.post("/predict", json=BODY)
            settle()
            before = thread_cpu()
            for _ in range(per_block):
                if client.post("/predict", json=BODY).status_code != 200:
                    raise SystemExit("request failed")
            helpers = settle()
            after = thread_cpu()
            for name in THREADS.values():
                spent = after[name] - before[name] + helpers.get(name, 0.0)
                per_req[variant][name].append(spent / per_block * 1e6)
    switch("infersight")
    return per_req


def main() -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--requests", type=int, default=100, help="requests per variant per round")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 20 requests")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests = 2, 20
    os.environ |= {
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_METRICS_PORT": "0",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
    }
    with tempfile.TemporaryDirectory(prefix="infersight-cpu-") as tmp, contextlib.ExitStack() as stack:
        export = export_to_shipped_collector(stack, Path(tmp), cpus={1})
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {0})  # threads started after this inherit it
        per_req = measure(args.rounds, args.requests)
    med = {v: {t: statistics.median(xs) for t, xs in threads.items()} for v, threads in per_req.items()}
    total = {v: sum(m.values()) for v, m in med.items()}
    lines = [
        "### CPU per request by thread (bench_app, Flask test client, variants switched in place)",
        "",
        f"Export: {export}. {args.rounds} rounds x {args.requests} requests per variant, interleaved; "
        "medians over rounds, µs of CPU per request.",
        "",
        "| variant | request path | worker | export | total | added | CPU-bound throughput vs bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in VARIANTS:
        m = med[v]
        lines.append(
            f"| {v} | {m['request path']:.0f} | {m['worker']:.0f} | {m['export']:.0f} | {total[v]:.0f} | "
            f"{total[v] - total['bare']:+.0f} | {total['bare'] / total[v]:.3f} |"
        )

    def paired(variant: str, base: str, thread: str | None = None) -> str:
        """Mean ± s.e. of the per-round difference (one thread's CPU, or all of them)."""

        def cpu(v: str, r: int) -> float:
            return per_req[v][thread][r] if thread else sum(per_req[v][t][r] for t in THREADS.values())

        diffs = [cpu(variant, r) - cpu(base, r) for r in range(len(per_req[base]["worker"]))]
        spread = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
        return f"{statistics.fmean(diffs):+.0f} ± {spread:.0f} µs"

    budget = total["bare"] * (1 / 0.95 - 1)
    lines += [
        "",
        f"Paired over rounds (mean ± s.e.), against a 0.95 throughput budget of {budget:.0f} µs per request:",
        f"- request path added: {paired('infersight', 'bare', 'request path')}; of which the floor "
        f"(6 hooks, clock + append): {paired('floor', 'bare', 'request path')}",
        f"- metrics only, all threads: {paired('metrics only', 'bare')}; spans on top of that "
        f"(worker + export): {paired('infersight', 'metrics only')}",
        f"- export thread, our encoder vs the stock one: {med['infersight']['export']:.0f} vs "
        f"{med['stock encoder']['export']:.0f} µs per request",
    ]
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
