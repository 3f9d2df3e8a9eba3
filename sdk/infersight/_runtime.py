"""The process-wide runtime: config, metrics, tracer provider, worker, hooks; and the request-path
primitives every instrumentation uses (``start_request``/``finish_request``/``start_stage``/
``end_stage``). Everything on the request path is cheap and guarded: it never raises."""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import threading
import time
from collections.abc import Callable
from random import getrandbits
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from prometheus_client import REGISTRY, CollectorRegistry

from . import _coldstart, _compat, _errors, _signals
from ._excluded_urls import ExcludedUrls
from ._gil import GilProbe
from ._keep import TailKeep
from ._overhead import OverheadMeter
from ._pipeline import Worker
from ._records import (
    RequestRecord,
    StageRecord,
    current_request,
    current_stage,
    new_trace_id,
    now_ns,
)
from ._spans import SpanEmitter
from ._tracing import CountingExporter, make_resource, sends_through_our_encoder, setup_tracer_provider
from .config import Config
from .conventions import ATTR, OUTCOME_ERROR, OUTCOME_SUCCESS, MetricSpec
from .exposition import Exposition, MetricsServer
from .hooks import StageHook, call_hooks
from .metrics import InferenceMetrics, Ledger

if TYPE_CHECKING:  # the parts' modules import the runtime's users, not the runtime
    from ._metric_export import MetricPusher
    from .drift.monitor import DriftMonitor
    from .gpu.sampler import Sampler

__all__ = ["Runtime", "get_runtime", "init", "shutdown"]

logger = logging.getLogger("infersight")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_CLIENT = SpanKind.CLIENT.value
_SERVER, _INTERNAL = SpanKind.SERVER, SpanKind.INTERNAL
_SERVER_VALUE, _INTERNAL_VALUE = _SERVER.value, _INTERNAL.value
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_get_ident = threading.get_ident


_OTEL_VAR = _compat.otel_context_var()
_SPAN_KEY = _compat.SPAN_KEY


class _LiveSpan(NonRecordingSpan):
    """The OTel span current while infersight serves a request. Its context is read when asked:
    the innermost stage of this request that is current, else the request itself. Stages then
    set one ContextVar of ours, not OTel's context (a dict copy, a Context, a SpanContext and a
    NonRecordingSpan each), and other instrumentations still parent to the right stage."""

    _last: tuple[Any, SpanContext | None] = (None, None)  # (owner, its SpanContext), made when asked

    def __init__(self, rec: RequestRecord, flags: TraceFlags) -> None:  # no SpanContext up front
        self._rec = rec
        self._flags = flags

    def get_span_context(self) -> SpanContext:
        rec = self._rec
        stage = current_stage.get()
        owner = stage if stage is not None and stage.request is rec else rec
        last_owner, ctx = self._last
        if last_owner is owner and ctx is not None:
            return ctx
        ctx = SpanContext(rec.trace_id, owner.span_id, False, self._flags, rec.trace_state)
        self._last = (owner, ctx)
        return ctx

    def __repr__(self) -> str:
        return f"_LiveSpan({self.get_span_context()!r})"


def _attach(span: Any) -> Any:
    """``context.attach(trace.set_span_in_context(span))`` in one dict copy and one ContextVar
    set, instead of five calls through the API."""
    var = _OTEL_VAR
    if var is None:
        return otel_context.attach(trace.set_span_in_context(span))
    return var.set(Context({**var.get(), _SPAN_KEY: span}))


def _attach_span(span_ctx: SpanContext) -> Any:
    return _attach(NonRecordingSpan(span_ctx))


def _current_span() -> Any:
    """The active OTel span, or None when there is none (the common case, read in one lookup)."""
    var = _OTEL_VAR
    if var is None:
        span = trace.get_current_span()
        return span if span is not trace.INVALID_SPAN else None
    return var.get().get(_SPAN_KEY)


