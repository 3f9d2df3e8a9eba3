"""Turn request and stage records into finished OTel spans, on the worker thread.

Ids were drawn on the request path, so children parent correctly and outgoing calls carried
the right ``traceparent``; here the spans are built with those ids and handed to the tracer
provider's span processors, exactly as if they had just ended.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from . import _compat, _errors
from ._records import RequestRecord, StageRecord, epoch_offset_ns, wall_ns
from ._version import __version__
from .conventions import ATTR, EVENT, OUTCOME_ERROR, SPAN

__all__ = ["PlainStage", "SpanEmitter", "stage_attributes"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)
_KINDS = {k.value: k for k in SpanKind}
_CLIENT = SpanKind.CLIENT.value


def _message(exc: BaseException) -> str:
    # A user's exception whose __str__ raises would otherwise lose the whole request's spans.
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__qualname__}>"


def _exception_event(exc: BaseException, at_ns: int) -> Event:
    return Event(
        EVENT.EXCEPTION,
        {
            ATTR.EXCEPTION_TYPE: type(exc).__qualname__,
            ATTR.EXCEPTION_MESSAGE: _message(exc),
            ATTR.EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exc)),
            ATTR.EXCEPTION_ESCAPED: True,
        },
        timestamp=at_ns,
    )


# A stage with no attributes of its own and no enrich hook: (model, version, CPU seconds). Its
# span's attributes are then written from one template per (stage, model, version).
PlainStage = tuple[str, str, float | None]


def stage_attributes(stage: StageRecord, model: str, version: str, cpu: float | None) -> dict[str, Any]:
    """A stage span's attributes, before any hook's ``enrich``."""
    attrs: dict[str, Any] = dict(stage.base_attrs) if stage.base_attrs else {}
    if stage.attrs:
        attrs.update(stage.attrs)
    attrs[ATTR.STAGE] = stage.name
    attrs[ATTR.MODEL_NAME] = model
    attrs[ATTR.MODEL_VERSION] = version
    if stage.batch_size:
        attrs[ATTR.BATCH_SIZE] = stage.batch_size
    if stage.queue_wait_s >= 0:
        attrs[ATTR.QUEUE_WAIT] = stage.queue_wait_s
    if cpu is not None:
        attrs[ATTR.STAGE_CPU_SECONDS] = cpu
    return attrs


def _as_dict(stage: StageRecord, attrs: dict[str, Any] | PlainStage) -> dict[str, Any]:
    return stage_attributes(stage, *attrs) if type(attrs) is tuple else attrs  # type: ignore[return-value]


class _HashOnceResource(Resource):
    """The OTLP encoder groups spans by resource, hashing it per span, and Resource.__hash__
    JSON-encodes every attribute each time: a quarter of the encoding cost of our small spans."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


class _ReplayedSpan(Span):
    """An SDK span started and ended from a finished record (the SDK lets only subclasses be
    built outside a tracer, which would draw new ids)."""


