"""The cheaper OTLP span encoder: its output parses to exactly what the stock encoder builds."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceState

import infersight
from infersight._compat import fast_otlp_exporter_class
from infersight._otlp import encode_request
from infersight._tracing import _make_exporter
from infersight.config import Config
from infersight.testing import capture
from stack import LOOPBACK

FastOTLPSpanExporter = fast_otlp_exporter_class()

RESOURCES = [
    Resource.create({"service.name": "a"}),
    Resource({"service.name": "b", "n": 3}, schema_url="https://opentelemetry.io/schemas/1.26.0"),
]
SCOPES = [
    InstrumentationScope("infersight", "0.1.0"),
    None,
    InstrumentationScope("user", None, "https://example.com/schema"),
]

scalars = st.one_of(
    st.text(max_size=20),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.sampled_from(["preprocess", "model", ""]),  # repeats, so the caches are hit
)
values = st.one_of(scalars, st.lists(st.integers(0, 9), max_size=3).map(tuple), st.binary(max_size=4))
attributes = st.dictionaries(
    st.sampled_from(["k", "infersight.stage", "http.route", "é", "n"]) | st.text(max_size=8), values, max_size=6
)
ids = st.integers(min_value=1, max_value=2**64 - 1)


@st.composite
def spans(draw: Any) -> ReadableSpan:
    trace_id = draw(st.integers(min_value=1, max_value=2**128 - 1))
    state = draw(st.sampled_from([None, TraceState([("vendor", "x1")]), TraceState([("a", "1"), ("b", "2")])]))
    ctx = SpanContext(trace_id, draw(ids), False, trace_state=state)
    parent = draw(st.one_of(st.none(), st.builds(lambda s, r: SpanContext(trace_id, s, r), ids, st.booleans())))
    code = draw(st.sampled_from(list(StatusCode)))
    description = draw(st.one_of(st.none(), st.text(max_size=10))) if code is StatusCode.ERROR else None
    events = draw(st.sampled_from([(), (Event("exception", {"exception.type": "ValueError"}, timestamp=5),)]))
    links = draw(st.sampled_from([(), (Link(SpanContext(7, 8, True), {"l": 1}),)]))
    start = draw(st.integers(min_value=0, max_value=2**63))
    return ReadableSpan(
        draw(st.text(min_size=1, max_size=12)),
        context=ctx,
        parent=parent,
        resource=draw(st.sampled_from(RESOURCES)),
        attributes=draw(attributes),
        events=events,
        links=links,
        kind=draw(st.sampled_from(list(SpanKind))),
        status=Status(code, description),
        start_time=start,
        end_time=start + draw(st.integers(0, 10**9)),
        instrumentation_scope=draw(st.sampled_from(SCOPES)),
    )


def canonical(request: ExportTraceServiceRequest) -> bytes:
    return request.SerializeToString(deterministic=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(spans(), min_size=1, max_size=12))
def test_encodes_exactly_what_the_stock_encoder_encodes(batch: list[ReadableSpan]) -> None:
    fast = ExportTraceServiceRequest.FromString(encode_request(batch))
    assert canonical(fast) == canonical(encode_spans(batch))


def test_infersight_spans_take_the_fast_path_and_match() -> None:
    with capture() as telemetry:
        for i in range(20):
            with infersight.request(model=f"m{i % 3}", endpoint="/predict"):
                with infersight.preprocess():
                    pass
                with pytest.raises(KeyError), infersight.model():
                    raise KeyError("x")  # an exception event: the stock encoder's path
        batch = telemetry.spans()
    assert len(batch) == 60
    from infersight import _otlp

    fast_path = [s for s in batch if _otlp._encode_span(s) is not None]
    assert len(fast_path) == 40  # requests and preprocess; the failed stages carry an event
    assert canonical(ExportTraceServiceRequest.FromString(encode_request(batch))) == canonical(encode_spans(batch))


def test_floats_and_extreme_values_survive() -> None:
    ctx = SpanContext(2**128 - 1, 2**64 - 1, False)
    span = ReadableSpan(
        "s",
        context=ctx,
        resource=RESOURCES[0],
        attributes={"inf": math.inf, "neg": -(2**63), "big": 2**63 - 1, "nan": math.nan, "uni": "ü\u2603"},
    )
    decoded = ExportTraceServiceRequest.FromString(encode_request([span]))
    values = {kv.key: kv.value for kv in decoded.resource_spans[0].scope_spans[0].spans[0].attributes}
    assert values["inf"].double_value == math.inf and math.isnan(values["nan"].double_value)
    assert values["neg"].int_value == -(2**63) and values["big"].int_value == 2**63 - 1
    assert values["uni"].string_value == "ü\u2603"


def test_out_of_range_int_is_dropped_like_the_stock_encoder_does() -> None:
    span = ReadableSpan("s", context=SpanContext(1, 1, False), resource=RESOURCES[0], attributes={"x": 2**64, "y": 1})
    fast = ExportTraceServiceRequest.FromString(encode_request([span]))
    assert canonical(fast) == canonical(encode_spans([span]))
    assert [kv.key for kv in fast.resource_spans[0].scope_spans[0].spans[0].attributes] == ["y"]


def test_grpc_is_the_fast_exporter() -> None:
    exporter = _make_exporter(Config.from_env(traces_exporter="otlp", otlp_protocol="grpc"))
    try:
        assert isinstance(exporter, FastOTLPSpanExporter)
    finally:
        assert exporter is not None
        exporter.shutdown()


def test_fast_exporter_delivers_to_an_otlp_receiver(sink: Any) -> None:
    """Its bytes go out as they are; an exporter whose stub is the stock one (an SDK that
    builds it elsewhere) gets a message instead, and delivers too."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
    from opentelemetry.sdk.trace.export import SpanExportResult

    exporter = FastOTLPSpanExporter(encode_request, endpoint=f"{LOOPBACK}:{sink.port}", insecure=True, timeout=5)
    batch = [
        ReadableSpan(
            f"s{i}",
            context=SpanContext(9, i + 1, False),
            resource=RESOURCES[1],
            attributes={"i": i},
            instrumentation_scope=SCOPES[0],
        )
        for i in range(5)
    ]
    assert isinstance(exporter._client, FastOTLPSpanExporter.bytes_client)
    assert isinstance(exporter._translate_data(batch), bytes)
    assert exporter.export(batch[:3]) is SpanExportResult.SUCCESS
    exporter._client = TraceServiceStub(exporter._channel)
    assert isinstance(exporter._translate_data(batch), ExportTraceServiceRequest)
    assert exporter.export(batch[3:]) is SpanExportResult.SUCCESS
    exporter.shutdown()
    ((_, received),) = [(tid, spans) for tid, spans in sink.traces().items()]
    assert sorted(span.name for _, span in received) == [f"s{i}" for i in range(5)]
    assert {resource["service.name"] for resource, _ in received} == {"b"}


