"""Traces end to end: the Flask example (one import) -> our collector -> Jaeger and Prometheus.

Load from examples/load/http_load.py, plus three requests made slow with the example's
fault switch (600 ms in postprocess: over the collector's 500 ms tail-sampling threshold,
so those traces are always kept). Asserts:

* Jaeger (the real trace backend, read back through its query API) stores traces whose server
  span has the preprocess, model and postprocess stage spans as descendants, under the same
  trace id;
* Prometheus, scraping the collector's prometheus exporter, has span metrics
  (traces_span_metrics_calls_total) by model (the infersight.model.name dimension) for the
  server's service;
* those span metrics carry exemplars (GET /api/v1/query_exemplars) whose trace ids resolve to
  stored traces (GET /api/v3/traces/<id> on Jaeger), slow in postprocess: the metric -> trace
  jump works.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from infersight import traceview
from infersight.conventions import ATTR, SPAN
from stack import wait_until

from .live_stack import LiveStack

pytestmark = [pytest.mark.stack, pytest.mark.slow]  # real binaries, ~100 s for the set

STAGES = (SPAN.PREPROCESS, SPAN.MODEL, SPAN.POSTPROCESS)
SLOW_MS = 600  # > the 500 ms latency policy of tail_sampling in collector-config/otelcol.yaml
SERVICE = "sentiment-e2e"


def _span_metric(live: LiveStack, suffix: str) -> str:
    """Prometheus name of a span_metrics metric, as the exporter's UnderscoreEscapingWithSuffixes
    spells it (namespace from the shipped config, default traces.span.metrics)."""
    sm = live.collector_config["connectors"]["span_metrics"]
    namespace = str(sm.get("namespace", "traces.span.metrics"))
    return namespace.replace(".", "_") + suffix


def _under(span: traceview.Span, root_id: str, by_id: dict[str, traceview.Span]) -> bool:
    """Whether ``span`` descends from the span ``root_id`` (a bounded walk up the parents)."""
    for _ in range(10):
        if span.parent_id == root_id:
            return True
        parent = by_id.get(span.parent_id)
        if parent is None:
            return False
        span = parent
    return False


def _complete_traces(live: LiveStack, since: float) -> dict[str, dict[str, Any]]:
    """Trace id -> {root, stages} for the traces Jaeger stores of our service, started after
    ``since``, whose root is a SERVER span with all three stage spans below it."""
    out = {}
    for trace_id, trace in live.sink.traces(SERVICE, since=since).items():
        ours = [s for s in trace.spans if s.service == SERVICE]
        roots = [s for s in ours if not s.parent_id and s.kind == traceview.SPAN_KIND_SERVER]
        if len(roots) != 1:
            continue
        by_id = {s.span_id: s for s in ours}
        stages = {s.name: s for s in ours if s.name in STAGES and _under(s, roots[0].span_id, by_id)}
        if set(stages) == set(STAGES):
            out[trace_id] = {"root": roots[0], "stages": stages}
    return out


def test_traces_reach_jaeger_and_span_metrics_reach_prometheus(live: LiveStack) -> None:
    url = f"{live.sentiment.url}/predict"
    result = live.load(url, duration_s=5, rps=10, concurrency=2, seed=1)
    assert result.requests >= 20 and result.errors == 0, result.summary()
    t_slow = time.time()  # earlier tests' slow traces (the alert test's) must not count here
    try:
        live.sentiment.set_faults(slow_postprocess_ms=SLOW_MS)
        slow = live.load(url, duration_s=2.5, rps=1.2, concurrency=1, seed=2)
    finally:
        live.sentiment.set_faults()
    assert slow.requests >= 2 and slow.errors == 0, slow.summary()
    assert min(slow.latencies_s) >= SLOW_MS / 1000, slow.summary()

    # 1. Traces in Jaeger: the slow ones always (latency policy), some fast ones (10%).
    def slow_traces() -> dict[str, dict[str, Any]] | None:
        ours = {t: v for t, v in _complete_traces(live, t_slow).items() if v["root"].start_ns >= t_slow * 1e9}
        slow_ids = {t for t, v in ours.items() if v["root"].duration_s * 1000 >= SLOW_MS}
        return ours if len(slow_ids) >= slow.requests else None

    traces = wait_until(slow_traces, 30, interval=0.5, what=f"{slow.requests} slow complete traces in Jaeger")
    for trace_id, trace in traces.items():
        root, stages = trace["root"], trace["stages"]
        assert root.attributes.get(ATTR.HTTP_ROUTE) == "/predict", trace_id
        for name, span in stages.items():
            assert span.trace_id == trace_id
            assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns, f"{name} outside its request span"
        assert stages[SPAN.MODEL].attributes.get(ATTR.MODEL_NAME) == live.model
        # Stage CPU time is stored with the span: the trace view splits CPU from waiting with it.
        assert stages[SPAN.POSTPROCESS].number(ATTR.STAGE_CPU_SECONDS) is not None
    assert traces, "no complete trace of our own requests"
    slowest = max(traces.values(), key=lambda t: t["root"].duration_s)
    post = slowest["stages"][SPAN.POSTPROCESS]
    assert post.duration_s * 1000 >= SLOW_MS, "slowness not in postprocess"
    live.notes["traces"] = {"complete_traces_in_jaeger": len(traces), "load": result.summary()}

    # 2. Span metrics in Prometheus, by model, for our service (job = service.name via honor_labels).
    calls = _span_metric(live, "_calls_total")
    model_label = ATTR.MODEL_NAME.replace(".", "_")
    expr = f'sum by (job, span_name) ({calls}{{{model_label}="{live.model}"}})'
    found = live.wait_query(expr, 30, predicate=lambda r: {s["metric"]["span_name"] for s in r} >= set(STAGES))
    jobs = {s["metric"].get("job") for s in found}
    assert jobs == {SERVICE}, f"span metrics of {live.model} from {jobs}"
    by_span = {s["metric"]["span_name"]: float(s["value"][1]) for s in found}
    assert by_span[SPAN.POSTPROCESS] >= result.requests  # every span counted, sampled or not

    # 3. Exemplars on the span-metric latency histogram lead to traces Jaeger stores.
    duration = _span_metric(live, "_duration_milliseconds_bucket")
    selector = f'{duration}{{{model_label}="{live.model}",span_name="{SPAN.POSTPROCESS}"}}'

    def exemplars() -> list[dict[str, Any]] | None:
        data = live.api("query_exemplars", query=selector, start=t_slow, end=time.time() + 1)
        slow_ex = [
            e for series in data for e in series["exemplars"] if SLOW_MS <= float(e["value"]) < SLOW_MS + 150
        ]  # ours, not another test's
        return slow_ex or None

    slow_exemplars = wait_until(exemplars, 30, interval=0.5, what=f"exemplars >= {SLOW_MS} ms on {selector}")
    ids = {e["labels"]["trace_id"] for e in slow_exemplars}
    for trace_id in ids:
        stored = live.sink.trace(trace_id)  # GET /api/v3/traces/<id>
        assert stored is not None, f"exemplar trace id {trace_id} resolves to no trace in Jaeger"
        slow_posts = [s for s in stored.spans if s.name == SPAN.POSTPROCESS and s.duration_s * 1000 >= SLOW_MS]
        assert slow_posts, f"trace {trace_id} has no slow postprocess span"
    live.notes["traces"]["slow_exemplars"] = [(e["labels"]["trace_id"], e["value"]) for e in slow_exemplars]
    print(
        f"\ntraces: {len(traces)} complete traces; span metrics {by_span}; "
        f"slow exemplars {live.notes['traces']['slow_exemplars']}"
    )
