"""Memory: RSS the one import adds to the server in steady state, and growth over 100k requests.

    python benchmarks/memory.py [--requests 200000] [--quick]

The server is benchmarks/bench_app.py (Flask + a transformers pipeline), driven in-process by
Flask's test client; each variant runs in its own fresh interpreter, both at once (one per core):
  bare        no telemetry
  infersight  ``import infersight.auto``, exporting spans over OTLP/gRPC to our built collector
              (shipped config on loopback) when it is built, else OTEL_TRACES_EXPORTER=none
RSS (VmRSS, after a gc.collect()) is read at start-up, then at 10%, 50% and 100% of the requests,
with the interpreter's live allocated blocks (sys.getallocatedblocks): RSS growth with flat Python
objects is the C allocator's arenas (threads), not objects kept alive.
"Added" is infersight minus bare at the same point; growth is the change between checkpoints.
The target (no growth over 100k requests) is judged on the second half of the run, 100k->200k
by default: the first 100k include warm-up (allocator arenas and caches filling, +2-3 MiB
measured, then flat), which is reported too. A leak of even 20 bytes per request would show as
~2 MiB over 100k requests.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("bare", "infersight")
TEXTS = [
    "the movie was good",
    "awful service and the food was bad",
    "this model server is very good",
    "a day that was great",
]
ADDED_TARGET_MIB = 30.0


def pymalloc_arenas_mib() -> float:
    """Memory held by Python's small-object allocator (its arenas), from sys._debugmallocstats,
    which writes to the C stderr: RSS growth here with flat live objects is fragmentation."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp.read().decode(errors="replace").splitlines():
            if "bytes/arena" in line:  # "N arenas * 1048576 bytes/arena = ..."
                return float(line.split("=")[-1].replace(",", "").strip()) / 2**20
    return float("nan")