def _is_current_span(span_id: int) -> bool:
    span = _current_span()
    return span is not None and bool(span.get_span_context().span_id == span_id)


class Runtime:
    """infersight in one process: its config and the parts it started, each typed and owned here.

    The request path reads the running runtime through ``get_runtime()``; the optional parts
    (GPU sampler, drift monitor, metrics server) are None until started, and ``close`` stops
    whatever was started. Everything this runtime put in the registry is in ``ledger``.
    """

    def __init__(
        self, config: Config, registry: CollectorRegistry | None, tracer_provider: TracerProvider | None
    ) -> None:
        self.config = config
        self.registry = registry
        self.ledger = Ledger(registry)
        self.errors = _errors.ERRORS
        self.metrics: InferenceMetrics | None = InferenceMetrics(config, self.ledger) if config.metrics else None
        self.hooks: list[StageHook] = []
        self.owns_provider = False
        self._replaced_providers: list[TracerProvider] = []
        self.provider: TracerProvider | None = None
        # infersight's own CPU share (worker and export threads), and its budget.
        self.overhead = OverheadMeter(config.overhead_budget, self.metrics.overhead if self.metrics else None, None)
        emitter = None
        self._always_on = False  # the provider's sampler samples every root (set with the provider)
        if config.spans_on:
            if tracer_provider is None:
                tracer_provider, self.owns_provider = setup_tracer_provider(config, self._on_export, self.overhead.add)
            self.provider = tracer_provider
            emitter = self._emitter_for(tracer_provider)
        budgeted = config.overhead_budget > 0
        keep = TailKeep(config) if emitter is not None and (config.traces_keep_ratio < 1 or budgeted) else None
        if keep is not None and budgeted:
            self.overhead.set_scale = keep.set_scale
        by_endpoint = config.model_for_endpoint if any(m.endpoints for m in config.models.values()) else None
        self.worker = Worker(
            self.metrics, emitter, self.hooks, config.queue_size, config.flush_interval_s, keep, by_endpoint
        )
        self.worker.overhead = self.overhead
        self.exposition = Exposition(registry, drain=self.worker.drain)
        # Read by start_stage/end_stage: None turns the CPU-time reads off.
        self.thread_time: Callable[[], int] | None = time.thread_time_ns if config.stage_cpu_time else None
        self.gil_probe: GilProbe | None = None
        if config.gil_probe and self.metrics is not None:
            self.gil_probe = GilProbe(self.metrics.gil_wait)
        self.excluded_urls = ExcludedUrls()
        self.gpu: Sampler | None = None
        self.drift: DriftMonitor | None = None
        self.metrics_server: MetricsServer | None = None
        self.metric_pusher: MetricPusher | None = None
        if config.pushes_metrics and self.metrics is not None:
            self.metric_pusher = self._new_pusher()
        self.closed = False

    def _new_pusher(self) -> MetricPusher:
        from ._metric_export import MetricPusher, make_exporter  # the OTel metrics SDK: only when pushing

        cfg = self.config
        # The same bounded deadline as the span exporter's: shutdown must not wait out retries.
        timeout = float(
            os.environ.get("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") or 5
        )
        registry = self.registry if self.registry is not None else REGISTRY
        return MetricPusher(
            registry.collect,
            lambda: make_exporter(cfg.otlp_metrics_protocol, timeout),
            self._metric_resource(),
            cfg.metrics_export_interval_s,
            drain=self.worker.drain,
        )

    def _metric_resource(self) -> Any:
        """The spans' resource when there are spans (the same ``service.instance.id``)."""
        resource = getattr(self, "resource", None)
        return resource if resource is not None else make_resource(self.config)

    def _emitter_for(self, provider: TracerProvider) -> SpanEmitter:
        if not self.owns_provider:  # count what the app's batch processors export, as for ours
            _compat.wrap_batch_exporters(provider, self._counting)
        self.resource = make_resource(self.config, provider.resource)
        self._always_on = provider.sampler.get_description().startswith("ParentBased{root:AlwaysOnSampler")
        # The app's processors get on_start too; infersight's own batch processor needs only on_end.
        return SpanEmitter(
            provider,
            self.resource,
            self._on_export_queue_full,
            with_on_start=not self.owns_provider,
            encodes=sends_through_our_encoder if self.owns_provider else None,
        )

    def adopt_provider(self, provider: Any) -> None:
        """The app set its own TracerProvider after infersight had set one: infersight's spans
        go to the app's from now on, and infersight's provider exports what it holds and stops."""
        if not isinstance(provider, TracerProvider) or self.provider is None:
            return
        replaced, self.provider, self.owns_provider = self.provider, provider, False
        self.worker.emitter = self._emitter_for(provider)
        self._replaced_providers.append(replaced)
        threading.Thread(target=replaced.force_flush, name="infersight-flush", daemon=True).start()
        logger.info("infersight: the app set its own TracerProvider; infersight's spans now go to it.")

    def make_metric(self, spec: MetricSpec, **kwargs: Any) -> Any:
        """A metric in this runtime's registry, unregistered again on re-init/shutdown."""
        return self.ledger.metric(spec, **kwargs)

    def register(self, collector: Any) -> None:
        """Register a custom collector (``collect() -> Iterable[Metric]``) owned by this runtime."""
        self.ledger.register(collector)

    def start_metrics_server(self, port: int | None = None, addr: str | None = None) -> MetricsServer:
        """Serve this runtime's metrics on their own port (once; later calls return that server)."""
        if self.metrics_server is None:
            cfg = self.config
            self.metrics_server = MetricsServer(
                self.exposition, addr or cfg.metrics_addr, cfg.metrics_port if port is None else port, cfg.metrics_path
            )
        return self.metrics_server

    def _counting(self, exporter: Any) -> Any:
        if isinstance(exporter, CountingExporter):
            return exporter
        return CountingExporter(exporter, self._on_export, self.overhead.add)

    def _on_export(self, count: int, ok: bool) -> None:
        if self.metrics is None:
            return
        if ok:
            self.metrics.spans_exported.inc(count)
        else:
            self.metrics.spans_dropped.labels("export_failed").inc(count)

    def _on_export_queue_full(self, count: int) -> None:
        if self.metrics is not None:
            self.metrics.spans_dropped.labels("export_queue_full").inc(count)

    def add_hook(self, hook: StageHook) -> None:
        self.hooks.append(hook)

    def sample(self, parent: SpanContext | None, trace_id: int, name: str, kind: SpanKind) -> bool:
        if self.provider is None:
            return False
        if self._always_on:
            return parent is None or parent.trace_flags.sampled
        parent_ctx = trace.set_span_in_context(NonRecordingSpan(parent)) if parent else None
        result = self.provider.sampler.should_sample(parent_ctx, trace_id, name, kind)
        return bool(result.decision.is_sampled())  # type: ignore[no-untyped-call]

    def after_fork_in_child(self) -> None:
        if self.provider is not None:
            self.resource = make_resource(self.config, self.provider.resource)
            if self.worker.emitter is not None:
                self.worker.emitter.resource = self.resource
        self.worker.after_fork_in_child()
        if self.metric_pusher is not None:
            if self.provider is None:
                self.resource = make_resource(self.config)
            self.metric_pusher.after_fork_in_child(self.resource)
        for part in (self.gpu, self.drift, self.gil_probe):
            if part is not None:
                part.after_fork_in_child()

    def close(self, timeout_s: float | None = None) -> None:
        if self.closed:
            return
        self.closed = True
        timeout = self.config.shutdown_timeout_s if timeout_s is None else timeout_s
        # One deadline for the whole close: a signal handler waits for no longer than this.
        deadline = time.monotonic() + timeout
        for part in (self.gpu, self.drift, self.metrics_server, self.gil_probe):
            if part is None:
                continue
            try:
                part.stop()
            except Exception as exc:
                _errors.report("shutdown", exc)
        self.worker.stop(max(0.0, deadline - time.monotonic()))
        if self.metric_pusher is not None:  # after the worker: its last records are in the push
            try:
                self.metric_pusher.stop(max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                _errors.report("shutdown", exc)
        for replaced in self._replaced_providers:
            _bounded(replaced.shutdown, max(0.0, deadline - time.monotonic()))
        if self.provider is not None:
            left = max(0.0, deadline - time.monotonic())
            try:
                if self.owns_provider:
                    # Not left as the global one once shut down: see _compat.unset_tracer_provider.
                    _compat.unset_tracer_provider(self.provider)
                    # Bounded: the exporter's own deadline would otherwise hold SIGTERM for ~30 s.
                    _bounded(lambda: self.provider.shutdown(), left)  # type: ignore[union-attr]
                else:
                    self.provider.force_flush(int(left * 1000))
            except Exception as exc:
                _errors.report("shutdown", exc)
        if self.metrics is not None and self.errors.counting_into(self.metrics.sdk_errors):
            self.errors.count_into(None)


def _bounded(fn: Any, timeout_s: float) -> None:
    thread = threading.Thread(target=fn, name="infersight-shutdown", daemon=True)
    thread.start()
    thread.join(timeout_s)


_runtime: Runtime | None = None
_init_lock = threading.Lock()


def get_runtime() -> Runtime | None:
    return _runtime


def init(
    config: Config | None = None,
    *,
    registry: CollectorRegistry | None = REGISTRY,
    tracer_provider: TracerProvider | None = None,
    start_parts: Callable[[Runtime], Any] | None = None,
    **overrides: Any,
) -> Runtime:
    """Start infersight (idempotent per config). See ``infersight.init`` for the public docs.
    ``start_parts`` starts the optional parts (``_startup``: GPU, drift) before the worker."""
    global _runtime
    cfg = (config.with_overrides(**overrides) if overrides else config) if config else Config.from_env(**overrides)
    with _init_lock:
        if _runtime is not None:
            if _runtime.config == cfg and tracer_provider in (None, _runtime.provider):
                return _runtime
            _runtime.close()
            _runtime.ledger.unregister_all()
        rt = Runtime(cfg, registry, tracer_provider)
        _coldstart.tracker.restart()
        if rt.metrics is not None:
            rt.errors.count_into(rt.metrics.sdk_errors)
        if rt.owns_provider:
            _compat.let_app_replace_tracer_provider(_is_running_provider, _adopt_provider)
        if start_parts is not None:
            start_parts(rt)
        rt.worker.start()
        if rt.metric_pusher is not None:
            rt.metric_pusher.start()
        if rt.gil_probe is not None:
            rt.gil_probe.start()
        _runtime = rt
    _signals.install(_flush_on_signal, cfg.shutdown_timeout_s)
    return rt


def _is_running_provider(provider: Any) -> bool:
    rt = _runtime
    return rt is not None and rt.owns_provider and provider is rt.provider


def _adopt_provider(provider: Any) -> None:
    rt = _runtime
    if rt is not None:
        try:
            rt.adopt_provider(provider)
        except Exception as exc:
            _errors.report("provider", exc)


def _flush_on_signal(timeout_s: float) -> None:
    shutdown(timeout_s)


def shutdown(timeout_s: float | None = None) -> None:
    """Flush and stop: the worker, the GPU sampler, the drift monitor and (if ours) the exporter."""
    global _runtime
    with _init_lock:
        rt, _runtime = _runtime, None
    _signals.uninstall()
    if rt is not None:
        rt.close(timeout_s)
        rt.ledger.unregister_all()


def _after_fork_in_child() -> None:
    rt = _runtime
    if rt is not None and not rt.closed:
        try:
            rt.after_fork_in_child()
        except Exception as exc:
            _errors.report("fork", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(lambda: shutdown())


# ---- Request path -------------------------------------------------------------------------

Tokens = tuple[Any, Any]


def start_request(
    name: str,
    kind: SpanKind = SpanKind.SERVER,
    endpoint: str = "",
    parent: SpanContext | None = None,
    defer_span: bool = False,
) -> tuple[RequestRecord | None, Tokens]:
    """Open a request record. ``parent`` is a remote span context extracted from headers.

    ``defer_span``: another instrumentation will start this request's server span later (e.g.
    opentelemetry-instrumentation-flask, in ``before_request``). Then nothing is made current
    now, so that its span is the SERVER span; ``adopt_server_span`` makes it the request's."""
    rt = _runtime
    if rt is None:
        return None, (None, None)
    try:
        emit_span = True
        var = _OTEL_VAR
        active: Any = var.get().get(_SPAN_KEY) if var is not None else _current_span()
        if parent is not None and active is not None:
            # A remote parent, and a span current: another instrumentation's server span, if it
            # continues that same trace (it read the same traceparent first); else not ours to use.
            ctx = active.get_span_context()
            if not (active.is_recording() and ctx.trace_id == parent.trace_id and ctx.span_id != parent.span_id):
                active = None
            else:
                parent = None
        if active is not None:
            if active.is_recording():
                # Another instrumentation (e.g. opentelemetry-instrumentation-flask) owns the
                # server span; our stages become its children.
                parent, emit_span = active.get_span_context(), False
            elif active.get_span_context().is_valid:
                parent = active.get_span_context()
        if parent is not None:
            trace_id = parent.trace_id
            sampled = parent.trace_flags.sampled if not emit_span else rt.sample(parent, trace_id, name, kind)
        else:
            trace_id = getrandbits(128) or 1
            # rt.sample's answer without its call when every root is sampled (the default).
            sampled = (rt.provider is not None and rt._always_on) or rt.sample(None, trace_id, name, kind)
        # The common kinds' values without the enum's descriptor (a Python call on every request).
        value = _SERVER_VALUE if kind is _SERVER else _INTERNAL_VALUE if kind is _INTERNAL else kind.value
        rec = RequestRecord(name, value, endpoint, trace_id, parent.span_id if parent is not None else 0, sampled)
        if parent is not None:
            rec.parent_remote = parent.is_remote
            rec.trace_state = parent.trace_state
            if not emit_span:
                rec.span_id = parent.span_id
                rec.parent_span_id = 0
                rec.emit_span = False
        req_token = current_request.set(rec)
        otel_token = None
        if emit_span and defer_span:
            rec.deferred = True
        elif emit_span and rt.provider is not None:
            rec.live_span = _LiveSpan(rec, _SAMPLED if sampled else _UNSAMPLED)
            otel_token = _attach(rec.live_span)
        if rt.metrics is not None:
            rt.metrics.request_started(rec)
        return rec, (req_token, otel_token)
    except Exception as exc:
        _errors.report("request", exc)
        return None, (None, None)


def adopt_server_span(rec: RequestRecord) -> None:
    """For a request started with ``defer_span``, once the other instrumentation had its chance:
    its recording span, if current, becomes the request's (one SERVER span, infersight's stages
    its children). If none came (it excluded the request), infersight emits its own."""
    if not rec.deferred:
        return
    rec.deferred = False
    try:
        active = _current_span()
        if active is not None and active.is_recording():
            ctx = active.get_span_context()
            rec.trace_id, rec.span_id, rec.sampled = ctx.trace_id, ctx.span_id, bool(ctx.trace_flags.sampled)
            rec.parent_span_id = 0
            rec.emit_span = False
    except Exception as exc:
        _errors.report("request", exc)


def finish_request(
    rec: RequestRecord | None,
    tokens: Tokens,
    error: BaseException | None = None,
    outcome: str | None = None,
    end_ns: int = 0,
) -> None:
    """``end_ns`` (``now_ns()`` clock): when the request ended, if before this call (a streamed
    response's last byte, before background tasks ran)."""
    if rec is None:
        return
    rt = _runtime
    try:
        rec.end_ns = end_ns or now_ns()
        rec.error = error
        if outcome is not None:
            rec.outcome = outcome
        elif rec.outcome is None:
            rec.outcome = OUTCOME_ERROR if error is not None else OUTCOME_SUCCESS
        rec.live_span = None  # it refers to the record: no cycle left for the GC
        req_token, otel_token = tokens  # suspend_request, inlined
        if otel_token is not None:
            _reset(otel_token)
        if req_token is not None:
            current_request.reset(req_token)
    except Exception as exc:
        _errors.report("request", exc)
    if rt is not None:
        try:
            if rt.metrics is not None:
                rt.metrics.request_finished(rec)
            rt.worker.submit(rec)
        except Exception as exc:
            _errors.report("request", exc)


def suspend_request(tokens: Tokens) -> None:
    """Leave the request's context without ending it: a WSGI response streamed after the app
    returned goes on in the server's loop, where the request must not stay current."""
    req_token, otel_token = tokens
    if otel_token is not None:
        _reset(otel_token)
    if req_token is not None:
        current_request.reset(req_token)


def resume_request(rec: RequestRecord) -> Tokens:
    """Make a suspended request current again, while the server pulls its next streamed chunk
    (stages in the response's generator nest under it)."""
    try:
        otel_token = _attach(rec.live_span) if rec.live_span is not None else None
        return current_request.set(rec), otel_token
    except Exception as exc:
        _errors.report("request", exc)
        return None, None


def start_client(name: str, target: str, endpoint: str) -> RequestRecord | None:
    """Open the record of an outgoing call (kind CLIENT). Nothing is made current: the call's
    own span is its leaf, and a client instrumentation of OpenTelemetry's running around this
    call keeps its span current; then that span is the call's (``emit_span`` False)."""
    rt = _runtime
    if rt is None:
        return None
    try:
        active = _current_span()
        parent = None
        if active is not None:
            ctx = active.get_span_context()
            if active.is_recording() and getattr(active, "kind", None) is SpanKind.CLIENT:
                rec = RequestRecord(name, _CLIENT, endpoint, ctx.trace_id, 0, bool(ctx.trace_flags.sampled))
                rec.span_id, rec.emit_span, rec.target = ctx.span_id, False, target
                return rec
            if ctx.is_valid:
                parent = ctx
        if parent is not None:
            trace_id = parent.trace_id
            sampled = rt.sample(parent, trace_id, name, SpanKind.CLIENT)
        else:
            trace_id = new_trace_id()
            sampled = rt.sample(None, trace_id, name, SpanKind.CLIENT)
        rec = RequestRecord(name, _CLIENT, endpoint, trace_id, parent.span_id if parent else 0, sampled)
        if parent is not None:
            rec.parent_remote = parent.is_remote
            rec.trace_state = parent.trace_state
        rec.target = target
        rec.emit_span = rt.provider is not None
        return rec
    except Exception as exc:
        _errors.report("client", exc)
        return None


def finish_client(rec: RequestRecord | None, status_code: int | None, failed: bool, server_s: float | None) -> None:
    """Close an outgoing call's record: ``server_s`` is the server's total from its Server-Timing."""
    if rec is None:
        return
    rt = _runtime
    try:
        rec.end_ns = now_ns()
        rec.status_code = status_code
        rec.outcome = OUTCOME_ERROR if failed else OUTCOME_SUCCESS
        if server_s is not None:
            rec.server_s = server_s
        if rt is not None:
            rt.worker.submit(rec)
    except Exception as exc:
        _errors.report("client", exc)


# A stage that starts within this long of its request's previous stage's end, on the same thread,
# takes that stage's thread-CPU read as its own start. Each read is a syscall (0.6 µs on a 2-core
# VM, and TLB refills after it): 4 reads instead of 6 for three stages one after another.
_SHARED_READ_NS = 20_000


def start_stage(name: str, model: str | None = None) -> tuple[StageRecord | None, Tokens]:
    """Open a stage's record, for code that holds it between two calls (``Stage`` opens itself)."""
    st = StageRecord.__new__(StageRecord)
    st.name, st.model, st.batch_size, st.start_ns, st.origin, st.stage_token = name, model, 0, 0, None, None
    enter_stage(st)
    if not st.start_ns:
        return None, (None, None)
    return st, (st.stage_token, st.otel_token)


_S = TypeVar("_S", bound=StageRecord)


def enter_stage(stage: _S) -> _S:
    """Make ``stage`` the current stage, as ``with`` does (this is ``Stage.__enter__``). Its record
    is itself, or, when it is already in use (entered again, nested, or by another thread at the
    same time), a new record made for this entry. ``exit_stage`` finds that record as the
    context's current stage. The record stays unopened (no ``stage_token``, and ``exit_stage``
    passes it by) when infersight isn't running or fails."""
    st: StageRecord = stage
    if stage.start_ns:
        st = StageRecord.__new__(StageRecord)
        st.name, st.model, st.batch_size, st.origin = stage.name, stage.model, stage.batch_size, stage
        st.stage_token = None
    else:
        # Taken at once, before any call: a thread that enters it next makes its own record.
        stage.start_ns = 1
    rt = _runtime
    if rt is None:
        st.start_ns = 0
        return stage
    try:
        rec = current_request.get()
        outer = current_stage.get()
        if outer is not None and outer.end_ns:
            outer = None
        if rec is not None:
            st.request = rec
            st.parent_span_id = outer.span_id if outer is not None and outer.request is rec else rec.span_id
            st.trace_id = rec.trace_id
            st.sampled = rec.sampled
            if st.model and rec.model is None:  # the first model named labels the request (set_model)
                rec.model = st.model
        else:
            st.request = None
            if outer is not None:
                st.parent_span_id, st.trace_id, st.sampled = outer.span_id, outer.trace_id, outer.sampled
                if not st.model:
                    st.model = outer.model
            else:
                active = trace.get_current_span().get_span_context()
                if active.is_valid:
                    st.parent_span_id, st.trace_id = active.span_id, active.trace_id
                    st.sampled = active.trace_flags.sampled
                else:
                    st.parent_span_id = 0
                    st.trace_id = trace_id = new_trace_id()
                    st.sampled = rt.sample(None, trace_id, st.name, SpanKind.INTERNAL)
        # The rest of the record, set here rather than in a constructor: one call less a stage.
        st.span_id = getrandbits(64) or 1
        st.end_ns = 0
        st.error = None
        st.attrs = None
        st.base_attrs = None
        st.extras = None
        st.queue_wait_s = -1.0
        st.cpu_start_ns = -1
        st.cpu_end_ns = -1
        st.cpu_thread = 0
        st.otel_token = None
        st.stage_token = current_stage.set(st)
        # Inside a request whose live span is current, that span already answers for the stage.
        live = rec.live_span if rec is not None else None
        var = _OTEL_VAR
        if rt.provider is not None and (
            live is None or (var.get().get(_SPAN_KEY) if var is not None else _current_span()) is not live
        ):
            span_ctx = SpanContext(st.trace_id, st.span_id, False, _SAMPLED if st.sampled else _UNSAMPLED)
            st.otel_token = _attach_span(span_ctx)
        if rt.hooks:
            call_hooks(rt.hooks, "on_stage_start", st)
        thread_time = rt.thread_time
        if thread_time is None:
            st.start_ns = now_ns()  # after the hooks, so a GPM snapshot isn't billed to the stage
            return stage
        st.cpu_thread = ident = _get_ident()
        now = now_ns()
        last = rec.stages[-1] if rec is not None and rec.stages else None
        if (
            last is not None
            and now - last.end_ns < _SHARED_READ_NS
            and last.cpu_thread == ident
            and last.cpu_end_ns >= 0
        ):
            # The request's previous stage ended on this thread just now: its clock read is this
            # one's start (a syscall less; the few µs between are billed to this stage).
            st.cpu_start_ns = last.cpu_end_ns
        else:
            st.cpu_start_ns = thread_time()
            now = now_ns()
        st.start_ns = now
    except Exception as exc:
        _errors.report("stage", exc)
        _unopen(st)
    return stage


_ENDED = True  # an ended stage's ``stage_token``: not None (it was opened), not a token


def _unopen(st: StageRecord) -> None:
    """Leave ``st`` as if never entered: not current, and free to be entered again."""
    token, st.stage_token = st.stage_token, None
    if token is not None and current_stage.get() is st:
        current_stage.reset(token)
    st.start_ns = 0


def _reset(token: Any) -> None:
    """``ContextVar.reset`` without OTel's ``detach``, which logs an ERROR when a generator is
    finalised in another context (another thread, or asyncio's finaliser task)."""
    if not isinstance(token, contextvars.Token):
        otel_context.detach(token)  # a non-contextvars OTel runtime context
        return
    try:
        token.var.reset(token)
    except (ValueError, RuntimeError):
        pass  # made in another context: nothing of ours to undo in this one


def exit_stage(stage: StageRecord, et: Any = None, error: BaseException | None = None, tb: Any = None) -> None:
    """End the entry ``enter_stage`` opened, as ``with`` does (this is ``Stage.__exit__``). An
    abandoned generator's stage (``GeneratorExit``) ended; it did not fail."""
    current = current_stage.get()
    st = current if current is not None and current.origin is stage else stage
    if st.stage_token is None or st.end_ns:
        return  # never opened, or already ended
    rt = _runtime
    try:
        st.end_ns = now_ns()
        # Only on the thread it started on: a generator stage that Starlette's thread pool resumes
        # on another thread would subtract two threads' clocks.
        if rt is not None and rt.thread_time is not None and st.cpu_thread == _get_ident():
            st.cpu_end_ns = rt.thread_time()
        if error is not None:
            if isinstance(error, GeneratorExit):
                st.set_attr(ATTR.GENERATOR_ABANDONED, True)
            else:
                st.error = error
        if rt is not None and rt.hooks:
            call_hooks(rt.hooks, "on_stage_end", st)
        # Undo only what is still ours on top. A generator closed after its request ended would
        # otherwise restore that request's context, and later requests would join its trace.
        otel_token = st.otel_token
        if otel_token is not None:
            st.otel_token = None
            if _is_current_span(st.span_id):
                _reset(otel_token)
        if current is st:
            try:  # _reset, inlined: the token is always a ContextVar's
                current_stage.reset(st.stage_token)
            except (ValueError, RuntimeError):
                pass  # made in another context: nothing of ours to undo in this one
        # Ended, and the token let go: it holds its context, which would otherwise wait with the
        # record for the worker, more for the garbage collector to pass over on every request.
        st.stage_token = _ENDED
        rec = st.request
        if rec is not None and not rec.end_ns:
            rec.stages.append(st)
        elif rt is not None:
            # No request, or it already finished (an abandoned generator): emit on its own.
            rt.worker.submit(st)
    except Exception as exc:
        _errors.report("stage", exc)


def end_stage(st: StageRecord | None, tokens: Tokens, error: BaseException | None = None) -> None:
    """End a record ``start_stage`` opened (``tokens``: what it returned with it)."""
    if st is not None:
        exit_stage(st, None, error)
