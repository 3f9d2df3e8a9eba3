"""Request-path overhead: one request with 3 stages, metrics and exemplars, four variants
measured side by side in one run (interleaved rounds, so machine noise hits all alike).

    python benchmarks/request_path.py [--requests 20000]

Variants: uninstrumented; infersight; the hand-written OTel SDK + prometheus_client version
(root + 3 stage spans via start_as_current_span, BatchSpanProcessor, histograms with
exemplars). Then the same through a Flask app (test client): an uninstrumented view,
infersight's Flask instrumentation and stages, the hand-written version as the view's body
(the baseline of the targets), and opentelemetry-instrumentation-flask alone (a reference).
Then the same through a FastAPI app called as uvicorn calls it: uninstrumented, infersight's
Starlette instrumentation, the hand-written version, opentelemetry-instrumentation-fastapi alone,
and FastAPI tracing itself (its own server span) with infersight's stages under it.
"Added" = variant minus uninstrumented, at the same percentile. CPU per request counts every
thread of the process (background export included), flushed inside the measured window.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, Histogram

import infersight
from infersight.conventions import LATENCY_BUCKETS


class NullExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def work() -> int:
    return sum(range(20))  # stand-in for a stage's own work (~0.3 us)


def uninstrumented() -> None:
    work()
    work()
    work()


# Records the worker had not processed when each timed block ended. Work deferred to the
# end-of-block flush is still counted in CPU, but not in latency: a large backlog would mean
# the worker fell behind and the latency figures look better than a real server's would.
backlog_at_block_end: list[int] = []


def make_infersight(exporter: SpanExporter | None = None) -> tuple[Callable[[], None], Callable[[], None]]:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter or NullExporter()))
    infersight.init(
        registry=CollectorRegistry(),
        tracer_provider=provider,
        gpu="off",
        models={"m": {"version": "1", "slo_p99_seconds": 0.1}},
    )
    request, pre, model, post = (infersight.request, infersight.preprocess, infersight.model, infersight.postprocess)

    def run() -> None:
        with request(model="m", endpoint="/predict"):
            with pre():
                work()
            with model():
                work()
            with post():
                work()

    def flush() -> None:
        rt = infersight.get_runtime()
        assert rt is not None
        backlog_at_block_end.append(len(rt.worker._queue))
        rt.worker.drain()
        provider.force_flush()

    return run, flush


def make_handwritten(exporter: SpanExporter | None = None) -> tuple[Callable[[], None], Callable[[], None]]:
    """The baseline users would write: OTel spans by hand, prometheus_client histograms with
    exemplars (also the body of the hand-written Flask view)."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter or NullExporter()))
    tracer = provider.get_tracer("handwritten")
    registry = CollectorRegistry()
    req_hist = Histogram(
        "hw_request_seconds", "", ["model", "endpoint", "outcome"], buckets=LATENCY_BUCKETS, registry=registry
    )
    stage_hist = Histogram("hw_stage_seconds", "", ["model", "stage"], buckets=LATENCY_BUCKETS, registry=registry)
    perf = time.perf_counter

    def stage(name: str) -> None:
        with tracer.start_as_current_span(name) as span:
            t0 = perf()
            work()
            ctx = span.get_span_context()
            stage_hist.labels("m", name).observe(
                perf() - t0, {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
            )

    def run() -> None:
        t0 = perf()
        with tracer.start_as_current_span("POST /predict", kind=trace.SpanKind.SERVER) as root:
            stage("preprocess")
            stage("model")
            stage("postprocess")
            ctx = root.get_span_context()
            req_hist.labels("m", "/predict", "success").observe(
                perf() - t0, {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}
            )

    return run, lambda: provider.force_flush()


def measure(
    variants: dict[str, Callable[[], None]],
    flushes: dict[str, Callable[[], None]],
    n: int,
    rounds: int = 10,
    setups: dict[str, Callable[[], None]] | None = None,
) -> dict[str, dict[str, float]]:
    lat: dict[str, list[int]] = {k: [] for k in variants}
    cpu: dict[str, float] = dict.fromkeys(variants, 0.0)
    per_round = n // rounds
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, fn in variants.items():
            (setups or {}).get(name, lambda: None)()
            gc.collect()
            c0 = time.process_time()
            samples = lat[name]
            for _ in range(per_round):
                t0 = clock()
                fn()
                samples.append(clock() - t0)
            flushes.get(name, lambda: None)()
            cpu[name] += time.process_time() - c0
    out = {}
    for name, samples in lat.items():
        samples.sort()
        out[name] = {
            "p50_us": samples[len(samples) // 2] / 1000,
            "p99_us": samples[int(len(samples) * 0.99)] / 1000,
            "mean_us": statistics.fmean(samples) / 1000,
            "cpu_us": cpu[name] / (per_round * rounds) * 1e6,
        }
    return out


Variants = dict[str, Callable[[], Any]]


def flask_variants(
    hand: Callable[[], None],
    exporter: SpanExporter | None = None,
) -> tuple[Variants, Variants, dict[str, Callable[[], None]]]:
    """The same request through Flask's test client: uninstrumented, infersight (its Flask
    instrumentation and stages), the hand-written view (``hand``: server and stage spans by hand,
    histograms with exemplars), and opentelemetry-instrumentation-flask's server span only."""
    from flask import Flask

    def make_app(view: Callable[[], None]) -> Any:
        app = Flask("bench")

        @app.post("/predict")
        def predict() -> str:
            view()
            return "ok"

        return app

    def staged() -> None:
        with infersight.preprocess():
            work()
        with infersight.model(model="m"):
            work()
        with infersight.postprocess():
            work()

    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    from infersight.instrumentation import flask as infersight_flask

    otel_provider = TracerProvider()
    otel_provider.add_span_processor(BatchSpanProcessor(exporter or NullExporter()))
    otel_app = make_app(uninstrumented)
    FlaskInstrumentor.instrument_app(otel_app, tracer_provider=otel_provider)
    clients = {
        "flask uninstrumented": make_app(uninstrumented).test_client(),
        "flask + infersight": make_app(staged).test_client(),
        "flask + hand-written OTel + prometheus_client": make_app(hand).test_client(),
        "flask + otel-flask only": otel_app.test_client(),
    }
    variants = {name: (lambda c=client: c.post("/predict")) for name, client in clients.items()}
    # Our patch is class-wide, so it is switched on only for its own block of requests.
    setups = {
        name: infersight_flask.instrument if name == "flask + infersight" else infersight_flask.uninstrument
        for name in clients
    }
    return variants, {"flask + otel-flask only": otel_provider.force_flush}, setups


def asgi_variants(
    hand: Callable[[], None],
    exporter: SpanExporter | None = None,
) -> tuple[Variants, Variants, dict[str, Callable[[], None]]]:
    """The same request through a FastAPI app, called as uvicorn calls it (one ASGI call per
    request on one event loop, no sockets): an uninstrumented async endpoint, infersight (its
    Starlette instrumentation and stages), the hand-written endpoint (``hand``), and
    opentelemetry-instrumentation-fastapi alone. Then, for reference, FastAPI tracing itself
    (what it does once the app has a tracer provider of its own, global or passed to FastAPI)
    with infersight's stages and histograms under its server span."""
    import asyncio

    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from starlette.responses import PlainTextResponse

    from infersight.instrumentation import starlette as infersight_starlette

    def make_app(view: Callable[[], None], **kwargs: Any) -> Any:
        app = FastAPI(**kwargs)

        @app.post("/predict/{name}")
        async def predict(name: str) -> PlainTextResponse:
            view()
            return PlainTextResponse("ok")

        return app

    def staged() -> None:
        with infersight.preprocess():
            work()
        with infersight.model(model="m"):
            work()
        with infersight.postprocess():
            work()

    otel_provider = TracerProvider()
    otel_provider.add_span_processor(BatchSpanProcessor(exporter or NullExporter()))
    otel_app = make_app(uninstrumented)
    FastAPIInstrumentor.instrument_app(otel_app, tracer_provider=otel_provider)
    native_provider = TracerProvider()
    native_provider.add_span_processor(BatchSpanProcessor(exporter or NullExporter()))
    apps = {
        "fastapi uninstrumented": make_app(uninstrumented),
        "fastapi + infersight": make_app(staged),
        "fastapi + hand-written OTel + prometheus_client": make_app(hand),
        "fastapi + otel-fastapi only": otel_app,
        "fastapi tracing itself (own provider) + infersight": make_app(
            staged, telemetry={"tracer_provider": native_provider}
        ),
    }
    loop = asyncio.new_event_loop()
    headers = [(b"host", b"bench"), (b"content-length", b"0")]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    def call(app: Any) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict/x",
            "raw_path": b"/predict/x",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        loop.run_until_complete(app(scope, receive, send))

    variants = {name: (lambda a=app: call(a)) for name, app in apps.items()}
    ours = ("fastapi + infersight", "fastapi tracing itself (own provider) + infersight")
    # Our patch is class-wide, so it is switched on only for its own blocks of requests.
    setups = {
        name: infersight_starlette.instrument if name in ours else infersight_starlette.uninstrument for name in apps
    }
    flushes = {
        "fastapi + otel-fastapi only": otel_provider.force_flush,
        "fastapi tracing itself (own provider) + infersight": native_provider.force_flush,
    }
    return variants, flushes, setups


def report(results: dict[str, dict[str, float]], base: str, title: str) -> list[str]:
    b = results[base]
    lines = [
        f"### {title}",
        "",
        "| variant | p50 µs | p99 µs | added p50 µs | added p99 µs | CPU/request µs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['p50_us']:.1f} | {r['p99_us']:.1f} | "
            f"{r['p50_us'] - b['p50_us']:.1f} | {r['p99_us'] - b['p99_us']:.1f} | "
            f"{r['cpu_us']:.1f} |"
        )
    return lines


def ratios(results: dict[str, dict[str, float]], base: str, ours: str, other: str) -> list[str]:
    b, o, h = results[base], results[ours], results[other]

    def ratio(key: str) -> float:
        added_ours, added_other = o[key] - b[key], h[key] - b[key]
        return added_ours / added_other if added_other > 0 else float("nan")

    cpu_ratio = (o["cpu_us"] - b["cpu_us"]) / max(1e-9, h["cpu_us"] - b["cpu_us"])
    return [
        f"- added p50, {ours} / {other}: **{ratio('p50_us'):.2f}** (target ≤ 0.20)",
        f"- added p99, {ours} / {other}: **{ratio('p99_us'):.2f}** (target ≤ 0.33)",
        f"- added CPU per request incl. background export: **{cpu_ratio:.2f}** (target ≤ 0.50)",
    ]


def backlog_line(per_block: int) -> str:
    """How much of infersight's work was left for the untimed flush (then cleared)."""
    left = sorted(backlog_at_block_end)
    backlog_at_block_end.clear()
    return (
        f"- infersight's worker backlog when a timed block ended: median {left[len(left) // 2]}, "
        f"max {left[-1]} records of {per_block} requests per block (the worker keeps up when "
        "this stays near one flush interval's worth)"
    )


def main() -> list[str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    ours, ours_flush = make_infersight()
    hand, hand_flush = make_handwritten()
    results = measure(
        {"uninstrumented": uninstrumented, "infersight": ours, "hand-written OTel + prometheus_client": hand},
        {"infersight": ours_flush, "hand-written OTel + prometheus_client": hand_flush},
        args.requests,
    )
    lines = report(results, "uninstrumented", "One request, 3 stages, metrics + exemplars")
    lines += ["", *ratios(results, "uninstrumented", "infersight", "hand-written OTel + prometheus_client")]
    lines.append(backlog_line(args.requests // 10))
    fv, ff, fs = flask_variants(hand)
    ff["flask + infersight"] = ours_flush
    ff["flask + hand-written OTel + prometheus_client"] = hand_flush
    flask_requests = max(2000, args.requests // 4)
    fresults = measure(fv, ff, flask_requests, setups=fs)
    lines += ["", *report(fresults, "flask uninstrumented", "Flask test client, same request")]
    lines += [
        "",
        *ratios(
            fresults, "flask uninstrumented", "flask + infersight", "flask + hand-written OTel + prometheus_client"
        ),
    ]
    lines.append(backlog_line(flask_requests // 10))
    lines += [
        ratio.replace(" (target", " (reference; target").replace("**", "")
        for ratio in ratios(fresults, "flask uninstrumented", "flask + infersight", "flask + otel-flask only")
    ]
    av, af, setups = asgi_variants(hand)
    af["fastapi + infersight"] = ours_flush
    af["fastapi tracing itself (own provider) + infersight"] = (
        lambda f=af["fastapi tracing itself (own provider) + infersight"]: (ours_flush(), f())
    )
    af["fastapi + hand-written OTel + prometheus_client"] = hand_flush
    aresults = measure(av, af, flask_requests, setups=setups)
    base, ours_name = "fastapi uninstrumented", "fastapi + infersight"
    lines += ["", *report(aresults, base, "FastAPI (ASGI, as uvicorn calls it), same request")]
    lines += ["", *ratios(aresults, base, ours_name, "fastapi + hand-written OTel + prometheus_client")]
    lines.append(backlog_line(flask_requests // 10))
    for other in ("fastapi + otel-fastapi only",):
        lines += [
            ratio.replace(" (target", " (reference; target").replace("**", "")
            for ratio in ratios(aresults, base, ours_name, other)
        ]
    infersight.shutdown()
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