def test_a_big_batch_hands_the_gil_over_while_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The export thread must not hold the GIL for a whole batch: request threads would wait.
    The encoder reads a (fake, 0.1 ms per reading) clock every 64 spans and hands over each ms."""
    from infersight import _otlp

    yields: list[float] = []
    real_sleep = _otlp.time.sleep
    monkeypatch.setattr(_otlp.time, "sleep", lambda s: (yields.append(s), real_sleep(s)))
    fake_now = iter(i * 0.0001 for i in range(10**6))
    monkeypatch.setattr(_otlp, "_clock", lambda: next(fake_now))
    batch = [
        ReadableSpan(
            f"s{i}", context=SpanContext(9, i + 1, False), resource=RESOURCES[0], attributes={"i": i, "k": "v"}
        )
        for i in range(64 * 100)
    ]
    decoded = ExportTraceServiceRequest.FromString(encode_request(batch))
    assert len(decoded.resource_spans[0].scope_spans[0].spans) == 6400
    # 100 clock checks of 0.1 ms each: a hand-off on about every 10th (once past 1 ms).
    assert 5 <= yields.count(0) <= 15, len(yields)


# ---- spans encoded straight from their records ---------------------------------------------

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from infersight._otlp import EncodedSpan, span_count  # noqa: E402
from infersight._records import RequestRecord, StageRecord  # noqa: E402
from infersight._spans import SpanEmitter  # noqa: E402
from infersight._tracing import CountingExporter, sends_through_our_encoder  # noqa: E402
from infersight.conventions import ATTR  # noqa: E402

# Stage attributes as instrumentations set them: a dict shared by many stages (a pipeline's
# task), and a stage's own; some with a key infersight also writes (the dict's order decides).
SHARED = {"pipeline.task": "text-classification", "n": 3}
bases = st.sampled_from([None, SHARED, {ATTR.MODEL_NAME: "theirs"}, {"bad": ("not", "scalar")}])
owns = st.sampled_from([None, {"tokens": 12}, {"pipeline.task": "own"}, {ATTR.STAGE_CPU_SECONDS: 0.5}])
request_attrs = (
    st.none()
    | attributes
    | st.sampled_from(
        [
            {"http.route": "/p", "http.response.status_code": 200, "ok": True},
            {"http.route": "/p", "http.response.status_code": 200, "ok": 1},
            {"http.route": "/p", "infersight.outside_stages": 0.25, "after": "x"},
            {"http.route": "/p", "w": 0.5, ATTR.MODEL_VERSION: "app's"},
            {ATTR.MODEL_NAME: "app's", "x": 1},
            {"list": ["a"]},
        ]
    )
)


def _emitters() -> tuple[SpanEmitter, SpanEmitter, list[Any], list[Any]]:
    """One emitter that encodes from records, one that builds ReadableSpans; each hands its
    spans to a list instead of its processor."""
    provider = TracerProvider(resource=RESOURCES[0])
    exporter = CountingExporter(FastOTLPSpanExporter(encode_request, endpoint=f"http://{LOOPBACK}:9"), print)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=10**8))
    encoding = SpanEmitter(provider, RESOURCES[0], encodes=sends_through_our_encoder)
    readable = SpanEmitter(provider, RESOURCES[0])
    assert encoding.encoding() and not readable.encoding()
    encoded: list[Any] = []
    built: list[Any] = []
    encoding._on_end, readable._on_end = encoded.append, built.append
    encoding._emit_item = encoded.append  # a request's pre-encoded spans, one item
    return encoding, readable, encoded, built


texts = st.sampled_from(["predict", "/v1/score", "é", ""]) | st.text(max_size=6)


@st.composite
def records(draw: Any) -> Any:
    """A request record and its stages' attributes, built when called: records draw their own
    span ids from ``random``, which strategies must not touch."""
    kind = draw(st.sampled_from([SpanKind.SERVER, SpanKind.CLIENT]))
    fields = {
        "name": draw(texts) or "r",
        "trace_id": draw(st.integers(1, 2**128 - 1)),
        "parent": draw(st.sampled_from([0, 1, 2**64 - 1])),
        "span_id": draw(ids),
        "parent_remote": draw(st.booleans()),
        "trace_state": draw(st.sampled_from([None, TraceState(), TraceState([("vendor", "x1")])])),
        "start_ns": draw(st.integers(0, 2**40)),
        "duration": draw(st.integers(0, 10**9)),
        "status_code": draw(st.sampled_from([None, 200, 404, 503])),
        "protocol": draw(st.sampled_from(["", "grpc"])),
        "outcome": draw(st.sampled_from(["success", "error"])),
        "error": draw(st.sampled_from([None, ValueError("boom")])),
        "batch_size": draw(st.integers(0, 3)),
        "tokens": draw(st.sampled_from([-1, 0, 17])),
        "queue_wait_s": draw(st.sampled_from([-1.0, 0.0, 0.25])),
        "emit_span": draw(st.booleans()),
        "attrs": draw(request_attrs),
        "http": draw(
            st.sampled_from([None, ("GET", "/p", "http", "10.0.0.1", "/p"), ("POST", "/x", "https", None, None)])
        ),
    }
    stages = [
        {
            "name": draw(texts) or "s",
            "parent": draw(st.sampled_from(["request", 0, 5])),
            "span_id": draw(ids),
            "sampled": draw(st.booleans()),
            "batch_size": draw(st.integers(0, 2)),
            "queue_wait_s": draw(st.sampled_from([-1.0, 0.0, 0.003])),
            "error": draw(st.sampled_from([None, None, KeyError("k")])),
            "base": draw(bases),
            "own": draw(owns),
            # a plain stage's attributes come from the template: (model, version, cpu)
            "attrs": (draw(texts), draw(texts), draw(st.none() | st.floats(0, 1)))
            if draw(st.booleans())
            else draw(attributes),
        }
        for _ in range(draw(st.integers(0, 3)))
    ]

    def make() -> tuple[RequestRecord, list[Any]]:
        rec = RequestRecord(fields["name"], kind.value, "/p", fields["trace_id"], fields["parent"], True)
        for key in ("span_id", "parent_remote", "trace_state", "start_ns", "status_code", "protocol", "outcome"):
            setattr(rec, key, fields[key])
        for key in ("error", "batch_size", "tokens", "queue_wait_s", "emit_span", "attrs", "http"):
            setattr(rec, key, fields[key])
        rec.end_ns = rec.start_ns + fields["duration"]
        stage_attrs = []
        for spec in stages:
            parent = rec.span_id if spec["parent"] == "request" else spec["parent"]
            stage = StageRecord(spec["name"], None, rec, parent, rec.trace_id, spec["sampled"])
            stage.span_id, stage.batch_size, stage.error = spec["span_id"], spec["batch_size"], spec["error"]
            stage.queue_wait_s = spec["queue_wait_s"]
            stage.base_attrs, stage.attrs = spec["base"], dict(spec["own"]) if spec["own"] else None
            stage.start_ns, stage.end_ns = rec.start_ns, rec.end_ns
            rec.stages.append(stage)
            stage_attrs.append(spec["attrs"])
        return rec, stage_attrs

    return make


@settings(max_examples=200, deadline=None)
@given(st.lists(records(), min_size=1, max_size=4), st.text(max_size=5), st.text(max_size=5))
def test_spans_encoded_from_records_decode_to_the_spans_the_stock_encoder_builds(
    batch: list[Any], model: str, version: str
) -> None:
    encoding, readable, encoded, built = _emitters()
    for make in batch + batch:  # the second time from the templates cached the first
        rec, stage_attrs = make()
        encoding.emit(rec, model, version, [dict(a) if isinstance(a, dict) else a for a in stage_attrs])
        readable.emit(rec, model, version, [dict(a) if isinstance(a, dict) else a for a in stage_attrs])
    assert span_count(encoded) == len(built)
    # Exceptions and non-scalar attributes still come as ReadableSpans; the rest pre-encoded.
    errors = sum(1 for span in built if span.events or _otlp_encode_span(span) is None)
    assert sum(s.span_count for s in encoded if type(s) is EncodedSpan) == len(built) - errors
    assert canonical(ExportTraceServiceRequest.FromString(encode_request(encoded))) == canonical(encode_spans(built))


def _otlp_encode_span(span: Any) -> Any:
    from infersight import _otlp

    return _otlp._encode_span(span)


def test_a_processor_the_app_adds_gets_readable_spans_from_then_on() -> None:
    encoding, _readable, encoded, _built = _emitters()
    rec = RequestRecord("r", SpanKind.SERVER.value, "/p", 7, 0, True)
    rec.end_ns = rec.start_ns + 1
    encoding.emit(rec, "m", "1", [])
    theirs = CountingExporter(FastOTLPSpanExporter(encode_request), print)
    encoding.provider.add_span_processor(BatchSpanProcessor(theirs))
    assert not encoding.encoding()
    encoding.emit(rec, "m", "1", [])
    assert [type(s) for s in encoded] == [EncodedSpan, ReadableSpan]


class _StartingProcessor(SimpleSpanProcessor):
    """An app's processor that acts as spans start: infersight's spans must start for it."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started = getattr(self, "started", 0) + 1