class SpanEmitter:
    """Hands finished spans to the provider's processors. For infersight's own provider (whose
    batch processor does nothing on start) a ReadableSpan goes straight to ``on_end``; for a
    provider the app owns (``with_on_start``), each span is started and ended as an SDK span,
    so the app's processors see ``on_start`` too, unless each of them does nothing then (the
    SDK's batch and simple processors) and the span's attributes need no validation."""

    def __init__(
        self,
        provider: TracerProvider,
        resource: Resource,
        on_drop: Callable[[int], Any] | None = None,
        with_on_start: bool = False,
        encodes: Callable[[tuple[Any, ...]], bool] | None = None,
    ) -> None:
        self.provider = provider
        self.with_on_start = with_on_start
        self.resource = resource
        self.scope = InstrumentationScope(SPAN.INSTRUMENTATION_SCOPE, __version__)
        self.on_drop = on_drop
        self._queues = _compat.batch_queues(provider)
        self._start_free_for: tuple[Any, ...] | None = None  # the processors _start_free answered for
        self._start_free_to: Callable[[Any], Any] | None = None
        self._processor = _compat.span_processor(provider)
        self._on_end = self._processor.on_end if self._processor is not None else None
        # The processors when each one sends through infersight's encoder (``encodes``): then
        # spans are encoded here from their records, with no ReadableSpan. Checked per request:
        # a processor the app adds later (a new tuple) gets ReadableSpans from then on.
        processors = _compat.span_processors(provider)
        self._encoding_for = processors if encodes is not None and processors and encodes(processors) else None
        # Where a request's pre-encoded spans go, as one item: the batch processors' queueing
        # ``emit`` (skipping two layers of per-span dispatch), else the composite ``on_end``.
        self._emit_item: Callable[[Any], Any] | None = self._on_end
        if self._encoding_for is not None:
            from . import _otlp  # protobuf: imported only where our encoder exports

            self._otlp = _otlp
            emits = _compat.batch_emits(self._encoding_for)
            if emits is not None and len(emits) == 1:
                self._emit_item = emits[0]
        # (id of the stage's shared base attributes, stage, model, version) -> the template
        self._stage_templates: dict[tuple[int, str, str, str], _StageTemplate] = {}
        self._model_pieces: dict[tuple[str, str], bytes] = {}  # (model, version) -> their bytes

    @property
    def resource(self) -> Resource:
        return self._resource

    @resource.setter
    def resource(self, resource: Resource) -> None:  # set again after a fork (new instance id)
        self._resource = _HashOnceResource(resource)

    def _ctx(self, trace_id: int, span_id: int, trace_state: Any = None) -> SpanContext:
        return SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED, trace_state=trace_state)

    def _emit(
        self,
        name: str,
        kind: SpanKind,
        ctx: SpanContext,
        parent: SpanContext | None,
        attrs: dict[str, Any],
        start_ns: int,
        end_ns: int,
        error: BaseException | None,
        error_status: bool,
    ) -> None:
        end = wall_ns(end_ns)
        events = (_exception_event(error, end),) if error is not None else ()
        if error is not None:
            attrs.setdefault(ATTR.ERROR_TYPE, type(error).__qualname__)
            status = Status(StatusCode.ERROR, f"{type(error).__qualname__}: {_message(error)}")
        else:
            status = _ERROR if error_status else _UNSET
        self._count_drops()
        if self._on_end is None:
            _errors.report("compat.span_processor")  # the SDK moved it: no span can be handed over
            return
        hand_to: Callable[[Any], Any] | None = self._on_end
        if self.with_on_start and (events or (hand_to := self._start_free()) is None or not _plain(attrs)):
            self._emit_started(name, kind, ctx, parent, attrs, events, status, wall_ns(start_ns), end)
            return
        span = ReadableSpan(
            name,
            context=ctx,
            parent=parent,
            resource=self.resource,
            attributes=attrs,
            events=events,
            kind=kind,
            status=status,
            start_time=wall_ns(start_ns),
            end_time=end,
            instrumentation_scope=self.scope,
        )
        hand_to(span)  # type: ignore[misc]  # not None: checked above

    def _start_free(self) -> Callable[[Any], Any] | None:
        """Where a finished span goes when the app's processors need only ``on_end`` (each does
        nothing on start or as a span is ending): the one batch processor's queue, else their
        ``on_end``. None: spans start for them. Answered again when the app adds a processor."""
        processors = _compat.span_processors(self.provider)
        if processors is not self._start_free_for:
            self._start_free_for = processors
            hand_to = None
            if _compat.fans_out(self._processor) and _compat.starts_are_noops(processors):
                # The stock batch processor's on_end checks only that the span is sampled.
                emits = _compat.batch_emits(processors) if _compat.stock_batch_on_end(processors) else None
                hand_to = emits[0] if emits is not None and len(emits) == 1 else self._on_end
            self._start_free_to = hand_to
        return self._start_free_to

    def _emit_started(
        self,
        name: str,
        kind: SpanKind,
        ctx: SpanContext,
        parent: SpanContext | None,
        attrs: dict[str, Any],
        events: tuple[Event, ...],
        status: Status,
        start: int,
        end: int,
    ) -> None:
        span = _ReplayedSpan(
            name,
            ctx,
            parent=parent,
            resource=self.resource,
            attributes=attrs,
            events=events,
            kind=kind,
            span_processor=self._processor,
            instrumentation_scope=self.scope,
        )
        parent_context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        span.start(start_time=start, parent_context=parent_context)
        span.set_status(status)
        span.end(end_time=end)

    def emit_internal(
        self, name: str, ctx: SpanContext, parent: SpanContext | None, attrs: dict[str, Any], start_ns: int, end_ns: int
    ) -> None:
        """A span of infersight's own that is no request or stage (a cold start's phases)."""
        self._emit(name, SpanKind.INTERNAL, ctx, parent, attrs, start_ns, end_ns, None, False)

    def encoding(self) -> bool:
        """Whether spans go to infersight's encoder straight from their records."""
        return self._encoding_for is not None and _compat.span_processors(self.provider) == self._encoding_for

    def emit(
        self, rec: RequestRecord, model: str, version: str, stage_attrs: list[dict[str, Any] | PlainStage]
    ) -> None:
        if not rec.sampled:
            return
        if self._encoding_for is not None and self.encoding():
            self._emit_encoded(rec, model, version, stage_attrs)
            return
        req_ctx = self._ctx(rec.trace_id, rec.span_id, rec.trace_state)
        if rec.emit_span:
            attrs = _request_attrs(rec, model, version)
            parent = None
            if rec.parent_span_id:
                parent = SpanContext(
                    rec.trace_id, rec.parent_span_id, is_remote=rec.parent_remote, trace_flags=_SAMPLED
                )
            error_status = _error_status(rec)
            self._emit(
                rec.name,
                _KINDS.get(rec.kind, SpanKind.SERVER),
                req_ctx,
                parent,
                attrs,
                rec.start_ns,
                rec.end_ns,
                rec.error,
                error_status,
            )
        for stage, stage_attr in zip(rec.stages, stage_attrs, strict=True):
            if stage.sampled:
                self._emit_stage(stage, _as_dict(stage, stage_attr), req_ctx)

    def _count_drops(self) -> None:
        """A full batch queue drops its oldest item when the next comes: count its spans."""
        for queue, size in self._queues:
            if len(queue) >= size and self.on_drop is not None:
                try:
                    oldest = queue[-1]
                except IndexError:  # the export thread emptied it meanwhile
                    continue
                self.on_drop(oldest.span_count if type(oldest) is self._otlp.EncodedSpan else 1)

    def _hand_over(self, encoded: bytes, count: int) -> None:
        """One item for a request's pre-encoded spans (Span fields, ``_otlp.span_field``)."""
        self._count_drops()
        if self._emit_item is None:
            _errors.report("compat.span_processor")
            return
        self._emit_item(self._otlp.EncodedSpan(encoded, self._resource, self.scope, count))

    def _request_attributes(self, rec: RequestRecord, model: str, version: str) -> bytes | None:
        """The request span's attribute bytes, as ``encode_attributes(_request_attrs(...))``
        writes them: the record's own attributes from their cached key-value pieces, then the
        model's piece and the few that vary. None: the stock encoder's job."""
        otlp = self._otlp
        if rec.http is not None:  # an ASGI server's attributes, made here: the whole dict's way
            made: bytes | None = otlp.encode_attributes(_request_attrs(rec, model, version))
            return made
        attrs = rec.attrs
        head = b""
        if attrs:
            if not attrs.keys().isdisjoint(_REQUEST_KEYS):
                # A key of ours set by the app: the dict's order decides (the whole dict's way).
                whole: bytes | None = otlp.encode_attributes(_request_attrs(rec, model, version))
                return whole
            own: bytes | None = otlp.encode_attributes(attrs)  # pieces cached per key and value
            if own is None:
                return None
            head = own
        if rec.kind != _CLIENT:  # an outgoing call serves no model of ours
            piece = self._model_pieces.get((model, version))
            if piece is None:
                if len(self._model_pieces) >= 4096:
                    self._model_pieces.clear()
                fixed = {ATTR.MODEL_NAME: model, ATTR.MODEL_VERSION: version}
                piece = self._model_pieces[(model, version)] = otlp.encode_attributes(fixed) or b""
            head += piece
        if rec.batch_size:
            batch = otlp.encode_int(ATTR.BATCH_SIZE, rec.batch_size)
            if batch is None:
                return None
            head += batch
        if rec.queue_wait_s >= 0:
            head += otlp.encode_float(ATTR.QUEUE_WAIT, rec.queue_wait_s)
        if rec.tokens >= 0:
            tokens = otlp.encode_int(ATTR.INPUT_TOKENS, rec.tokens)
            if tokens is None:
                return None
            head += tokens
        return bytes(head)

    def _emit_encoded(
        self, rec: RequestRecord, model: str, version: str, stage_attrs: list[dict[str, Any] | PlainStage]
    ) -> None:
        """``emit`` without ReadableSpans: each span's bytes from its record, the attributes
        every stage of a model repeats from one template, and the request's spans handed over
        as one item. A span with an exception (an event) or an attribute only the stock encoder
        writes goes the ReadableSpan way."""
        otlp = self._otlp
        span_field = otlp.span_field
        trace_id = rec.trace_id
        parts: list[bytes] = []
        if rec.emit_span:
            error_status = _error_status(rec)
            encoded_attrs = self._request_attributes(rec, model, version) if rec.error is None else None
            if encoded_attrs is None:
                attrs = _request_attrs(rec, model, version)
                parent = None
                if rec.parent_span_id:
                    parent = SpanContext(trace_id, rec.parent_span_id, rec.parent_remote, _SAMPLED)
                kind = _KINDS.get(rec.kind, SpanKind.SERVER)
                ctx = self._ctx(trace_id, rec.span_id, rec.trace_state)
                self._emit(rec.name, kind, ctx, parent, attrs, rec.start_ns, rec.end_ns, rec.error, error_status)
            else:
                parts.append(
                    span_field(
                        otlp.encode_record_span(
                            rec.name,
                            _KINDS.get(rec.kind, SpanKind.SERVER),
                            trace_id,
                            rec.span_id,
                            rec.trace_state,
                            rec.parent_span_id,
                            rec.parent_remote,
                            wall_ns(rec.start_ns),
                            wall_ns(rec.end_ns),
                            encoded_attrs,
                            error_status,
                        )
                    )
                )
        stage_field, plain_field, offset = self._stage_field, self._plain_stage_field, epoch_offset_ns()
        for stage, stage_attr in zip(rec.stages, stage_attrs, strict=True):
            if not stage.sampled:
                continue
            if type(stage_attr) is tuple:
                field = plain_field(stage, stage_attr, offset)  # type: ignore[arg-type]
            else:
                field = stage_field(stage, stage_attr)
            if field is None:
                if parts:  # in order: what came before goes first
                    self._hand_over(b"".join(parts), len(parts))
                    parts = []
                self._emit_stage(stage, _as_dict(stage, stage_attr), None)
            else:
                parts.append(field)
        if parts:
            self._hand_over(b"".join(parts), len(parts))

    def _plain_stage_field(self, stage: StageRecord, plain: PlainStage, offset: int) -> bytes | None:
        """A stage span's Span field, as ``span_field`` of the stock encoder's bytes for the
        ``ReadableSpan`` of ``stage_attributes(...)``: the shared base attributes and the stage,
        model and version from one template, the stage's own few between them, then the values
        that vary, and the span's fields around them, in one call. ``offset``: ``epoch_offset_ns()``.
        None: another way's job."""
        model, version, cpu = plain
        base = stage.base_attrs
        key = (id(base) if base else 0, stage.name, model, version)
        template = self._stage_templates.get(key)
        if template is None or template.base is not base:
            if len(self._stage_templates) >= 4096:
                self._stage_templates.clear()
            template = self._stage_templates[key] = _StageTemplate(base, stage.name, model, version, self._otlp)
        if stage.error is not None:
            return None
        own = stage.attrs
        encoded: bytes | None
        if template.base_bytes is None or (own and not own.keys().isdisjoint(template.reserved)):
            # A key of ours among the base or own ones: the dict's order decides.
            encoded = self._otlp.encode_attributes(stage_attributes(stage, model, version, cpu))
            if encoded is None:
                return None
        else:
            if own:
                own_bytes = self._otlp.encode_attributes(own)
                if own_bytes is None:
                    return None
                encoded = template.base_bytes + own_bytes + template.fixed_bytes
            else:
                encoded = template.both
            if stage.batch_size:
                batch = self._otlp.encode_int(ATTR.BATCH_SIZE, stage.batch_size)
                if batch is None:
                    return None
                encoded += batch
            if stage.queue_wait_s >= 0:
                encoded += self._otlp.encode_float(ATTR.QUEUE_WAIT, stage.queue_wait_s)
            if cpu is not None:
                encoded += template.cpu_head + self._otlp.pack_f64(cpu)
        return self._otlp.local_span_field(
            template.name_kind,
            stage.trace_id,
            stage.span_id,
            stage.parent_span_id,
            stage.start_ns + offset,
            stage.end_ns + offset,
            encoded,
        )

    def _stage_field(self, stage: StageRecord, attrs: dict[str, Any] | PlainStage) -> bytes | None:
        """A stage's Span field, or None for the ReadableSpan way."""
        if type(attrs) is tuple:
            return self._plain_stage_field(stage, attrs, epoch_offset_ns())  # type: ignore[arg-type]
        if stage.error is not None:
            return None
        encoded_attrs = self._otlp.encode_attributes(attrs)
        if encoded_attrs is None:
            return None
        return self._otlp.span_field(
            self._otlp.encode_record_span(
                stage.name,
                SpanKind.INTERNAL,
                stage.trace_id,
                stage.span_id,
                None,
                stage.parent_span_id,
                False,
                wall_ns(stage.start_ns),
                wall_ns(stage.end_ns),
                encoded_attrs,
                False,
            )
        )

    def _emit_stage_encoded(self, stage: StageRecord, attrs: dict[str, Any] | PlainStage) -> None:
        field = self._stage_field(stage, attrs)
        if field is None:
            self._emit_stage(stage, _as_dict(stage, attrs), None)
        else:
            self._hand_over(field, 1)

    def emit_stage(
        self, stage: StageRecord, attrs: dict[str, Any] | PlainStage, request_ctx: SpanContext | None = None
    ) -> None:
        if not stage.sampled:
            return
        if self._encoding_for is not None and self.encoding():
            self._emit_stage_encoded(stage, attrs)
        else:
            self._emit_stage(stage, _as_dict(stage, attrs), request_ctx)

    def _emit_stage(self, stage: StageRecord, attrs: dict[str, Any], request_ctx: SpanContext | None) -> None:
        if request_ctx is not None and stage.parent_span_id == request_ctx.span_id:
            parent: SpanContext | None = request_ctx
        elif stage.parent_span_id:
            parent = self._ctx(stage.trace_id, stage.parent_span_id)
        else:
            parent = None
        self._emit(
            stage.name,
            SpanKind.INTERNAL,
            self._ctx(stage.trace_id, stage.span_id),
            parent,
            attrs,
            stage.start_ns,
            stage.end_ns,
            stage.error,
            False,
        )


