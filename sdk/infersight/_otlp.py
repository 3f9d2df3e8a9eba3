"""OTLP/gRPC span export with a cheaper encoder for the spans infersight builds.

The stock encoder builds a protobuf object per span, attribute and value: 30-35 µs per span of
ours on a 2-core box, and it runs holding the GIL that request threads wait for. Our spans are
simple (scalar attributes, no links, rarely events), and their resource, scope, names and
attributes repeat, so their wire bytes are written directly from packed or cached pieces and
handed to gRPC as they are: the export thread costs about a quarter of the stock encoder's per
request (benchmarks/cpu_split.py prints both). Any span this encoder does not cover (events,
links, non-scalar or out-of-range attribute values, dropped counts) is encoded by the stock
encoder, and tests/test_otlp.py checks the output equals the stock encoder's for random spans.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

__all__ = [
    "EncodedSpan",
    "encode_attributes",
    "encode_float",
    "encode_int",
    "encode_record_span",
    "encode_request",
    "float_head",
    "local_span_field",
    "name_kind",
    "pack_f64",
    "span_count",
    "span_field",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLAGS_HAS_IS_REMOTE, _FLAGS_IS_REMOTE = 0x100, 0x200
_pack_f64 = struct.Struct("<d").pack
pack_f64 = _pack_f64  # a float attribute's value bytes, after ``encode_float``'s head
_pack_u32 = struct.Struct("<I").pack
_HOLD_S = 0.001  # longest stretch of encoding before handing the GIL over (as the worker does)
_clock = time.perf_counter  # a module alias, so tests can drive the hand-off with a fake clock
_CACHE_MAX = 4096  # distinct (key, value) pairs kept; cleared when full (cardinality floods)


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 two's complement, as protobuf writes negative ints
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:  # lengths of most spans and attribute values
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


_str_cache: dict[tuple[int, str], bytes] = {}
_kv_cache: dict[tuple[str, Any, type], bytes] = {}


def _str_field(tag: int, text: str) -> bytes:
    key = (tag, text)
    hit = _str_cache.get(key)
    if hit is None:
        if len(_str_cache) >= _CACHE_MAX:
            _str_cache.clear()
        hit = _str_cache[key] = _field(tag, text.encode("utf-8"))
    return hit


def _any_value(value: Any) -> bytes | None:
    kind = type(value)
    if kind is str:
        return _field(0x0A, value.encode("utf-8"))
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return b"\x18" + _varint(value) if _INT64_MIN <= value <= _INT64_MAX else None
    if kind is float:
        return b"\x21" + _pack_f64(value)
    return None  # bytes, sequences, mappings, subclasses: the stock encoder's job


_float_heads: dict[str, bytes] = {}


def _float_head(key: str) -> bytes:
    """A float attribute's KeyValue up to its 8 value bytes: its length doesn't depend on the value."""
    hit = _float_heads.get(key)
    if hit is None:
        if len(_float_heads) >= _CACHE_MAX:
            _float_heads.clear()
        key_field = _str_field(0x0A, key)
        hit = _float_heads[key] = b"\x4a" + _varint(len(key_field) + 11) + key_field + b"\x12\x09\x21"
    return hit


def _attributes(attrs: Any) -> bytes | None:
    parts = []
    for key, value in attrs.items():
        kind = type(value)
        if kind is float and type(key) is str:
            parts.append(_float_head(key) + _pack_f64(value))
            continue
        cacheable = kind is str or kind is int or kind is bool  # floats rarely repeat
        encoded = _kv_cache.get((key, value, kind)) if cacheable else None
        if encoded is None:
            any_value = _any_value(value)
            if any_value is None or type(key) is not str:
                return None
            encoded = _field(0x4A, _str_field(0x0A, key) + _field(0x12, any_value))
            if cacheable:
                if len(_kv_cache) >= _CACHE_MAX:
                    _kv_cache.clear()
                _kv_cache[(key, value, kind)] = encoded
        parts.append(encoded)
    return b"".join(parts)


_ids = struct.Struct(">HQQHQ").pack  # trace_id (two halves) and span_id, with their tags
_parent_id = struct.Struct(">HQ").pack
_times = struct.Struct("<BQBQ").pack  # start and end time, fixed64
_kind_bytes = {id(kind): bytes((0x30, kind.value + 1)) for kind in SpanKind}  # enums hash in Python
_status_code = {id(code): code.value for code in StatusCode}
_M64 = (1 << 64) - 1
_head_cache: dict[tuple[str, int], bytes] = {}
_tail_cache: dict[tuple[int, int], bytes] = {}


def _head(name: str, kind: SpanKind) -> bytes:
    """The name and kind fields, cached: both repeat across spans."""
    key = (name, id(kind))
    hit = _head_cache.get(key)
    if hit is None:
        if len(_head_cache) >= _CACHE_MAX:
            _head_cache.clear()
        hit = _head_cache[key] = _str_field(0x2A, name) + _kind_bytes[id(kind)]
    return hit


def _tail(status: Any, flags: int) -> bytes:
    """The status and flags fields; without a description they come from a handful of values."""
    code = _status_code[id(status.status_code)]
    description = status.description
    key = (code, flags)
    hit = None if description else _tail_cache.get(key)
    if hit is None:
        inner = _field(0x12, description.encode("utf-8")) if description else b""
        hit = _field(0x7A, inner + (bytes((0x18, code)) if code else b"")) + b"\x85\x01" + _pack_u32(flags)
        if not description:
            _tail_cache[key] = hit
    return hit


def _encode_span(span: ReadableSpan) -> bytes | None:
    """The Span message's bytes, or None where the stock encoder must do it."""
    if span.events or span.links or span.dropped_attributes:
        return None
    attributes = span.attributes
    attrs = _attributes(attributes) if attributes else b""
    if attrs is None:
        return None
    ctx = span.context
    if ctx is None:
        return None
    trace_id = ctx.trace_id
    head = _ids(0x0A10, trace_id >> 64, trace_id & _M64, 0x1208, ctx.span_id)
    if ctx.trace_state:
        # Per request, not repeated: not cached (it would evict the names and keys that repeat).
        head += _field(0x1A, ",".join(f"{k}={v}" for k, v in ctx.trace_state.items()).encode("utf-8"))
    parent = span.parent
    flags = _FLAGS_HAS_IS_REMOTE
    if parent is not None:
        head += _parent_id(0x2208, parent.span_id)
        if parent.is_remote:
            flags |= _FLAGS_IS_REMOTE
    return b"".join(
        (
            head,
            _head(span.name, span.kind),
            _times(0x39, span.start_time or 0, 0x41, span.end_time or 0),
            attrs,
            _tail(span.status, flags),
        )
    )


