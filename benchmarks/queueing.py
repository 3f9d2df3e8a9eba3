"""Why added CPU becomes added P99 at a fixed load: queueing alone, no telemetry.

    python benchmarks/queueing.py [--seconds 10] [--service-ms 2] [--extra 0.2] [--quick]

One thread serves requests that arrive as a Poisson process at 50% of its capacity, each a
fixed ``--service-ms`` of CPU; then the same arrivals with the service made ``--extra`` longer,
as instrumentation would make it. Latency runs from a request's arrival to its end, so it
includes the wait behind earlier requests. server_load.py's first half-load phase paces every
variant at the bare server's rate: this is the part of its added P99 that any added CPU causes.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(50):
            x += i


def serve(service_s: float, mean_gap_s: float, seconds: float, seed: int) -> list[float]:
    """Latencies (ms) of one single-server queue run; the same seed gives the same arrivals."""
    rng = random.Random(seed)
    latencies = []
    arrival = time.perf_counter() + 0.05
    end = arrival + seconds
    while arrival < end:
        now = time.perf_counter()
        if now < arrival:
            time.sleep(arrival - now)
        burn(service_s)
        latencies.append((time.perf_counter() - arrival) * 1e3)
        arrival += rng.expovariate(1 / mean_gap_s)
    return latencies


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--service-ms", type=float, default=2.0)
    parser.add_argument("--extra", type=float, default=0.2, help="added service time, as a share")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, like the benchmark server
    base = args.service_ms / 1e3
    gap = 2 * base  # arrivals at 50% of the base server's capacity
    rows = []
    for r in range(args.rounds):
        plain = serve(base, gap, args.seconds, seed=r)
        longer = serve(base * (1 + args.extra), gap, args.seconds, seed=r)
        rows.append((quantile(plain, 0.5), quantile(plain, 0.99), quantile(longer, 0.5), quantile(longer, 0.99)))
    print(f"### Queueing alone: one server, Poisson arrivals at 50% of capacity, {args.service_ms:g} ms requests")
    print()
    print(
        f"| round | P50 ms | P99 ms | P50 ms, service +{args.extra:.0%} | P99 ms, service +{args.extra:.0%} "
        "| added P50 ms | added P99 ms |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r, (p50, p99, l50, l99) in enumerate(rows):
        print(f"| {r + 1} | {p50:.2f} | {p99:.2f} | {l50:.2f} | {l99:.2f} | {l50 - p50:+.2f} | {l99 - p99:+.2f} |")
    added_cpu_ms = args.service_ms * args.extra
    added_p99 = statistics.median(r[3] - r[1] for r in rows)
    print()
    print(
        f"- {added_cpu_ms * 1e3:.0f} µs more CPU per request adds **{added_p99:+.2f} ms** to the P99 at this load "
        f"({added_p99 / added_cpu_ms:.0f}x the added CPU); a +0.5 ms P99 budget allows about "
        f"{0.5 / (added_p99 / added_cpu_ms) * 1e3:.0f} µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