def child(variant: str, requests: int, checkpoints: list[int]) -> None:
    """Runs in the subprocess: serve ``requests`` through the test client, print RSS at checkpoints."""
    os.environ["BENCH_VARIANT"] = variant
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_support import rss_mib

    def report(n: int) -> None:
        gc.collect()
        print(
            json.dumps(
                {
                    "variant": variant,
                    "requests": n,
                    "rss_mib": rss_mib(os.getpid()),
                    "py_blocks": sys.getallocatedblocks(),
                    "arenas_mib": pymalloc_arenas_mib(),
                }
            ),
            flush=True,
        )

    import bench_app

    client = bench_app.app.test_client()
    client.post("/predict", json={"text": TEXTS[0]})
    report(0)
    started = time.perf_counter()
    for i in range(1, requests + 1):
        resp = client.post("/predict", json={"text": TEXTS[i % len(TEXTS)]})
        if resp.status_code != 200:
            raise SystemExit(f"request {i}: HTTP {resp.status_code}")
        if i in checkpoints:
            report(i)
    seconds = time.perf_counter() - started
    dropped = ""
    if variant == "infersight":
        from prometheus_client import REGISTRY

        from infersight.conventions import METRIC

        lost = sum(
            REGISTRY.get_sample_value(METRIC.SPANS_DROPPED.sample_name, {"reason": r}) or 0
            for r in ("queue_full", "export_failed")
        )
        dropped = f"{lost:.0f}"
    print(json.dumps({"variant": variant, "done": True, "seconds": seconds, "dropped": dropped}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 requests")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoints", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.requests = 300
    checkpoints = sorted({max(1, args.requests // 10), max(1, args.requests // 2), args.requests})
    if args.child:
        child(args.child, args.requests, [int(c) for c in args.checkpoints.split(",")])
        return 0

    from bench_support import binary_or_none, shipped_collector

    binary = binary_or_none()
    env = {
        **os.environ,
        "INFERSIGHT_METRICS_PORT": "0",
        "INFERSIGHT_GPU": "off",
        "HF_HUB_OFFLINE": "1",
        "INFERSIGHT_MODELS": '{"bench-sentiment": {"version": "1", "slo_p99_seconds": 0.1}}',
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="infersight-mem-") as tmp, contextlib.ExitStack() as stack:
        if binary is not None:
            collector = stack.enter_context(shipped_collector(Path(tmp), binary))
            env |= {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.otlp_grpc}",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
            }
            export = "OTLP/gRPC to our built collector (shipped config on loopback)"
        else:
            env["OTEL_TRACES_EXPORTER"] = "none"
            export = "OTEL_TRACES_EXPORTER=none (no built collector; run tools/build-collector.sh)"
        cmd = [
            sys.executable,
            __file__,
            "--requests",
            str(args.requests),
            "--checkpoints",
            ",".join(map(str, checkpoints)),
            "--child",
        ]
        procs = {
            v: subprocess.Popen([*cmd, v], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for v in VARIANTS
        }
        rss: dict[str, dict[int, float]] = {v: {} for v in VARIANTS}
        blocks: dict[str, dict[int, int]] = {v: {} for v in VARIANTS}
        arenas: dict[str, dict[int, float]] = {v: {} for v in VARIANTS}
        done: dict[str, dict[str, object]] = {}
        for v, proc in procs.items():
            out, err = proc.communicate(timeout=3600)
            if proc.returncode != 0:
                print(f"{v} failed ({proc.returncode}):\n{err[-3000:]}", file=sys.stderr)
                return 1
            for line in out.splitlines():
                if not line.startswith("{"):
                    continue
                rec = json.loads(line)
                if rec.get("done"):
                    done[v] = rec
                else:
                    rss[v][rec["requests"]] = rec["rss_mib"]
                    blocks[v][rec["requests"]] = rec["py_blocks"]
                    arenas[v][rec["requests"]] = rec["arenas_mib"]
    elapsed = time.monotonic() - started

    points = [0, *checkpoints]
    first, mid, last = checkpoints[0], checkpoints[-2] if len(checkpoints) > 1 else checkpoints[0], checkpoints[-1]
    lines = [
        f"### Server memory over {args.requests} requests (Flask test client, transformers pipeline)",
        "",
        f"Export: {export}. RSS in MiB after gc.collect(); both variants ran at once, one per core.",
        "",
        "| variant | "
        + " | ".join(f"RSS at {n // 1000 if n >= 1000 else n}{'k' if n >= 1000 else ''}" for n in points)
        + f" | growth {first}→{mid} (warm-up) | growth {mid}→{last} | bytes/request {mid}→{last} "
        f"| live Python blocks {mid}→{last} | pymalloc arenas MiB {first}→{mid}→{last} | req/s |",
        "| --- |" + " ---: |" * (len(points) + 6),
    ]
    for v in VARIANTS:
        warmup = rss[v][mid] - rss[v][first]
        steady = rss[v][last] - rss[v][mid]
        per_req = steady * 2**20 / max(1, last - mid)
        rate = args.requests / float(done[v]["seconds"])  # type: ignore[arg-type]
        lines.append(
            f"| {v} | "
            + " | ".join(f"{rss[v][n]:.1f}" for n in points)
            + f" | {warmup:+.1f} | {steady:+.1f} | {per_req:.1f} | {blocks[v][last] - blocks[v][mid]:+d} "
            f"| {arenas[v][first]:.0f}→{arenas[v][mid]:.0f}→{arenas[v][last]:.0f} | {rate:.0f} |"
        )
    added = rss["infersight"][first] - rss["bare"][first]
    added_start = rss["infersight"][0] - rss["bare"][0]
    growth_i = rss["infersight"][last] - rss["infersight"][mid]
    growth_b = rss["bare"][last] - rss["bare"][mid]
    warmup_i = rss["infersight"][mid] - rss["infersight"][first]
    warmup_b = rss["bare"][mid] - rss["bare"][first]
    # Noise: the bare server's own drift over the same requests, with 1 MiB of slack for page granularity.
    no_growth = growth_i <= max(growth_b, 0.0) + 1.0
    lines += [
        "",
        f"- added RSS in steady state ({first} requests), infersight - bare: **{added:.1f} MiB** "
        f"(target ≤ {ADDED_TARGET_MIB:.0f} MB: {'met' if added <= ADDED_TARGET_MIB else 'NOT met'}); "
        f"at start-up {added_start:.1f} MiB",
        f"- growth {mid}→{last} requests: infersight **{growth_i:+.1f} MiB**, bare {growth_b:+.1f} MiB "
        f"(target: none beyond bare's drift + 1 MiB: {'met' if no_growth else 'NOT met'})",
        f"- warm-up growth {first}→{mid}: infersight {warmup_i:+.1f} MiB, bare {warmup_b:+.1f} MiB",
        f"- spans dropped by infersight: {done['infersight'].get('dropped') or 'n/a'}; wall time {elapsed:.0f} s",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