def _app_emitter(processor: Any) -> tuple[SpanEmitter, InMemorySpanExporter, list[int]]:
    """An emitter for an app's own provider; the list counts the spans started as SDK spans."""
    provider = TracerProvider(resource=RESOURCES[0])
    exporter = InMemorySpanExporter()
    provider.add_span_processor(processor(exporter))
    exporter.get_finished_spans = _flushed(provider, exporter.get_finished_spans)  # type: ignore[method-assign]
    emitter = SpanEmitter(provider, RESOURCES[0], with_on_start=True)
    started: list[int] = []
    replay = emitter._emit_started
    emitter._emit_started = lambda *args: (started.append(1), replay(*args))  # type: ignore[method-assign]
    return emitter, exporter, started


@settings(max_examples=150, deadline=None)
@given(st.lists(records(), min_size=1, max_size=4), st.text(max_size=5), st.text(max_size=5))
def test_an_apps_stock_processors_get_the_spans_its_sdk_spans_would_have_been(
    batch: list[Any], model: str, version: str
) -> None:
    """The SDK's batch and simple processors do nothing as a span starts: infersight hands them
    ReadableSpans, which must be what SDK spans started and ended would have given them."""
    quick, quick_out, quick_started = _app_emitter(SimpleSpanProcessor)
    sdk, sdk_out, _ = _app_emitter(_StartingProcessor)
    for make in batch:
        for emitter in (quick, sdk):
            rec, stage_attrs = make()
            emitter.emit(rec, model, version, [dict(a) if isinstance(a, dict) else a for a in stage_attrs])
    spans, expected = quick_out.get_finished_spans(), sdk_out.get_finished_spans()
    assert canonical(encode_spans(spans)) == canonical(encode_spans(expected))
    assert getattr(sdk.provider._active_span_processor._span_processors[0], "started", 0) == len(expected)
    assert len(quick_started) <= len(expected)