_REQUEST_KEYS = frozenset((ATTR.MODEL_NAME, ATTR.MODEL_VERSION, ATTR.BATCH_SIZE, ATTR.QUEUE_WAIT, ATTR.INPUT_TOKENS))
_STAGE_KEYS = (
    ATTR.STAGE,
    ATTR.MODEL_NAME,
    ATTR.MODEL_VERSION,
    ATTR.BATCH_SIZE,
    ATTR.QUEUE_WAIT,
    ATTR.STAGE_CPU_SECONDS,
)


class _StageTemplate:
    """The attribute bytes every span of one (base attributes, stage, model, version) repeats.
    Holds ``base`` so that its id, part of the key, is not reused while cached."""

    __slots__ = ("base", "base_bytes", "both", "cpu_head", "fixed_bytes", "name_kind", "reserved")

    def __init__(self, base: dict[str, Any] | None, name: str, model: str, version: str, otlp: Any) -> None:
        self.base = base
        self.name_kind: bytes = otlp.name_kind(name, SpanKind.INTERNAL)
        self.cpu_head: bytes = otlp.float_head(ATTR.STAGE_CPU_SECONDS)
        fixed = {ATTR.STAGE: name, ATTR.MODEL_NAME: model, ATTR.MODEL_VERSION: version}
        self.fixed_bytes: bytes = otlp.encode_attributes(fixed) or b""
        self.reserved = frozenset(base or ()) | frozenset(_STAGE_KEYS)
        if base and not base.keys().isdisjoint(_STAGE_KEYS):
            base_bytes = None  # a key of ours among the base ones: the dict's order decides
        else:
            base_bytes = otlp.encode_attributes(base) if base else b""
        self.base_bytes: bytes | None = base_bytes
        self.both = (base_bytes or b"") + self.fixed_bytes


