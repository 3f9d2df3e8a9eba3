"""Every touch of another library's private internals, in one place.

infersight needs a few things the OpenTelemetry SDK and prometheus_client don't expose: the
provider's span processors (to count what a full BatchSpanProcessor queue drops, and to hold
its export lock across a fork), OTel's context variable (one ContextVar set per request instead
of five API calls), prometheus_client's multiprocess lock, its histogram buckets (to write a
drain's observations once) and its mmap files (to merge dead workers' files), and the OTLP
exporter's channel set-up (to hand gRPC bytes we encoded). Each is reached here and nowhere
else. When a pinned upgrade moves a target, its probe answers None or empty, the feature that
needs it turns itself off (falling back to the public path where there is one), and
``tests/test_compat.py`` fails, since it asserts that every probe in ``PROBES`` finds its
target on the installed versions.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

__all__ = [
    "BENTOML_IO",
    "BENTOML_LOCAL_CALL",
    "LITSERVE_HOOK_CALLERS",
    "LITSERVE_ITEM_LEN",
    "LITSERVE_QUEUE_GETTER",
    "PROBES",
    "SPAN_KEY",
    "batch_emits",
    "batch_export_locks",
    "batch_queues",
    "call_innermost",
    "composite_propagators",
    "fans_out",
    "fast_otlp_exporter_class",
    "fastapi_route_template",
    "fastapi_telemetry_config",
    "flask_app_traced_by_contrib",
    "histogram_parts",
    "is_wrapt_wrapper",
    "let_app_replace_tracer_provider",
    "multiprocess_collector_path",
    "multiprocess_values_lock",
    "otel_context_var",
    "ray_serve_replica_config",
    "read_mmap_values",
    "replace_wrapped",
    "span_goes_nowhere",
    "span_processor",
    "span_processors",
    "starts_are_noops",
    "stock_batch_on_end",
    "tracer_apart",
    "tritonclient_http_aio_target",
    "tritonclient_http_target",
    "unset_tracer_provider",
    "wrap_batch_exporters",
    "wrap_ray_serve_http_entrypoint",
    "wrapt_wrapper_of",
    "write_mmap_values",
]

_LOCK_TYPE = type(threading.Lock())

# ---- OpenTelemetry SDK --------------------------------------------------------------------


def span_processor(provider: TracerProvider) -> Any:
    """The provider's composite processor, whose ``on_end`` takes our finished spans (the
    public API starts spans; we hand over spans that already ended)."""
    return getattr(provider, "_active_span_processor", None)


def span_processors(provider: Any) -> tuple[Any, ...]:
    """The processors an SDK provider fans out to (empty when they moved)."""
    return tuple(getattr(span_processor(provider), "_span_processors", ()))


def _noop_hooks() -> tuple[frozenset[Any], frozenset[Any]]:
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    kinds = (SpanProcessor, BatchSpanProcessor, SimpleSpanProcessor)
    starts = frozenset(kind.__dict__.get("on_start") for kind in kinds) - {None}
    # ``_on_ending``: the SDK calls it on a span about to end; None where the SDK has none.
    endings = frozenset(kind.__dict__.get("_on_ending") for kind in kinds) | {None}
    return starts, endings


_NOOP_HOOKS: tuple[frozenset[Any], frozenset[Any]] | None = None


def starts_are_noops(processors: tuple[Any, ...]) -> bool:
    """Whether each processor does nothing as a span starts or is ending (the SDK's own batch
    and simple processors): then a span that already ended needs only their ``on_end``."""
    global _NOOP_HOOKS
    if _NOOP_HOOKS is None:
        _NOOP_HOOKS = _noop_hooks()
    starts, endings = _NOOP_HOOKS
    for processor in processors:
        kind = type(processor)
        if getattr(kind, "on_start", None) not in starts or getattr(kind, "_on_ending", None) not in endings:
            return False
    return True


def fans_out(processor: Any) -> bool:
    """Whether a provider's active processor is one of the SDK's, which only hands each span to
    the processors it holds (``span_processors``); a provider built with one of its own may act
    on start itself."""
    from opentelemetry.sdk.trace import ConcurrentMultiSpanProcessor, SynchronousMultiSpanProcessor

    return type(processor) in (SynchronousMultiSpanProcessor, ConcurrentMultiSpanProcessor)


def stock_batch_on_end(processors: tuple[Any, ...]) -> bool:
    """Whether each processor's ``on_end`` is the SDK batch processor's own (not a subclass's
    override): only then may a span skip it for the queue's ``emit`` (``batch_emits``)."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    stock = BatchSpanProcessor.on_end
    return all(getattr(type(processor), "on_end", None) is stock for processor in processors)