def _flushed(provider: TracerProvider, read: Any) -> Any:
    return lambda: (provider.force_flush(), read())[1]


def test_an_apps_batch_processor_that_overrides_on_end_gets_every_span_through_it() -> None:
    """A subclass's ``on_end`` (here a filter) is the app's: spans never skip it for the queue."""

    class Filtering(BatchSpanProcessor):
        def on_end(self, span: Any) -> None:
            if span.name != "model":
                super().on_end(span)

    emitter, exporter, started = _app_emitter(Filtering)
    rec = RequestRecord("POST /p", SpanKind.SERVER.value, "/p", 7, 0, True)
    rec.end_ns = rec.start_ns + 1
    stage = StageRecord("model", "m", rec, rec.span_id, rec.trace_id, True)
    stage.end_ns = stage.start_ns + 1
    rec.stages.append(stage)
    emitter.emit(rec, "m", "1", [("m", "1", None)])
    assert [s.name for s in exporter.get_finished_spans()] == ["POST /p"] and started == []


def test_a_provider_with_an_active_processor_of_its_own_gets_started_spans() -> None:
    """Built with ``active_span_processor=`` one of the app's, the provider may act on start."""
    exporter = InMemorySpanExporter()

    class Own(SimpleSpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            span.set_attribute("seen.on_start", True)

    provider = TracerProvider(resource=RESOURCES[0], active_span_processor=Own(exporter))  # type: ignore[arg-type]
    emitter = SpanEmitter(provider, RESOURCES[0], with_on_start=True)
    rec = RequestRecord("POST /p", SpanKind.SERVER.value, "/p", 7, 0, True)
    rec.end_ns = rec.start_ns + 1
    emitter.emit(rec, "m", "1", [])
    (span,) = exporter.get_finished_spans()
    assert span.attributes["seen.on_start"] is True  # type: ignore[index]


@pytest.mark.parametrize("processor", [SimpleSpanProcessor, BatchSpanProcessor])
def test_only_spans_the_sdk_would_change_start_for_an_apps_stock_processors(processor: Any) -> None:
    """A span with an exception, or an attribute the SDK validates or copies, starts as an SDK
    span; the others go to the processors' ``on_end`` (a batch processor's queue) as they are."""
    emitter, exporter, started = _app_emitter(processor)
    rec = RequestRecord("POST /p", SpanKind.SERVER.value, "/p", 7, 0, True)
    rec.attrs = {"http.route": "/p", "ok": True}
    rec.end_ns = rec.start_ns + 1
    stage = StageRecord("model", "m", rec, rec.span_id, rec.trace_id, True)
    stage.end_ns = stage.start_ns + 1
    rec.stages.append(stage)
    emitter.emit(rec, "m", "1", [("m", "1", 0.5)])
    assert [s.name for s in exporter.get_finished_spans()] == ["POST /p", "model"] and started == []
    rec.attrs = {"labels": ["a", "b"]}
    emitter.emit(rec, "m", "1", [("m", "1", None)])
    assert len(started) == 1 and exporter.get_finished_spans()[2].attributes["labels"] == ("a", "b")
    rec.attrs, rec.error = {}, ValueError("boom")
    emitter.emit(rec, "m", "1", [("m", "1", None)])
    assert len(started) == 2 and exporter.get_finished_spans()[4].events[0].name == "exception"
    # A processor the app adds later that acts on start: spans start for it from then on.
    later = _StartingProcessor(InMemorySpanExporter())
    emitter.provider.add_span_processor(later)
    rec.error = None
    emitter.emit(rec, "m", "1", [("m", "1", None)])
    assert len(started) == 4 and later.started == 2 and len(exporter.get_finished_spans()) == 8


def test_a_batch_of_request_items_holds_about_the_stock_512_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through our encoder a queue item is a request's spans: 128 per export, so a failing export
    takes 128 requests off the queue, not 512 (the outage test measures what that keeps)."""
    from infersight._tracing import _items_per_batch

    ours = fast_otlp_exporter_class()(encode_request, timeout=1)
    monkeypatch.delenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", raising=False)
    monkeypatch.delenv("OTEL_BSP_MAX_QUEUE_SIZE", raising=False)
    assert _items_per_batch(ours) == 128
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    assert _items_per_batch(ConsoleSpanExporter()) is None  # a span per item: the stock default
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "64")
    assert _items_per_batch(ours) is None  # the user's settings, as the processor reads them
