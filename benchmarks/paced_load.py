"""P99 at half load in one process: where the worker's work lands relative to the requests.

    python benchmarks/paced_load.py [--rounds 4] [--seconds 5] [--model-ms 2] [--compare NAME=SDK_DIR] [--quick]

server_load.py's half-load P99 swings by tens of milliseconds between rounds on a shared 2-core
box (wrk, gunicorn and the network stack all take their share of noise). This is its half-load
phase with those parts taken out: one server thread serves a Flask app through the test client,
a POST whose view runs preprocess / a ``--model-ms`` CPU-bound model / postprocess; requests
arrive as a Poisson process at 50% of the bare server's capacity (measured first), and between
arrivals the thread sleeps, as a server waits on its socket. Latency runs from a request's
scheduled arrival to its end, so it includes waiting behind earlier requests and behind the
GIL. Each variant is its own process pinned to one core (spans exported over OTLP to our built
collector on the other core, when built), variants interleaved by round:
  bare         no telemetry
  infersight   ``import infersight.auto``
  NAME         ``--compare NAME=DIR``: infersight imported from another checkout's ``sdk/`` (before/after)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_support import export_to_shipped_collector, round_verdict
from queueing import burn, quantile

SERVER_CPUS, COLLECTOR_CPUS = {0}, {1}
P99_TARGET_MS = 0.5


def child(args: argparse.Namespace) -> None:
    if args.variant != "bare":
        import infersight.auto
    from flask import Flask

    import infersight

    app = Flask("paced")
    model_s = args.model_ms / 1e3

    @app.post("/predict")
    def predict() -> str:
        with infersight.preprocess():
            burn(model_s / 20)
        with infersight.model(model="m"):
            burn(model_s)
        with infersight.postprocess():
            burn(model_s / 20)
        return "ok"

    client = app.test_client()
    for _ in range(50):  # warm-up
        client.post("/predict")
    if args.calibrate:
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < 1.0:
            client.post("/predict")
            n += 1
        print(json.dumps({"service_s": (time.perf_counter() - t0) / n}))
        return
    rng = random.Random(args.seed)
    latencies = []
    cpu0 = time.process_time()
    arrival = time.perf_counter() + 0.05
    end = arrival + args.seconds
    while arrival < end:
        now = time.perf_counter()
        if now < arrival:
            time.sleep(arrival - now)
        client.post("/predict")
        latencies.append((time.perf_counter() - arrival) * 1e3)
        arrival += rng.expovariate(args.rate)
    rt = infersight.get_runtime()
    if rt is not None:
        rt.worker.drain()  # the CPU of the work these requests caused, in this window
    cpu = time.process_time() - cpu0
    print(json.dumps({"latencies": latencies, "cpu_ms_per_request": cpu / len(latencies) * 1e3}))


def run_child(variant: str, sdk: str | None, extra: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    if sdk is not None:
        env["PYTHONPATH"] = os.pathsep.join([sdk, env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--child", "--variant", variant, *extra]
    preexec = (lambda: os.sched_setaffinity(0, SERVER_CPUS)) if hasattr(os, "sched_setaffinity") else None
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, preexec_fn=preexec, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{variant}: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--model-ms", type=float, default=2.0)
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=SDK_DIR")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calibrate", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="bare", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    if args.quick:
        args.rounds, args.seconds = 1, 1.0
    variants: dict[str, str | None] = {"bare": None, "infersight": None}
    for spec in args.compare:
        name, _, sdk = spec.partition("=")
        if not name or not Path(sdk, "infersight").is_dir():
            parser.error(f"--compare {spec!r}: want NAME=DIR with DIR/infersight (a checkout's sdk/)")
        variants[name] = str(Path(sdk).resolve())
    model = ["--model-ms", str(args.model_ms)]
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="infersight-paced-"))
        export = export_to_shipped_collector(stack, Path(tmp), cpus=COLLECTOR_CPUS)
        os.environ.setdefault("OTEL_SERVICE_NAME", "paced-load")
        service_s = run_child("bare", None, [*model, "--calibrate"])["service_s"]
        rate = 0.5 / service_s
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        pooled: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(args.rounds):
            order = list(variants)
            order = order[r % len(order) :] + order[: r % len(order)]  # rotate, so no variant always goes first
            for name in order:
                sdk = variants[name]
                kind = "bare" if name == "bare" else "infersight"
                res = run_child(
                    kind, sdk, [*model, "--rate", str(rate), "--seconds", str(args.seconds), "--seed", str(r)]
                )
                lat = res["latencies"]
                rows[name].append(
                    {
                        "p50": quantile(lat, 0.5),
                        "p99": quantile(lat, 0.99),
                        "cpu": res["cpu_ms_per_request"],
                        "n": len(lat),
                    }
                )
                pooled[name] += lat
    print(
        f"### P99 at half load, one process: {args.model_ms:g} ms CPU model, {rate:.0f} req/s "
        f"(50% of the bare server's {1 / service_s:.0f} req/s), Poisson arrivals"
    )
    print()
    print(
        f"Export: {export}. Rounds: {args.rounds} x {args.seconds:g} s, variants interleaved; "
        "the same arrival times for every variant within a round. Medians over rounds."
    )
    print()
    print(
        "| variant | requests | P50 ms | P99 ms | added P50 ms | added P99 ms | added P99 by round ms "
        "| P99 of all requests ms | CPU ms/request |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    bare = rows["bare"]
    for name, rs in rows.items():
        p50, p99 = statistics.median(x["p50"] for x in rs), statistics.median(x["p99"] for x in rs)
        added = [x["p99"] - b["p99"] for x, b in zip(rs, bare, strict=True)]
        added50 = statistics.median(x["p50"] - b["p50"] for x, b in zip(rs, bare, strict=True))
        print(
            f"| {name} | {sum(int(x['n']) for x in rs)} | {p50:.2f} | {p99:.2f} | {added50:+.2f} | "
            f"{statistics.median(added):+.2f} | {' '.join(f'{a:+.2f}' for a in added)} | "
            f"{quantile(pooled[name], 0.99):.2f} | {statistics.median(x['cpu'] for x in rs):.2f} |"
        )
    print()
    for name in list(variants)[1:]:
        added = [x["p99"] - b["p99"] for x, b in zip(rows[name], bare, strict=True)]
        spread = f"added {min(added):+.2f} to {max(added):+.2f} ms by round"
        verdict = round_verdict(added, lambda d: d <= P99_TARGET_MS, lambda d: d > P99_TARGET_MS, spread)
        label = "" if name == "infersight" else " (reference)"
        print(
            f"- added P99 at 50% load, {name}: **{statistics.median(added):+.2f} ms** "
            f"(target ≤ {P99_TARGET_MS} ms: {verdict}){label}"
        )
        if name != "infersight":
            lower = sum(x["p99"] < y["p99"] for x, y in zip(rows["infersight"], rows[name], strict=True))
            print(f"- P99, infersight below {name} in {lower} of {len(bare)} rounds (paired, same arrivals)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
