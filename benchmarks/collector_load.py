"""Collector capacity: our built collector, shipped config, sustained span rate vs its RSS and CPU.

    python benchmarks/collector_load.py [--rate 10000] [--seconds 45] [--procs 2] [--quick]

The collector runs collector-config/otelcol.yaml as shipped (memory_limiter, batch, span_metrics,
tail_sampling with its decision wait, the trace exporter's persistent queue), rewritten only
to loopback ports with the trace exporter pointed at a second collector that counts and drops.
``--procs`` load processes send pre-built OTLP ExportTraceServiceRequests over gRPC, paced to
``--rate`` spans/s in all. Each request is ``--batch`` spans shaped like infersight's traces (a
server span and its preprocess/model/postprocess children, with the span-metrics dimensions), and
gets fresh trace ids before each send, so tail sampling sees new traces as in production.

Read from the collector: otelcol_receiver_accepted/refused_spans and the trace exporter's sent
spans on its own telemetry endpoint (:8888 in production), sampled every second with VmRSS
(/proc/<pid>/status) and CPU (/proc/<pid>/stat). Rates exclude the first --warmup seconds.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RATE_TARGET = 10_000
RSS_TARGET_MIB = 100.0
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def build_request(batch: int, seed: int) -> Any:
    """``batch`` spans (rounded down to whole traces of 4): one server span and three stages each."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    from infersight.conventions import ATTR, SPAN

    def kv(key: str, value: str | int) -> KeyValue:
        v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
        return KeyValue(key=key, value=v)

    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend([kv("service.name", "bench-load"), kv(ATTR.SERVICE_INSTANCE_ID, f"load-{seed}")])
    scope = rs.scope_spans.add()
    scope.scope.name = SPAN.INSTRUMENTATION_SCOPE
    now = time.time_ns()
    model = [kv(ATTR.MODEL_NAME, "bench-sentiment"), kv(ATTR.MODEL_VERSION, "1")]
    for _ in range(batch // 4):
        start = now - rng.randrange(10**9)
        root_id = rng.randbytes(8)
        root = scope.spans.add(
            span_id=root_id,
            name="POST /predict",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + 3_000_000,
            status=Status(code=Status.STATUS_CODE_UNSET),
        )
        root.attributes.extend(
            [
                *model,
                kv(ATTR.HTTP_ROUTE, "/predict"),
                kv(ATTR.HTTP_REQUEST_METHOD, "POST"),
                kv(ATTR.HTTP_RESPONSE_STATUS_CODE, 200),
                kv(ATTR.URL_PATH, "/predict"),
            ]
        )
        t = start + 100_000
        for stage, dur in ((SPAN.PREPROCESS, 300_000), (SPAN.MODEL, 2_000_000), (SPAN.POSTPROCESS, 200_000)):
            child = scope.spans.add(
                span_id=rng.randbytes(8),
                parent_span_id=root_id,
                name=stage,
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=t,
                end_time_unix_nano=t + dur,
            )
            child.attributes.extend([*model, kv(ATTR.STAGE, stage)])
            t += dur
    return req


def generate(endpoint: str, rate: float, seconds: float, batch: int, seed: int, start_at: float, out: Any) -> None:
    """One load process: send a request of ``batch`` spans every batch/rate seconds until done."""
    import grpc

    req = build_request(batch, seed)
    spans = req.resource_spans[0].scope_spans[0].spans
    per_trace = 4
    rng = random.Random(seed)
    channel = grpc.insecure_channel(endpoint)
    export = channel.unary_unary(EXPORT_METHOD)  # bytes in, bytes out: no per-send proto work but the ids
    interval = len(spans) / rate
    sent = failed = late = 0
    errors: dict[str, int] = {}
    cpu0 = time.process_time()
    while time.time() < start_at:
        time.sleep(0.01)
    next_at = start_at
    end = start_at + seconds
    while next_at < end:
        delay = next_at - time.time()
        if delay > 0:
            time.sleep(delay)
        elif delay < -interval:
            late += 1
        for i in range(0, len(spans), per_trace):
            trace_id = rng.randbytes(16)
            for span in spans[i : i + per_trace]:
                span.trace_id = trace_id
        try:
            export(req.SerializeToString(), timeout=10)
            sent += len(spans)
        except grpc.RpcError as exc:
            failed += len(spans)
            code = str(exc.code())  # type: ignore[attr-defined]
            errors[code] = errors.get(code, 0) + 1
        next_at += interval
    channel.close()
    out.put({"sent": sent, "failed": failed, "late": late, "errors": errors, "cpu_s": time.process_time() - cpu0})


def samples(url: str) -> list[tuple[str, str, float]]:
    """(name without _total, label text, value) for every sample at ``url``."""
    from bench_support import http_get

    status, body = http_get(url, timeout=5)
    if status != 200:
        raise OSError(f"GET {url} -> {status}")
    out = []
    for line in body.splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            name, _, labels = head.partition("{")
            out.append((name.removesuffix("_total"), labels, float(value)))
    return out


def counter(rows: list[tuple[str, str, float]], name: str, label: str = "") -> float:
    return sum(v for n, labels, v in rows if n == name and label in labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=RATE_TARGET, help="spans/s offered, all processes together")
    parser.add_argument(
        "--seconds",
        type=float,
        default=45,
        help="load duration (covers the decision wait and the 15 s span-metrics flush a few times)",
    )
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512, help="spans per export request (the SDK's batch size)")
    parser.add_argument("--decision-wait", help="what-if: tail_sampling decision_wait instead of the shipped one")
    parser.add_argument("--gomemlimit", help="what-if: GOMEMLIMIT for the collector (e.g. 80MiB)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2000 spans/s for 4 s")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds, args.warmup, args.procs = 2000, 4, 1, 1

    from bench_support import binary_or_none, cpu_seconds, raise_priority, rss_mib, shipped_collector

    binary = binary_or_none()
    if binary is None:
        print("### Collector load\n\nNo built collector (run tools/build-collector.sh); nothing measured.")
        return 0
    boosted = raise_priority()
    changes = []
    if args.gomemlimit:
        os.environ["GOMEMLIMIT"] = args.gomemlimit  # inherited by the collectors started below
        changes.append(f"GOMEMLIMIT={args.gomemlimit}")

    def edit(cfg: dict[str, Any]) -> None:
        if args.decision_wait:
            cfg["processors"]["tail_sampling"]["decision_wait"] = args.decision_wait
            changes.append(f"tail_sampling.decision_wait={args.decision_wait}")

    ctx = mp.get_context("spawn")
    with (
        tempfile.TemporaryDirectory(prefix="infersight-col-") as tmp,
        shipped_collector(Path(tmp), binary, edit=edit) as col,
    ):
        results = ctx.Queue()
        start_at = time.time() + 3.0  # spawned interpreters import grpc first
        procs = [
            ctx.Process(
                target=generate,
                args=(col.otlp_grpc, args.rate / args.procs, args.seconds, args.batch, seed, start_at, results),
            )
            for seed in range(args.procs)
        ]
        for p in procs:
            p.start()
        timeline: list[dict[str, float]] = []
        deadline = start_at + args.seconds + 2.0
        while time.time() < deadline:
            rows = samples(col.telemetry_url)
            timeline.append(
                {
                    "t": time.time() - start_at,
                    "rss": rss_mib(col.pid),
                    "anon": rss_mib(col.pid, "RssAnon"),
                    "cpu": cpu_seconds(col.pid),
                    "accepted": counter(rows, "otelcol_receiver_accepted_spans"),
                    "refused": counter(rows, "otelcol_receiver_refused_spans"),
                    "to_tempo": counter(rows, "otelcol_exporter_sent_spans", 'exporter="otlp_grpc/traces"'),
                    "tempo_failed": counter(rows, "otelcol_exporter_send_failed_spans", 'exporter="otlp_grpc/traces"'),
                }
            )
            time.sleep(max(0.0, 1.0 - (time.time() - start_at) % 1.0))
        gen = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        log_tail = col.log.read_text()[-2000:]

    steady = [s for s in timeline if args.warmup <= s["t"] <= args.seconds]
    a, b = steady[0], steady[-1]
    span_s = b["t"] - a["t"]
    accepted_rate = (b["accepted"] - a["accepted"]) / span_s
    cores = (b["cpu"] - a["cpu"]) / span_s
    rss_max = max(s["rss"] for s in timeline)
    rss_steady = max(s["rss"] for s in steady)
    last = timeline[-1]
    sent = sum(g["sent"] for g in gen)
    failed = sum(g["failed"] for g in gen)
    gen_cores = sum(g["cpu_s"] for g in gen) / args.seconds
    errors: dict[str, int] = {}
    for g in gen:
        for k, v in g["errors"].items():
            errors[k] = errors.get(k, 0) + v
    met_rate = accepted_rate >= RATE_TARGET * 0.98 and last["refused"] == 0 and failed == 0
    verdict = "met" if met_rate else "NOT met" if args.rate >= RATE_TARGET else "n/a: offered less"
    lines = [
        "### Collector under load (shipped config on loopback, Tempo exporter to a counting collector)",
        "",
        f"Offered {args.rate:.0f} spans/s for {args.seconds:g} s from {args.procs} process(es), "
        f"{args.batch} spans per OTLP/gRPC request (traces of 4 spans, fresh trace ids per send); "
        f"rates over t={args.warmup:g}..{args.seconds:g} s; benchmark processes at nice "
        f"{-10 if boosted else 0}; machine: {os.cpu_count()} CPUs, shared with the load generator. "
        f"Changed from the shipped config: {', '.join(changes) or 'nothing (as shipped)'}.",
        "",
        "| t s | RSS MiB | anonymous MiB | accepted spans | refused | sent to Tempo sink | collector CPU cores |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    step = max(1, len(timeline) // 10)
    prev = timeline[0]
    for s in timeline[step::step]:
        cores_now = (s["cpu"] - prev["cpu"]) / max(1e-9, s["t"] - prev["t"])
        lines.append(
            f"| {s['t']:.0f} | {s['rss']:.1f} | {s['anon']:.1f} | {s['accepted']:.0f} | {s['refused']:.0f} | "
            f"{s['to_tempo']:.0f} | {cores_now:.2f} |"
        )
        prev = s
    lines += [
        "",
        f"- accepted rate: **{accepted_rate:.0f} spans/s** (target ≥ {RATE_TARGET}: "
        f"{verdict}); refused {last['refused']:.0f}, "
        f"load-side failures {failed} of {sent + failed} spans {errors or ''}",
        f"- collector RSS: **max {rss_max:.1f} MiB** (steady window max {rss_steady:.1f}; target ≤ "
        f"{RSS_TARGET_MIB:.0f} MiB: {'met' if rss_max <= RSS_TARGET_MIB else 'NOT met'})",
        f"- collector CPU: {cores:.2f} cores ({cores / max(1, accepted_rate) * 1e6:.1f} µs per span); "
        f"load generators {gen_cores:.2f} cores",
        f"- sampled to the Tempo sink: {last['to_tempo']:.0f} spans "
        f"({last['to_tempo'] / max(1, last['accepted']):.1%} of accepted; the shipped policy keeps 10% + errors "
        f"+ slow; traces still inside the decision wait at the end are not counted), "
        f"send failures {last['tempo_failed']:.0f}",
    ]
    idle = [s for s in timeline if s["t"] < 0]
    if idle:
        lines.append(
            f"- collector RSS idle before the load: {idle[0]['rss']:.1f} MiB "
            f"({idle[0]['anon']:.1f} anonymous, the rest the binary's file-backed pages)"
        )
    if "error" in log_tail.lower() and not met_rate:
        lines.append("- collector log tail: " + log_tail.splitlines()[-1][:300])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