_PLAIN_TYPES = frozenset((str, int, float, bool))
_STR = frozenset((str,))


def _plain(attrs: dict[str, Any]) -> bool:
    """Whether an SDK span would keep these attributes as they are: no key or value to validate
    or copy (an empty key, a sequence, a type OTel drops), so a ReadableSpan can hold the dict."""
    return "" not in attrs and _PLAIN_TYPES.issuperset(map(type, attrs.values())) and _STR.issuperset(map(type, attrs))


def _request_attrs(rec: RequestRecord, model: str, version: str) -> dict[str, Any]:
    """The request span's attributes: the record's own, then what the SDK knows of it."""
    if rec.http is not None:
        attrs = _http_attrs(rec, rec.http)
        if rec.attrs:
            attrs.update(rec.attrs)
    else:
        attrs = dict(rec.attrs) if rec.attrs else {}
    if rec.kind != _CLIENT:  # an outgoing call serves no model of ours
        attrs[ATTR.MODEL_NAME] = model
        attrs[ATTR.MODEL_VERSION] = version
    if rec.batch_size:
        attrs[ATTR.BATCH_SIZE] = rec.batch_size
    if rec.queue_wait_s >= 0:
        attrs[ATTR.QUEUE_WAIT] = rec.queue_wait_s
    if rec.tokens >= 0:
        attrs[ATTR.INPUT_TOKENS] = rec.tokens
    return attrs