def span_goes_nowhere(span: Any) -> bool:
    """A span recorded by an SDK provider that has no span processor: nothing will ever export
    it (BentoML's own provider, when its tracing has no exporter). False when unsure."""
    processors = getattr(getattr(span, "_span_processor", None), "_span_processors", None)
    return isinstance(processors, tuple) and not processors


def tracer_apart(tracer: Any, provider: Any) -> bool:
    """Whether ``tracer`` is an SDK tracer of another provider than ``provider`` (BentoML gives
    contrib's ASGI middleware a provider of its own). False for a proxy of the global provider."""
    processor = getattr(tracer, "span_processor", None)
    return processor is not None and processor is not span_processor(provider)


def _probe_tracer_apart() -> bool:
    ours, theirs = TracerProvider(), TracerProvider()
    return tracer_apart(theirs.get_tracer("probe"), ours) and not tracer_apart(ours.get_tracer("probe"), ours)


def _probe_span_goes_nowhere() -> bool:
    import io

    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    from .conventions import SPAN

    bare, exporting = TracerProvider(), TracerProvider()
    exporting.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=io.StringIO())))
    with (
        bare.get_tracer("probe").start_as_current_span(SPAN.REQUEST) as a,
        exporting.get_tracer("p").start_span(SPAN.REQUEST) as b,
    ):
        return span_goes_nowhere(a) and not span_goes_nowhere(b)


def _batch_core(processor: Any) -> Any:
    return getattr(processor, "_batch_processor", None)


def batch_queues(provider: Any) -> list[tuple[Any, int]]:
    """Each BatchSpanProcessor's queue and capacity: when one is full it drops the oldest span
    with only a log line, so infersight counts that itself."""
    found = []
    for processor in span_processors(provider):
        core = _batch_core(processor)
        queue, size = getattr(core, "_queue", None), getattr(core, "_max_queue_size", None)
        if queue is not None and isinstance(size, int):
            found.append((queue, size))
    return found


def batch_emits(processors: tuple[Any, ...]) -> list[Callable[[Any], Any]] | None:
    """Each BatchSpanProcessor's queueing ``emit`` (fork and shutdown checks, the bounded queue,
    the export thread's wake-up), which its ``on_end`` calls after a sampled check: our
    pre-encoded items are sampled, so they go straight there. None when one is missing."""
    emits = [getattr(_batch_core(processor), "emit", None) for processor in processors]
    return emits if emits and all(callable(e) for e in emits) else None  # type: ignore[return-value]


def batch_export_locks(provider: Any) -> list[Any]:
    """Each BatchSpanProcessor's export lock, held while its thread calls the exporter."""
    found = []
    for processor in span_processors(provider):
        lock = getattr(_batch_core(processor), "_export_lock", None)
        if lock is not None and hasattr(lock, "acquire"):
            found.append(lock)
    return found


def batch_exporter(processor: Any) -> Any:
    """The exporter a BatchSpanProcessor sends to (None for another kind of processor)."""
    return getattr(_batch_core(processor), "_exporter", None)


def wrap_batch_exporters(provider: Any, wrap: Callable[[Any], Any]) -> int:
    """Put ``wrap(exporter)`` around the exporter of each of the provider's batch processors
    (to count what an app-owned provider exports). ``wrap`` returns its argument for an
    exporter it already wraps. Returns how many it wrapped."""
    wrapped = 0
    for processor in span_processors(provider):
        core = _batch_core(processor)
        exporter = getattr(core, "_exporter", None)
        if exporter is not None:
            replacement = wrap(exporter)
            if replacement is not exporter:
                core._exporter = replacement
                wrapped += 1
    return wrapped


