"""Instructions per request, by thread, counted under valgrind: figures a noisy machine can't move.

    python benchmarks/instructions.py [--requests 200] [--variants a,b,...] [--quick]
                                      [--compare NAME=DIR]

About 30 minutes on 2 cores: valgrind runs ~50x slower, and the server variants import torch.

Time on a shared 2-core box moves by tens of percent between runs (docs/worker.md), so CPU
differences of a few percent per request can't be resolved from timings there. Valgrind's
callgrind counts the instructions each thread executes; they don't depend on the machine's other
load. Each variant runs in its own process under callgrind twice, 20 warm-up requests and then
none or ``--requests``; the difference, divided by ``--requests``, is what one request costs.
Variants: request_path.py's request (explicit API, then its Flask app, then its FastAPI app as
uvicorn calls it), and bench_app.py's
server (Flask + a transformers pipeline; part 2's server, whose saturation throughput is its CPU
per request: bare / instrumented instructions is that ratio at equal instructions per cycle).
Columns:
  request thread  the request path itself (infersight: clock reads, ids, records, hooks)
  background      every other thread: infersight's worker (metrics, spans), span export
                  (encoding to OTLP protobuf bytes, nothing is sent: infersight's spans with its
                  own encoder, the baselines' with the OTel exporter's), the final drain

In the server variants infersight exports as it does in production (its own OTLP/gRPC exporter,
batch processor and encoder), with the gRPC call itself replaced by one that sends nothing.
``--compare NAME=DIR`` also runs each chosen variant with ``DIR/sdk`` first on the path (another
checkout of infersight), listed as ``variant [NAME]``: before and after from one run.

Instructions are not time: a cache miss or a GIL hand-over between threads costs time without
instructions, so these figures are a lower bound on the CPU cost, and the ratios are the ones to
quote. Needs valgrind (Debian package ``valgrind``); prints a line and exits 0 without it.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402

from cpu_split import BODY, cpu_in_thread  # noqa: E402  (a flush off the request thread: background)
from infersight._otlp import encode_request  # noqa: E402

EXPLICIT = (
    "uninstrumented",
    "infersight",
    "hand-written OTel + prometheus_client",
    "infersight own exporter",  # its own provider and OTLP exporter, as in a server (gRPC call a no-op)
)
FLASK = (
    "flask uninstrumented",
    "flask + infersight",
    "flask + hand-written OTel + prometheus_client",
    "flask + otel-flask only",
)
FASTAPI = (
    "fastapi uninstrumented",
    "fastapi + infersight",
    "fastapi + hand-written OTel + prometheus_client",
    "fastapi + otel-fastapi only",
)
# bench_app.py (Flask + a transformers pipeline, ~1.5 ms model) through its test client: the
# server of part 2, whose throughput at saturation is its CPU per request.
SERVER_ENV = {
    "server bare": {"BENCH_VARIANT": "bare"},
    "server + infersight": {"BENCH_VARIANT": "infersight"},
    "server + otel-flask": {"BENCH_VARIANT": "otel-flask"},
    "server + infersight keep 0.1": {"BENCH_VARIANT": "infersight", "INFERSIGHT_TRACES_KEEP_RATIO": "0.1"},
    "server + infersight metrics only": {"BENCH_VARIANT": "infersight", "INFERSIGHT_TRACES": "false"},
}
SERVER = tuple(SERVER_ENV)
KNOWN = EXPLICIT + FLASK + FASTAPI + SERVER
# --compare runs these once only: they don't import infersight.
WITHOUT_INFERSIGHT = {EXPLICIT[0], EXPLICIT[2], FLASK[0], *FLASK[2:], FASTAPI[0], *FASTAPI[2:], SERVER[0], SERVER[2]}
WARM_UP = 20


class EncodingExporter(SpanExporter):
    """Encodes each batch as an OTLP exporter would, then drops it: export CPU without a network
    or a collector. ``stock``: the OTel exporter's own encoder (what the baselines get)."""

    def __init__(self, stock: bool) -> None:
        self.stock = stock

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        if self.stock:
            encode_spans(spans).SerializeToString()
        else:
            encode_request(spans)
        return SpanExportResult.SUCCESS


class NullTraceClient:
    """The trace service's stub, sending nothing: the exporter around it runs as in production."""

    def Export(self, request: Any, metadata: Any = None, timeout: Any = None) -> None:
        return None


def settle_gc() -> None:
    """Collect, then move the start-up heap out of the collector's reach (as pre-fork servers
    do): a full collection over torch's objects, landing in one run and not the other, would
    otherwise bill millions of instructions to whichever thread triggered it."""
    gc.collect()
    gc.freeze()