def _http_attrs(rec: RequestRecord, http: tuple[str, str, str, str | None, str | None]) -> dict[str, Any]:
    """An HTTP server request's attributes, from what its instrumentation kept (``rec.http``)."""
    method, path, scheme, client, route = http
    code = rec.status_code
    attrs: dict[str, Any] = {
        ATTR.HTTP_REQUEST_METHOD: method,
        ATTR.URL_PATH: path,
        ATTR.URL_SCHEME: scheme,
        ATTR.HTTP_RESPONSE_STATUS_CODE: code,
    }
    if route:
        attrs[ATTR.HTTP_ROUTE] = route
    if client:
        attrs[ATTR.CLIENT_ADDRESS] = client
    if rec.payload_in >= 0:
        attrs[ATTR.HTTP_REQUEST_BODY_SIZE] = rec.payload_in
    if rec.payload_out >= 0:
        attrs[ATTR.HTTP_RESPONSE_BODY_SIZE] = rec.payload_out
    if code is not None and code >= 500:
        attrs[ATTR.ERROR_TYPE] = str(code)
    return attrs


def _error_status(rec: RequestRecord) -> bool:
    """A client's span is an error from 400 up (OTel semantic conventions); a server's from 500;
    gRPC's status is its own, and an error outcome without an exception counts too."""
    floor = 400 if rec.kind == _CLIENT else 500
    if rec.status_code is not None and rec.status_code >= floor and rec.protocol != "grpc":
        return True
    return rec.outcome == OUTCOME_ERROR and rec.error is None