def otel_context_var() -> contextvars.ContextVar[Context] | None:
    """The ContextVar behind OTel's default runtime context, or None for another runtime."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if isinstance(runtime, ContextVarsRuntimeContext):
        var = getattr(runtime, "_current_context", None)
        if isinstance(var, contextvars.ContextVar):
            return var
    return None


_provider_hook_installed = False


def let_app_replace_tracer_provider(is_ours: Callable[[Any], bool], on_replaced: Callable[[Any], None]) -> bool:
    """Let ``trace.set_tracer_provider(theirs)`` replace a provider infersight set, instead of
    being refused ("Overriding of current TracerProvider is not allowed"): an app that sets
    its own after ``import infersight.auto`` gets it, and ``on_replaced(theirs)`` is called.
    The OTel API sets the global once; its private ``_set_tracer_provider`` is wrapped to undo
    that once for infersight's own provider only. Installed once per process."""
    global _provider_hook_installed
    import wrapt
    from opentelemetry import trace as api

    if _provider_hook_installed:
        return True
    once: Any = getattr(api, "_TRACER_PROVIDER_SET_ONCE", None)
    if not callable(getattr(api, "_set_tracer_provider", None)) or not hasattr(once, "_done"):
        return False

    def set_provider(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        provider = args[0] if args else kwargs.get("tracer_provider")
        current = getattr(api, "_TRACER_PROVIDER", None)
        if current is None or current is provider or not is_ours(current):
            return wrapped(*args, **kwargs)
        with once._lock:
            once._done = False
            api._TRACER_PROVIDER = None
        result = wrapped(*args, **kwargs)
        if getattr(api, "_TRACER_PROVIDER", None) is provider:
            on_replaced(provider)
        return result

    wrapt.wrap_function_wrapper(api, "_set_tracer_provider", set_provider)
    _provider_hook_installed = True
    return True


def unset_tracer_provider(provider: Any) -> bool:
    """Undo ``trace.set_tracer_provider(provider)`` while ``provider`` is still the global one, so
    that a provider infersight shut down is not left behind as the process's: libraries that trace
    once any provider is set (FastAPI's own tracing, OTel instrumentations) would record into it
    and lose their spans, and a later ``init`` would take it as the app's. Returns whether it was
    unset (False when another provider is global, or where the OTel API moved its set-once)."""
    from opentelemetry import trace as api

    once: Any = getattr(api, "_TRACER_PROVIDER_SET_ONCE", None)
    if not hasattr(once, "_done") or not hasattr(once, "_lock") or not hasattr(api, "_TRACER_PROVIDER"):
        return False
    with once._lock:
        if getattr(api, "_TRACER_PROVIDER", None) is not provider:
            return False
        api._TRACER_PROVIDER = None
        once._done = False
    return True


# The key under which OTel's context holds the current span (found through the public API).
SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))

_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _exporter_hooks_present() -> bool:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return all(
        callable(getattr(OTLPSpanExporter, name, None)) for name in ("_initialize_channel_and_stub", "_translate_data")
    )