def server_call(variant: str) -> Callable[[], Any]:
    """bench_app as its variant, spans encoded as in the explicit-API variants."""
    infersight_exports = variant != SERVER[2] and SERVER_ENV[variant].get("INFERSIGHT_TRACES") != "false"
    os.environ |= SERVER_ENV[variant] | {
        "OTEL_TRACES_EXPORTER": "otlp" if infersight_exports else "none",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # never called: NullTraceClient
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_METRICS_PORT": "0",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    import bench_app

    provider = trace.get_tracer_provider()
    if variant != SERVER[2] and isinstance(provider, TracerProvider):
        null_grpc(provider)  # infersight's own pipeline (OTEL_TRACES_EXPORTER=otlp)
    elif isinstance(provider, TracerProvider):
        provider.add_span_processor(BatchSpanProcessor(EncodingExporter(stock=True)))
    client = bench_app.app.test_client()

    def call() -> None:
        if client.post("/predict", json=BODY).status_code != 200:
            raise SystemExit("request failed")

    return call


def server_flush() -> None:
    from opentelemetry import trace

    import infersight

    rt = infersight.get_runtime()
    if rt is not None:
        rt.worker.drain()
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush()


def null_grpc(provider: Any) -> None:
    """infersight's exporters keep running, their gRPC call replaced by one that sends nothing."""
    for processor in provider._active_span_processor._span_processors:
        exporter = processor._batch_processor._exporter
        getattr(exporter, "inner", exporter)._client = NullTraceClient()


def own_exporter_call() -> tuple[Callable[[], Any], Callable[[], Any]]:
    """request_path.py's explicit-API request with infersight's own provider and exporter."""
    os.environ |= {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # never called: NullTraceClient
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_METRICS_PORT": "0",
    }
    from opentelemetry import trace
    from prometheus_client import CollectorRegistry

    import infersight
    import request_path

    infersight.init(registry=CollectorRegistry(), models={"m": {"version": "1", "slo_p99_seconds": 0.1}})
    provider = trace.get_tracer_provider()
    null_grpc(provider)

    def run() -> None:
        with infersight.request(model="m", endpoint="/predict"):
            with infersight.preprocess():
                request_path.work()
            with infersight.model():
                request_path.work()
            with infersight.postprocess():
                request_path.work()

    def flush() -> None:
        rt = infersight.get_runtime()
        if rt is not None:
            rt.worker.drain()
        provider.force_flush()  # type: ignore[attr-defined]

    return run, flush


def request_path_call(variant: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """request_path.py's request as ``variant`` (explicit API or Flask), and its flush."""
    if variant == EXPLICIT[3]:
        return own_exporter_call()
    import request_path

    ours, ours_flush = request_path.make_infersight(EncodingExporter(stock=False))
    hand, hand_flush = request_path.make_handwritten(EncodingExporter(stock=True))
    calls: dict[str, Callable[[], Any]] = {
        "uninstrumented": request_path.uninstrumented,
        "infersight": ours,
        EXPLICIT[2]: hand,
    }
    flushes: dict[str, Callable[[], Any]] = {"infersight": ours_flush, EXPLICIT[2]: hand_flush}
    if variant in FLASK:
        fv, ff, fs = request_path.flask_variants(hand, EncodingExporter(stock=True))
        calls = fv
        flushes = {**ff, FLASK[1]: ours_flush, FLASK[2]: hand_flush}
        fs[variant]()  # our Flask patch is class-wide: on for its own variant only
    if variant in FASTAPI:
        av, af, asetups = request_path.asgi_variants(hand, EncodingExporter(stock=True))
        calls = av
        flushes = {**af, FASTAPI[1]: ours_flush, FASTAPI[2]: hand_flush}
        asetups[variant]()  # our Starlette patch is class-wide too
    return calls[variant], flushes.get(variant, lambda: None)


def child(variant: str, requests: int) -> None:
    """Serve ``WARM_UP + requests`` requests of one variant (run under valgrind by main)."""
    if variant in SERVER:
        call, flush = server_call(variant), server_flush
    else:
        call, flush = request_path_call(variant)
    for _ in range(WARM_UP):
        call()
    cpu_in_thread(flush)
    settle_gc()
    for _ in range(requests):
        call()
    cpu_in_thread(flush)


def thread_totals(out_dir: Path, stem: str) -> dict[int, int]:
    """Instructions by thread number (1 is the main thread) from callgrind's per-thread files."""
    totals: dict[int, int] = {}
    for path in out_dir.glob(f"{stem}*"):
        match = re.search(r"-(\d+)$", path.name)
        text = path.read_text(errors="replace")
        found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if match and found:
            totals[int(match.group(1))] = totals.get(int(match.group(1)), 0) + int(found.group(1))
    return totals


def count(variant: str, requests: int, out_dir: Path, sdk: str | None = None) -> tuple[int, int]:
    """(request thread, background) instructions of one run of ``requests`` timed requests,
    with ``sdk`` (another checkout's sdk/ folder) first on the path if given."""
    stem = f"cg.{re.sub(r'[^a-z]+', '-', variant)}.{abs(hash(sdk)) if sdk else 0}.{requests}"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        "--dump-instr=no",
        f"--callgrind-out-file={out_dir / stem}",
        sys.executable,
        __file__,
        "--child",
        variant,
        "--requests",
        str(requests),
    ]
    # The GIL probe's cost is per second of wall time, not per request (200 wake-ups a second);
    # under valgrind's ~50x slowdown it would be billed to each request many times over.
    env = os.environ | {"PYTHONHASHSEED": "0", "OTEL_TRACES_EXPORTER": "none", "INFERSIGHT_GIL_PROBE": "false"}
    if sdk:
        env["PYTHONPATH"] = os.pathsep.join([sdk, env.get("PYTHONPATH", "")])
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"{variant}: valgrind run failed:\n{result.stderr[-2000:]}")
    totals = thread_totals(out_dir, stem)
    return totals.pop(1, 0), sum(totals.values())