class _SampledContext:
    """What a batch processor reads of an encoded span's context: that it was sampled."""

    __slots__ = ()
    trace_flags = TraceFlags(TraceFlags.SAMPLED)


class EncodedSpan:
    """Spans of ours already encoded from their records (``_spans``): a request's spans as one
    item, which takes a ReadableSpan's place in infersight's own batch processor, whose exporter
    (ours) writes its bytes as they are. ``encoded``: the spans as repeated Span fields of a
    ScopeSpans message (``span_field``). Only handed over while no other processor could be
    given it."""

    __slots__ = ("encoded", "instrumentation_scope", "resource", "span_count")
    context = _SampledContext()

    def __init__(self, encoded: bytes, resource: Any, scope: Any, count: int = 1) -> None:
        self.encoded = encoded
        self.resource = resource
        self.instrumentation_scope = scope
        self.span_count = count


def span_field(span: bytes) -> bytes:
    """A Span message as a ScopeSpans field."""
    return b"\x12" + _varint(len(span)) + span


def span_count(items: Sequence[Any]) -> int:
    """How many spans a batch holds (an ``EncodedSpan`` may hold a request's several)."""
    n = len(items)
    for item in items:
        if type(item) is EncodedSpan:
            n += item.span_count - 1
    return n


_code_tails: dict[tuple[int, bool], bytes] = {}


def encode_record_span(
    name: str,
    kind: SpanKind,
    trace_id: int,
    span_id: int,
    trace_state: Any,
    parent_id: int,
    parent_remote: bool,
    start: int,
    end: int,
    attrs: bytes,
    error_status: bool,
) -> bytes:
    """A Span message from a record's fields, as ``_encode_span`` writes the ReadableSpan that
    ``_spans`` would have built (status without a description: an error with a message goes the
    ReadableSpan way, with its exception event)."""
    head = _ids(0x0A10, trace_id >> 64, trace_id & _M64, 0x1208, span_id)
    if trace_state:
        head += _field(0x1A, ",".join(f"{k}={v}" for k, v in trace_state.items()).encode("utf-8"))
    if parent_id:
        head += _parent_id(0x2208, parent_id)
    key = (2 if error_status else 0, parent_remote if parent_id else False)
    tail = _code_tails.get(key)
    if tail is None:
        flags = _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if key[1] else 0)
        status = _field(0x7A, bytes((0x18, 2)) if error_status else b"")
        tail = _code_tails[key] = status + b"\x85\x01" + _pack_u32(flags)
    return b"".join((head, _head(name, kind), _times(0x39, start, 0x41, end), attrs, tail))


_ids_parent = struct.Struct(">HQQHQHQ").pack  # trace, span and parent ids, with their tags
_LOCAL_OK_TAIL = _field(0x7A, b"") + b"\x85\x01" + _pack_u32(_FLAGS_HAS_IS_REMOTE)