@functools.cache
def fast_otlp_exporter_class() -> type[Any]:
    """The stock OTLP/gRPC span exporter (retries, timeouts, TLS, headers, compression) with
    infersight's encoder (``_otlp.encode_request``), its bytes sent as they are. Built on first
    use: importing the gRPC exporter imports grpc, which a Flask app may never need."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    class BytesTraceClient:
        """The trace service's Export method taking the request's bytes as they are: the stock
        stub would have them parsed into a message only to serialise it again (~1 µs per span)."""

        def __init__(self, channel: Any) -> None:
            self.Export = channel.unary_unary(
                _EXPORT_METHOD,
                request_serializer=None,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )

    class FastOTLPSpanExporter(OTLPSpanExporter):
        bytes_client = BytesTraceClient
        accepts_encoded_spans = True  # _otlp.EncodedSpan: spans encoded from their records

        def __init__(self, encode: Callable[[Sequence[ReadableSpan]], bytes], **kwargs: Any) -> None:
            self._encode = encode
            super().__init__(**kwargs)

        def _initialize_channel_and_stub(self) -> None:  # also called to reconnect
            super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]
            if getattr(self, "_channel", None) is not None:
                self._client = BytesTraceClient(self._channel)  # type: ignore[assignment]

        def _translate_data(self, data: Sequence[ReadableSpan]) -> Any:
            encoded = self._encode(data)
            if isinstance(getattr(self, "_client", None), BytesTraceClient):
                return encoded
            # An SDK version that builds its stub elsewhere gets a message its stub can serialise.
            return ExportTraceServiceRequest.FromString(encoded)

    return FastOTLPSpanExporter


def flask_app_traced_by_contrib(app: Any) -> bool:
    """Whether opentelemetry-instrumentation-flask traces ``app`` (its instrumented Flask
    subclass and ``instrument_app`` both mark the app so)."""
    return getattr(app, "_is_instrumented_by_opentelemetry", False) is True


def composite_propagators(propagator: Any) -> tuple[Any, ...]:
    """The propagators inside a ``CompositePropagator`` (None found: treated as unknown ones)."""
    return tuple(getattr(propagator, "_propagators", None) or (propagator,))


# ---- wrapt --------------------------------------------------------------------------------


def is_wrapt_wrapper(obj: Any) -> bool:
    """Whether ``obj`` is a wrapt function wrapper: wrapt 2's C ``FunctionWrapper`` isn't an
    instance of the public ``wrapt.ObjectProxy``, but every wrapper has ``_self_wrapper``."""
    import wrapt

    return isinstance(obj, wrapt.FunctionWrapper) or hasattr(obj, "_self_wrapper")


def call_innermost(wrapped: Any, args: Any, kwargs: Any, then: Callable[[Any], Any]) -> Any:
    """Call ``wrapped`` (what a wrapt wrapper of ours was handed) with ``then`` applied to the
    result of the original function, beneath any other library's wrapt wrappers in between:
    what ``then`` adds (a channel's interceptor) sits inside theirs, whichever patched first."""
    wrapper = getattr(wrapped, "_self_wrapper", None)
    inner = getattr(wrapped, "__wrapped__", None)
    if wrapper is None or inner is None:
        return then(wrapped(*args, **kwargs))
    instance = getattr(wrapped, "_self_instance", None)
    return wrapper(lambda *a, **k: call_innermost(inner, a, k, then), instance, args, kwargs)


def wrapt_wrapper_of(obj: Any) -> Any:
    """The wrapper function of a wrapt wrapper (None for anything else)."""
    return getattr(obj, "_self_wrapper", None)


def replace_wrapped(proxy: Any, target: Any) -> None:
    """Point a wrapt wrapper at ``target`` instead of what it wrapped (its ``__wrapped__`` is
    assignable): takes one wrapper out of the middle of a stack."""
    proxy.__wrapped__ = target


def _probe_replace_wrapped() -> bool:
    import wrapt

    def one() -> int:
        return 1

    def plus(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return wrapped() + 10

    outer = wrapt.FunctionWrapper(wrapt.FunctionWrapper(one, plus), plus)
    replace_wrapped(outer, one)
    return bool(outer() == 11)


def _probe_call_innermost() -> bool:
    import wrapt

    def original(x: int) -> list[str]:
        return [str(x)]

    def theirs(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return ["theirs", *wrapped(*args, **kwargs)]

    stacked = wrapt.FunctionWrapper(original, theirs)
    return bool(call_innermost(stacked, (1,), {}, lambda r: [*r, "ours"]) == ["theirs", "1", "ours"])


# ---- prometheus_client --------------------------------------------------------------------


def multiprocess_values_lock() -> Any:
    """The one lock prometheus_client's multiprocess values share (a closure cell of
    ``ValueClass.inc``); None outside multiprocess mode, where locks are per value and held
    only for one addition."""
    values = sys.modules.get("prometheus_client.values")
    cls = getattr(values, "ValueClass", None)
    if not getattr(cls, "_multiprocess", False):
        return None
    for cell in getattr(getattr(cls, "inc", None), "__closure__", None) or ():
        if isinstance(cell.cell_contents, _LOCK_TYPE):
            return cell.cell_contents
    return None


def histogram_parts(child: Any) -> tuple[Sequence[float], Any, Sequence[Any]] | None:
    """A labelled histogram's upper bounds, sum value and per-bucket values (non-cumulative,
    each with ``inc`` and ``set_exemplar``), or None when they moved."""
    bounds = getattr(child, "_upper_bounds", None)
    total = getattr(child, "_sum", None)
    buckets = getattr(child, "_buckets", None)
    if bounds is None or total is None or buckets is None or len(buckets) != len(bounds):
        return None
    if not all(hasattr(b, "set_exemplar") for b in buckets[:1]):
        return None
    return bounds, total, buckets


def _mmap_dict() -> Any:
    from prometheus_client import mmap_dict

    return getattr(mmap_dict, "MmapedDict", None)


def read_mmap_values(path: str) -> Iterator[tuple[str, float, float]]:
    """(key, value, timestamp) of each sample in one multiprocess ``.db`` file."""
    for key, value, timestamp, _pos in _mmap_dict().read_all_values_from_file(path):
        yield key, value, timestamp


def write_mmap_values(path: str, items: Iterator[tuple[str, float, float]]) -> None:
    """Write a multiprocess ``.db`` file that prometheus_client's collector reads."""
    out = _mmap_dict()(path)
    try:
        for key, value, timestamp in items:
            out.write_value(key, value, timestamp)
    finally:
        out.close()


def multiprocess_collector_path(collector: Any) -> str | None:
    """The directory a ``MultiProcessCollector`` reads."""
    path = getattr(collector, "_path", None)
    return path if isinstance(path, str) else None


# ---- Probes -------------------------------------------------------------------------------


def _probe_span_processor() -> bool:
    return span_processor(TracerProvider()) is not None


def _batch_processor_fixture() -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = TracerProvider()
    processor = BatchSpanProcessor(InMemorySpanExporter())
    provider.add_span_processor(processor)
    return provider, processor


def _probe_starts_are_noops() -> bool:
    from opentelemetry.sdk.trace import SpanProcessor

    class Starting(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            return None

    class Ending(SpanProcessor):
        def _on_ending(self, span: Any) -> None:
            return None

    provider, processor = _batch_processor_fixture()
    try:
        stock = span_processors(provider)
        return (
            len(stock) == 1
            and starts_are_noops(stock)
            and not starts_are_noops((*stock, Starting()))
            and not starts_are_noops((Ending(),))
        )
    finally:
        processor.shutdown()


def _probe_batch(find: Callable[[Any], list[Any]]) -> bool:
    provider, processor = _batch_processor_fixture()
    try:
        return len(find(provider)) == 1
    finally:
        processor.shutdown()


def _probe_batch_emits() -> bool:
    provider, processor = _batch_processor_fixture()
    try:
        emits = batch_emits(span_processors(provider))
        if emits is None:
            return False
        seen: list[Any] = []
        exporter = batch_exporter(processor)
        exporter.export = seen.extend
        item = object()
        emits[0](item)
        processor.force_flush()
        return seen == [item]
    finally:
        provider.shutdown()


def _probe_batch_exporter() -> bool:
    provider, processor = _batch_processor_fixture()
    try:
        found: list[Any] = []

        def see(exporter: Any) -> Any:
            found.append(exporter)
            return exporter

        wrap_batch_exporters(provider, see)
        return len(found) == 1 and type(found[0]).__name__ == "InMemorySpanExporter"
    finally:
        processor.shutdown()


def _probe_histogram() -> bool:
    from prometheus_client import CollectorRegistry, Histogram

    child = Histogram("probe_seconds", "probe", ["l"], registry=CollectorRegistry()).labels("x")
    return histogram_parts(child) is not None


def _probe_mmap(tmp_dir: str | None = None) -> bool:
    import os
    import tempfile

    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        path = os.path.join(tmp, "counter_1.db")
        write_mmap_values(path, iter([("k", 2.0, 3.0)]))
        return list(read_mmap_values(path)) == [("k", 2.0, 3.0)]


def _probe_multiprocess_collector() -> bool:
    import tempfile

    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    with tempfile.TemporaryDirectory() as tmp:
        collector = MultiProcessCollector(CollectorRegistry(), tmp)  # type: ignore[no-untyped-call]
        return multiprocess_collector_path(collector) == tmp


def _probe_composite() -> bool:
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    inner = TraceContextTextMapPropagator()
    return composite_propagators(CompositePropagator([inner])) == (inner,)


def _probe_flask_contrib() -> bool:
    from flask import Flask
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    app = Flask("probe")
    FlaskInstrumentor().instrument_app(app)  # type: ignore[no-untyped-call]
    try:
        return flask_app_traced_by_contrib(app) and not flask_app_traced_by_contrib(Flask("plain"))
    finally:
        FlaskInstrumentor().uninstrument_app(app)  # type: ignore[no-untyped-call]


def _probe_provider_once() -> bool:
    from opentelemetry import trace as api

    once = getattr(api, "_TRACER_PROVIDER_SET_ONCE", None)
    return (
        callable(getattr(api, "_set_tracer_provider", None))
        and isinstance(getattr(once, "_done", None), bool)
        and hasattr(getattr(once, "_lock", None), "acquire")
        and hasattr(api, "_TRACER_PROVIDER")
    )


def _probe_wrapt() -> bool:
    import wrapt

    class Owner:
        def method(self) -> None: ...

    wrapt.wrap_function_wrapper(Owner, "method", lambda wrapped, instance, args, kwargs: wrapped(*args, **kwargs))
    return is_wrapt_wrapper(Owner.__dict__["method"]) and not is_wrapt_wrapper(lambda: None)


# ---- FastAPI -------------------------------------------------------------------------------


def fastapi_route_template(scope: Any) -> str | None:
    """The matched route's full template when FastAPI routed through an included router (whose
    routes keep the path they had in their own router, without the prefixes): FastAPI keeps it
    in the scope's ``fastapi`` dict. None on a plain Starlette route or an older FastAPI."""
    state = scope.get("fastapi")
    if not isinstance(state, dict):
        return None
    path = getattr(state.get("effective_route_context"), "path_format", None)
    return path if isinstance(path, str) and path else None


def fastapi_telemetry_config(app: Any) -> dict[str, Any] | None:
    """The app's own-telemetry settings, which FastAPI reads on each request (``tracing``,
    ``tracer_provider``, ...). None on a FastAPI without them, or where they moved."""
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict) and "tracing" in config and "tracer_provider" in config:
        return config
    return None


def _probe_fastapi_telemetry_config() -> bool:
    from fastapi import FastAPI

    app = FastAPI()
    config = fastapi_telemetry_config(app)
    native = getattr(app, "_native_telemetry", None)
    return config is not None and getattr(native, "config", None) is config


def _probe_fastapi_route_template() -> bool:
    import asyncio

    from fastapi import APIRouter, FastAPI

    seen: list[str | None] = []
    router = APIRouter(prefix="/items")

    @router.get("/{item_id}")
    def item(item_id: int) -> None: ...

    app = FastAPI()
    app.include_router(router, prefix="/v1")
    scope = {"type": "http", "method": "GET", "path": "/v1/items/1", "headers": [], "query_string": b""}

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            seen.append(fastapi_route_template(scope))

    asyncio.run(app(scope, receive, send))
    return seen == ["/v1/items/{item_id}"]


# ---- Ray Serve -----------------------------------------------------------------------------


def _ray_serve_http_entrypoint() -> tuple[Any, Any, Callable[..., Any], Callable[[Callable[..., Any]], Any]] | None:
    """Where a Ray Serve replica calls the deployment for an HTTP request: the replica's
    ``UserCallableWrapper`` class, its ``_call_http_entrypoint`` attribute, that coroutine
    function as written (it runs on the replica's user-code event loop, with the ASGI scope,
    receive and send), and the ``_run_user_code`` decorator that moves such a coroutine onto
    that loop. None where they moved."""
    from ray.serve._private import replica  # type: ignore[import-not-found]  # not in the main env

    cls = getattr(replica, "UserCallableWrapper", None)
    decorate = vars(cls).get("_run_user_code") if cls is not None else None
    entry = vars(cls).get("_call_http_entrypoint") if cls is not None else None
    inner = getattr(entry, "__wrapped__", None)
    if not callable(decorate) or not inspect.iscoroutinefunction(inner):
        return None
    return cls, entry, inner, decorate


def wrap_ray_serve_http_entrypoint(
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> Callable[[], None] | None:
    """Replace the replica's HTTP entry point with ``wrap(the coroutine function)``, run on the
    user-code loop as the original is. Returns what undoes it; None where the internals moved."""
    found = _ray_serve_http_entrypoint()
    if found is None:
        return None
    cls, entry, inner, decorate = found
    cls._call_http_entrypoint = decorate(wrap(inner))

    def undo() -> None:
        cls._call_http_entrypoint = entry

    return undo


def ray_serve_replica_config() -> Any:
    """The class whose ``create(deployment_def, ...)`` serializes a deployment's class or
    function for its replicas, when ``@serve.deployment`` (or ``.options``) runs. Ray ships that
    class by value, so the module it was written in is not imported in a replica; what the
    class refers to is. None where it moved."""
    from ray.serve._private.config import ReplicaConfig  # type: ignore[import-not-found]

    create = vars(ReplicaConfig).get("create")
    if not isinstance(create, classmethod):
        return None
    params = list(inspect.signature(create.__func__).parameters)
    return ReplicaConfig if params[:2] == ["cls", "deployment_def"] else None


def _probe_ray_serve_replica_config() -> bool:
    """The deployment's class is pickled by value, with what its ``__dict__`` refers to: a
    module there is imported when a replica loads the class."""
    import pickle
    import types

    found = ray_serve_replica_config()
    if found is None:
        return False
    cls = types.new_class("Probe", (), {})  # like a decorated class: not importable by name
    cls.__module__ = "no_such_module_of_infersight"
    cls.__infersight_auto__ = __import__("json")  # type: ignore[attr-defined]
    config = found.create(cls)
    loaded = pickle.loads(config.serialized_deployment_def)
    return getattr(loaded, "__infersight_auto__", None) is sys.modules["json"]


def _probe_ray_serve_http_entrypoint() -> bool:
    found = _ray_serve_http_entrypoint()
    if found is None:
        return False
    params = list(inspect.signature(found[2]).parameters)
    return params == ["self", "user_method_info", "scope", "receive", "send"]


# ---- LitServe --------------------------------------------------------------------------------
# Its API server puts ``(response_queue_id, uid, time.monotonic(), payload)`` on a multiprocessing
# queue (``LitServer._get_request_queue``) that its spawned inference workers read; its loops call
# each LitAPI hook as ``_inject_context(context, hook, *args)``, ``context`` being one dict per
# request (a list of them for a batch), the same object from decode_request to encode_response.

LITSERVE_QUEUE_GETTER = ("litserve.server", "LitServer._get_request_queue")
LITSERVE_HOOK_CALLERS = (
    ("litserve.loops.simple_loops", "_inject_context"),
    ("litserve.loops.simple_loops", "_async_inject_context"),
)
LITSERVE_ITEM_LEN = 4  # the queue item's length, as LitServe reads it


def _probe_litserve() -> bool:
    import inspect

    import litserve.loops.simple_loops as loops
    import litserve.server as server

    submit = inspect.getsource(server.BaseRequestHandler._submit_request)  # the item's shape
    batched = inspect.getsource(loops.BatchedLoop.run_batched_loop)  # the hooks' context
    return (
        callable(getattr(server.LitServer, "_get_request_queue", None))
        and all(callable(getattr(loops, name, None)) for _, name in LITSERVE_HOOK_CALLERS)
        and "request_queue.put((response_queue_id, uid, time.monotonic(), payload))" in submit
        and "_inject_context(contexts, lit_api.predict, x)" in batched
        and "_inject_context(context, lit_api.encode_response, y)" in batched
    )


# ---- BentoML ---------------------------------------------------------------------------------
# A service's HTTP endpoint parses the request with its input model's ``from_http_request``, calls
# the API function through ``APIMethod._local_call(instance)`` (whose ``func`` is the user's
# function, ``batchable`` its adaptive batching) and answers with ``to_http_response``.

BENTOML_IO = ("_bentoml_sdk.io_models", "IOMixin")
BENTOML_LOCAL_CALL = ("_bentoml_sdk.method", "APIMethod._local_call")


def _probe_bentoml() -> bool:
    import inspect

    from _bentoml_impl.server.app import ServiceAppFactory
    from _bentoml_sdk.io_models import IOMixin
    from _bentoml_sdk.method import APIMethod

    endpoint = inspect.getsource(ServiceAppFactory.api_endpoint)
    return (
        callable(getattr(APIMethod, "_local_call", None))
        and inspect.iscoroutinefunction(IOMixin.from_http_request)
        and inspect.iscoroutinefunction(IOMixin.to_http_response)
        and "method.input_spec.from_http_request(request, serde)" in endpoint
        and "method.output_spec.to_http_response(output, serde)" in endpoint
        and "getattr(self._service_instance, name).local" in endpoint
    )


# ---- tritonclient -------------------------------------------------------------------------

# tritonclient.http sends every request through these two methods of its client (it has no
# hook that sees the response): ``_post(request_uri, request_body, headers, query_params)`` and
# ``_get(request_uri, headers, query_params)``, ``headers`` a dict or None.
TRITONCLIENT_HTTP_MODULE = "tritonclient.http._client"
TRITONCLIENT_HTTP_SENDS = {"InferenceServerClient._post": 2, "InferenceServerClient._get": 1}  # -> headers' index


def tritonclient_http_target(client: Any) -> str | None:
    """``host:port`` a tritonclient.http client talks to (its parsed URL), None where it moved."""
    url = getattr(client, "_parsed_url", None)
    host, port = getattr(url, "host", None), getattr(url, "port", None)
    return f"{host}:{port}" if host and port else None


def _probe_tritonclient_http() -> bool:
    import importlib
    import inspect

    module = importlib.import_module(TRITONCLIENT_HTTP_MODULE)
    client = module.InferenceServerClient("127.0.0.1:8000")
    try:
        for path, index in TRITONCLIENT_HTTP_SENDS.items():
            params = list(inspect.signature(getattr(module.InferenceServerClient, path.split(".")[1])).parameters)
            if params[0] != "self" or params[1] != "request_uri" or params[index + 1] != "headers":
                return False
        return tritonclient_http_target(client) == "127.0.0.1:8000"
    finally:
        client.close()


# tritonclient.http.aio (aiohttp) has the same two methods, coroutines, with the same
# parameters; they return aiohttp's response. Its client keeps its base URL as ``_url``.
TRITONCLIENT_HTTP_AIO_MODULE = "tritonclient.http.aio"


def tritonclient_http_aio_target(client: Any) -> str | None:
    """``host:port`` a tritonclient.http.aio client talks to, None where its URL moved."""
    url = getattr(client, "_url", None)
    if not isinstance(url, str) or "://" not in url:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    return f"{parts.hostname}:{port}" if parts.hostname and port else None


def _probe_tritonclient_http_aio() -> bool:
    import asyncio
    import importlib
    import inspect

    module = importlib.import_module(TRITONCLIENT_HTTP_AIO_MODULE)
    for path, index in TRITONCLIENT_HTTP_SENDS.items():
        method = getattr(module.InferenceServerClient, path.split(".")[1])
        params = list(inspect.signature(method).parameters)
        if not inspect.iscoroutinefunction(method) or params[1] != "request_uri" or params[index + 1] != "headers":
            return False

    async def target() -> str | None:  # aiohttp's session wants a running loop
        client = module.InferenceServerClient("127.0.0.1:8000")
        try:
            return tritonclient_http_aio_target(client)
        finally:
            await client.close()

    return asyncio.run(target()) == "127.0.0.1:8000"


# Name -> a check that the internal is where this module looks for it, on the installed versions.
# ``multiprocess_values_lock`` is probed in a process started in multiprocess mode (the mode is
# chosen when prometheus_client is imported): see tests/test_compat.py.
PROBES: dict[str, Callable[[], bool]] = {
    "otel.span_processor": _probe_span_processor,
    "otel.span_goes_nowhere": _probe_span_goes_nowhere,
    "otel.starts_are_noops": _probe_starts_are_noops,
    "otel.tracer_apart": _probe_tracer_apart,
    "otel.batch_queues": lambda: _probe_batch(batch_queues),
    "otel.batch_export_locks": lambda: _probe_batch(batch_export_locks),
    "otel.batch_emits": lambda: _probe_batch_emits(),
    "otel.batch_exporter": lambda: _probe_batch_exporter(),
    "otel.batch_exporter_read": lambda: _probe_batch(
        lambda provider: [e for e in map(batch_exporter, span_processors(provider)) if hasattr(e, "export")]
    ),
    "otel.context_var": lambda: otel_context_var() is not None,
    "otel.exporter_hooks": _exporter_hooks_present,
    "otel.composite_propagators": lambda: _probe_composite(),
    "wrapt.wrapper": lambda: _probe_wrapt(),
    "wrapt.call_innermost": _probe_call_innermost,
    "wrapt.replace_wrapped": _probe_replace_wrapped,
    "otel.tracer_provider_once": lambda: _probe_provider_once(),  # let_app_replace_/unset_tracer_provider
    "otel_contrib.flask_app_marker": lambda: _probe_flask_contrib(),
    "prometheus.histogram_parts": _probe_histogram,
    "prometheus.mmap_dict": _probe_mmap,
    "prometheus.multiprocess_collector_path": _probe_multiprocess_collector,
    "fastapi.route_template": _probe_fastapi_route_template,
    "fastapi.telemetry_config": _probe_fastapi_telemetry_config,
    "ray_serve.http_entrypoint": _probe_ray_serve_http_entrypoint,
    "ray_serve.replica_config": _probe_ray_serve_replica_config,
    "litserve.queue_and_hooks": _probe_litserve,
    "bentoml.endpoint_steps": _probe_bentoml,
    "tritonclient.http_sends": _probe_tritonclient_http,
    "tritonclient.http_aio_sends": _probe_tritonclient_http_aio,
}