def main() -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--variants",
        default=",".join(EXPLICIT[:3] + FLASK + FASTAPI + SERVER[:3]),
        help=f"comma-separated; also: {', '.join(SERVER[3:])} (each server run takes minutes)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: the explicit API, 10 requests")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=DIR", help="also run DIR/sdk")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests)
        return []
    if args.quick:
        args.requests, args.variants = 10, ",".join(EXPLICIT[:3])
    if shutil.which("valgrind") is None:
        print("valgrind not installed: no instruction counts (apt-get install valgrind)")
        return []
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(KNOWN)
    if unknown:
        raise SystemExit(f"--variants: unknown {sorted(unknown)}; known: {', '.join(KNOWN)}")
    others = dict(item.split("=", 1) for item in args.compare)
    sdks: dict[str, str | None] = {"": None} | {
        f" [{name}]": str(Path(folder).resolve() / "sdk") for name, folder in others.items()
    }
    per_request: dict[str, tuple[float, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="infersight-instr-") as tmp,
        ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool,
    ):  # counts don't depend on load
        runs = {
            (v, label, n): pool.submit(count, v, n, Path(tmp), sdk)
            for v in variants
            for label, sdk in sdks.items()
            if not (sdk and v in WITHOUT_INFERSIGHT)
            for n in (0, args.requests)
        }
        for variant in variants:
            for label in sdks:
                if (variant, label, 0) not in runs:
                    continue
                short, long = runs[variant, label, 0].result(), runs[variant, label, args.requests].result()
                per_request[variant + label] = (
                    (long[0] - short[0]) / args.requests,
                    (long[1] - short[1]) / args.requests,
                )
    lines = [
        "### Instructions per request, by thread (callgrind)",
        "",
        f"{args.requests} requests per variant, less a run of none; thousands of instructions.",
        "",
        "| variant | request thread | background | total | added total |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for group in (EXPLICIT, FLASK, FASTAPI, SERVER):
        base = per_request.get(group[0])
        for variant in [v + label for v in group for label in sdks]:
            if variant not in per_request:
                continue
            req, bg = per_request[variant]
            added = f"{(req + bg - sum(base)) / 1e3:+.1f}" if base else ""
            lines.append(f"| {variant} | {req / 1e3:.1f} | {bg / 1e3:.1f} | {(req + bg) / 1e3:.1f} | {added} |")
    lines += ["", *ratio_lines(per_request)]
    print("\n".join(lines))
    return lines


def ratio_lines(per_request: dict[str, tuple[float, float]]) -> list[str]:
    """infersight's added instructions over the hand-written baseline's, as in part 1's targets."""
    out = []
    for base, ours, hand in (EXPLICIT[:3], FLASK[:3], FASTAPI[:3]):
        if not {base, ours, hand} <= per_request.keys():
            continue
        b, o, h = per_request[base], per_request[ours], per_request[hand]
        for label, pick in (("request thread", lambda x: x[0]), ("all threads", lambda x: x[0] + x[1])):
            added_ours, added_hand = pick(o) - pick(b), pick(h) - pick(b)
            out.append(
                f"- {ours}, added instructions / {hand}'s, {label}: **{added_ours / added_hand:.2f}** "
                f"({added_ours / 1e3:.1f}k / {added_hand / 1e3:.1f}k)"
            )
    bare = per_request.get(SERVER[0])
    for variant in sorted(v for v in per_request if v.startswith(SERVER[1:]) and v != SERVER[0]):
        if bare is not None and variant in per_request:
            ratio = sum(bare) / sum(per_request[variant])
            out.append(
                f"- {variant}: bare's instructions / its own, all threads: **{ratio:.3f}** (the throughput "
                "ratio of a CPU-bound server if both ran at the same instructions per cycle; target ≥ 0.95)"
            )
    return out


if __name__ == "__main__":
    main()
