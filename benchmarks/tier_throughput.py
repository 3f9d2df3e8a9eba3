"""Collector tier throughput: spans/s through one agent and two gateways, against one gateway alone.

    python benchmarks/tier_throughput.py [--rate 30000] [--seconds 20] [--procs 2] [--quick]

Both phases run our built collector on loopback with the shipped configs (tests/scale/tier.py):
``single`` sends to one gateway (collector-config/otelcol.yaml: memory_limiter, batch, span
metrics, tail sampling, the Tempo exporter's persistent queue); ``tier`` sends to an agent
(collector-config/agent.yaml, static resolver) that routes by trace id to two such gateways.
The gateways' Tempo exporters feed a collector that counts and drops. The load is
benchmarks/collector_load.py's: ``--procs`` processes sending pre-built OTLP requests of
infersight-shaped traces with fresh trace ids, paced to ``--rate`` spans/s in all, set above
what the machine can take so that the delivered rate is the capacity.

Figures over the steady window (after ``--warmup``): spans/s the gateways accepted, and the CPU
each collector process used per span (from /proc), which is what carries over to a bigger
machine: one core sustains about 1e6 / (µs per span) spans/s.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_support import ROOT, binary_or_none, cpu_seconds, raise_priority, rss_mib, sink_config
from collector_load import generate

sys.path.insert(0, str(ROOT))
from tests.scale.tier import gateway_config, metric, run_tier

from stack import LOOPBACK, free_port, run_collector


@contextlib.contextmanager
def counting_sink(binary: Path, tmp: Path) -> Iterator[str]:
    port = free_port()
    cfg = tmp / "sink.yaml"
    cfg.write_text(yaml.safe_dump(sink_config(port)))
    with run_collector(binary, cfg, tmp / "sink.log"):
        time.sleep(0.5)
        yield f"{LOOPBACK}:{port}"


@contextlib.contextmanager
def single(binary: Path, tmp: Path) -> Iterator[tuple[str, list[str], dict[str, int]]]:
    """(OTLP endpoint, gateway telemetry URLs, pids by role) of one gateway."""
    with counting_sink(binary, tmp) as sink:
        cfg, ports = gateway_config(tmp, f"{LOOPBACK}:{free_port()}", sink)
        path = tmp / "gateway.yaml"
        path.write_text(yaml.safe_dump(cfg))
        health = f"http://{LOOPBACK}:{ports['health_check']}/"
        with run_collector(binary, path, tmp / "gateway.log", health_url=health) as proc:
            endpoint = cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
            yield endpoint, [f"http://{LOOPBACK}:{ports['telemetry']}/metrics"], {"gateway-0": proc.pid}


@contextlib.contextmanager
def tier(binary: Path, tmp: Path, gateways: int) -> Iterator[tuple[str, list[str], dict[str, int]]]:
    with counting_sink(binary, tmp) as sink, run_tier(binary, tmp, [sink] * gateways) as t:
        pids = {g.name: g.proc.pid for g in t.gateways if g.proc is not None}
        yield t.agent_otlp_grpc, [g.telemetry_url for g in t.gateways], {"agent": t.agent_pid, **pids}


def measure(phase: Any, binary: Path, args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="infersight-tier-") as tmp,
        phase(binary, Path(tmp)) as (target, urls, pids),
    ):
        results = ctx.Queue()
        start_at = time.time() + 3.0  # spawned interpreters import grpc first
        procs = [
            ctx.Process(
                target=generate,
                args=(target, args.rate / args.procs, args.seconds, args.batch, seed, start_at, results),
            )
            for seed in range(args.procs)
        ]
        for p in procs:
            p.start()
        while time.time() < start_at + args.warmup:
            time.sleep(0.1)
        t0, acc0 = time.time(), sum(metric(u, "otelcol_receiver_accepted_spans") for u in urls)
        cpu0 = {role: cpu_seconds(pid) for role, pid in pids.items()}
        rss = dict.fromkeys(pids, 0.0)
        while time.time() < start_at + args.seconds - 0.5:
            rss = {role: max(rss[role], rss_mib(pid)) for role, pid in pids.items()}
            time.sleep(0.25)
        t1, acc1 = time.time(), sum(metric(u, "otelcol_receiver_accepted_spans") for u in urls)
        cpu1 = {role: cpu_seconds(pid) for role, pid in pids.items()}
        refused = sum(metric(u, "otelcol_receiver_refused_spans") for u in urls)
        gen = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
    rate = (acc1 - acc0) / (t1 - t0)
    cores = {role: (cpu1[role] - cpu0[role]) / (t1 - t0) for role in pids}
    return {
        "rate": rate,
        "cores": cores,
        "rss": rss,
        "refused": refused,
        "failed": sum(g["failed"] for g in gen),
        "late": sum(g["late"] for g in gen),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30_000, help="spans/s offered, all processes together")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512, help="spans per export request")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2000 spans/s for 4 s")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds, args.warmup, args.procs = 2000, 4, 1, 1
    binary = binary_or_none()
    if binary is None:
        print("### Collector tier throughput\n\nNo built collector (run tools/build-collector.sh); nothing measured.")
        return 0
    boosted = raise_priority()
    one = measure(single, binary, args)
    many = measure(lambda b, t: tier(b, t, args.gateways), binary, args)

    def per_span(r: dict[str, Any], roles: list[str]) -> float:
        return sum(r["cores"][x] for x in roles) / max(1.0, r["rate"]) * 1e6

    gw_roles = [r for r in many["cores"] if r.startswith("gateway")]
    gw_rss = " / ".join(f"{many['rss'][g]:.0f}" for g in gw_roles)
    lines = [
        "### Collector tier throughput (loopback, shipped configs)",
        "",
        f"Offered {args.rate:.0f} spans/s for {args.seconds:g} s from {args.procs} process(es), {args.batch} spans "
        f"per OTLP/gRPC request; rates over t={args.warmup:g}..{args.seconds - 0.5:g} s; machine: "
        f"{os.cpu_count()} CPUs shared by the load, the collectors and the sink "
        f"(benchmark at nice {-10 if boosted else 0}).",
        "",
        "| setup | spans/s accepted by the gateways | collector CPU cores | µs CPU per span | max RSS MiB "
        "| refused | load failures |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| one gateway | {one['rate']:.0f} | {sum(one['cores'].values()):.2f} | "
        f"gateway {per_span(one, ['gateway-0']):.1f} | gateway {one['rss']['gateway-0']:.0f} | "
        f"{one['refused']:.0f} | {one['failed']} |",
        f"| agent + {args.gateways} gateways | {many['rate']:.0f} | {sum(many['cores'].values()):.2f} | "
        f"agent {per_span(many, ['agent']):.1f}, gateways {per_span(many, gw_roles):.1f} | "
        f"agent {many['rss']['agent']:.0f}, gateways {gw_rss} | "
        f"{many['refused']:.0f} | {many['failed']} |",
        "",
        f"- tier / one gateway: **{many['rate'] / max(1.0, one['rate']):.2f}x** spans/s on this machine",
        f"- per core: one gateway sustains about {1e6 / max(1e-9, per_span(one, ['gateway-0'])):.0f} spans/s, "
        f"an agent about {1e6 / max(1e-9, per_span(many, ['agent'])):.0f} spans/s",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