def name_kind(name: str, kind: SpanKind) -> bytes:
    """A span's name and kind fields (for ``local_span_field``)."""
    return _head(name, kind)


def local_span_field(
    name_kind: bytes, trace_id: int, span_id: int, parent_id: int, start: int, end: int, attrs: bytes
) -> bytes:
    """``span_field(encode_record_span(...))`` for a span of ours with a local parent (or none),
    no trace state and an unset status (a stage that ended well), in one call."""
    if parent_id:
        ids = _ids_parent(0x0A10, trace_id >> 64, trace_id & _M64, 0x1208, span_id, 0x2208, parent_id)
    else:
        ids = _ids(0x0A10, trace_id >> 64, trace_id & _M64, 0x1208, span_id)
    body = b"".join((ids, name_kind, _times(0x39, start, 0x41, end), attrs, _LOCAL_OK_TAIL))
    return b"\x12" + _varint(len(body)) + body


def encode_float(key: str, value: float) -> bytes:
    """One float attribute's KeyValue field."""
    return _float_head(key) + _pack_f64(value)


def float_head(key: str) -> bytes:
    """A float attribute's KeyValue field up to its value's 8 bytes (``pack_f64``)."""
    return _float_head(key)


def encode_int(key: str, value: int) -> bytes | None:
    """One int attribute's KeyValue field, cached (``None``: out of int64's range)."""
    hit = _kv_cache.get((key, value, int))
    return hit if hit is not None else _attributes({key: value})


def encode_attributes(attrs: Any) -> bytes | None:
    """The attributes' KeyValue fields (``None``: a value only the stock encoder writes)."""
    return _attributes(attrs) if attrs else b""


_NONE = object()
_envelopes: dict[tuple[Any, Any], tuple[bytes, bytes, bytes, bytes]] = {}


def _envelope(resource: Any, scope: Any) -> tuple[bytes, bytes, bytes, bytes]:
    """Resource and scope bytes, and their schema URL fields, from the stock encoder once."""
    key = (resource, scope)
    hit = _envelopes.get(key)
    if hit is None:
        probe = ReadableSpan("probe", context=SpanContext(1, 1, False), resource=resource, instrumentation_scope=scope)
        rs = encode_spans([probe]).resource_spans[0]
        ss = rs.scope_spans[0]
        rs_schema = _str_field(0x1A, rs.schema_url) if rs.schema_url else b""
        ss_schema = _str_field(0x1A, ss.schema_url) if ss.schema_url else b""
        scope_bytes = _field(0x0A, ss.scope.SerializeToString()) if ss.HasField("scope") else b""
        hit = (_field(0x0A, rs.resource.SerializeToString()), rs_schema, scope_bytes, ss_schema)
        if len(_envelopes) >= 64:
            _envelopes.clear()
        _envelopes[key] = hit
    return hit


def encode_request(spans: Sequence[ReadableSpan | EncodedSpan]) -> bytes:
    """An ExportTraceServiceRequest's bytes, grouped by resource then scope as the stock encoder."""
    groups: dict[Any, dict[Any, list[bytes]]] = {}
    last_resource: Any = _NONE
    last_scope: Any = _NONE
    bucket: list[bytes] = []
    held_since = _clock()
    for index, span in enumerate(spans):
        if index & 63 == 63 and _clock() - held_since > _HOLD_S:
            time.sleep(0)  # let request threads run: a 512-span batch would hold the GIL ~4 ms
            held_since = _clock()
        if isinstance(span, EncodedSpan):
            pieces: tuple[bytes, ...] = (span.encoded,)  # Span fields already
        else:
            ours = _encode_span(span)
            encoded = (
                ours
                if ours is not None
                else encode_spans([span]).resource_spans[0].scope_spans[0].spans[0].SerializeToString()
            )
            pieces = (b"\x12" + _varint(len(encoded)), encoded)  # the Span field, without copying it
        resource, scope = span.resource, span.instrumentation_scope or None
        if resource is not last_resource or scope is not last_scope:  # hashing a Resource is dear
            bucket = groups.setdefault(resource, {}).setdefault(scope, [])
            last_resource, last_scope = resource, scope
        bucket += pieces
    out = []
    for resource, by_scope in groups.items():
        resource_parts = []
        for scope, encoded_spans in by_scope.items():
            resource_bytes, rs_schema, scope_bytes, ss_schema = _envelope(resource, scope)
            resource_parts.append(_field(0x12, scope_bytes + b"".join(encoded_spans) + ss_schema))
        out.append(_field(0x0A, resource_bytes + b"".join(resource_parts) + rs_schema))
    return b"".join(out)
