"""Helpers shared by the instrumentations: patching with wrapt, trace-context extraction."""

from __future__ import annotations

import importlib
from typing import Any

import wrapt
from opentelemetry import propagate, trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import _compat, _errors

__all__ = ["content_length", "extract_remote_parent", "is_wrapped", "unwrap", "w3c_only", "wrap"]


def _resolve(module: str, path: str) -> tuple[Any, str]:
    obj: Any = importlib.import_module(module)
    *parents, attr = path.split(".")
    for name in parents:
        obj = getattr(obj, name)
    return obj, attr


def is_wrapped(obj: Any) -> bool:
    return _compat.is_wrapt_wrapper(obj)


def _ours(current: Any, wrapper: Any) -> bool:
    """Whether ``wrapper`` is among the wrapt wrappers stacked on ``current`` (another library's,
    e.g. an OpenTelemetry instrumentation's, may sit on top of or under ours)."""
    for _ in range(16):  # a bounded walk down the stack
        if not is_wrapped(current):
            return False
        if _compat.wrapt_wrapper_of(current) is wrapper:
            return True
        current = getattr(current, "__wrapped__", None)
    return False


def wrap(module: str, path: str, wrapper: Any) -> None:
    owner, attr = _resolve(module, path)
    if _ours(owner.__dict__.get(attr), wrapper):
        return
    wrapt.wrap_function_wrapper(owner, attr, wrapper)


def unwrap(module: str, path: str) -> None:
    """Take infersight's wrapper off, wherever it is in the stack: other libraries' stay."""
    try:
        owner, attr = _resolve(module, path)
    except (ImportError, AttributeError):
        return
    current = owner.__dict__.get(attr)
    if not is_wrapped(current):
        return
    if getattr(_compat.wrapt_wrapper_of(current), "__module__", "").startswith(_OURS):
        setattr(owner, attr, current.__wrapped__)
        return
    parent: Any = current
    below: Any = current.__wrapped__
    for _ in range(16):
        if not is_wrapped(below):
            return
        if getattr(_compat.wrapt_wrapper_of(below), "__module__", "").startswith(_OURS):
            _compat.replace_wrapped(parent, below.__wrapped__)
            return
        parent, below = below, getattr(below, "__wrapped__", None)


_OURS = "infersight."


_INT64_MAX = 2**63 - 1  # the largest integer an OTLP attribute carries


def content_length(value: Any) -> int:
    """A Content-Length as the client sent it: digits only (RFC 9110), else -1 (not recorded).
    ``int()`` would raise on garbage, losing the span's attributes, and accepts "1_0" or "-5"."""
    if not isinstance(value, str):
        return -1
    value = value.strip()
    if value.isascii() and value.isdigit():
        length = int(value)
        if length <= _INT64_MAX:
            return length
    return -1


_checked: tuple[Any, bool] = (None, False)  # (global propagator, whether W3C-only): one per process


def w3c_only() -> bool:
    """Whether the global propagator reads only W3C ``traceparent`` (and baggage)."""
    global _checked
    prop = propagate.get_global_textmap()
    if prop is _checked[0]:
        return _checked[1]
    only = isinstance(prop, TraceContextTextMapPropagator)
    if isinstance(prop, CompositePropagator):
        names = {type(p).__name__ for p in _compat.composite_propagators(prop)}
        only = names <= {"TraceContextTextMapPropagator", "W3CBaggagePropagator"}
    _checked = (prop, only)
    return only


def extract_remote_parent(carrier: Any, getter: Any, traceparent_key: str) -> SpanContext | None:
    """The remote parent from incoming headers. Skips the propagator when the default W3C one
    is configured and no ``traceparent`` came in (the common case: a few hundred ns)."""
    try:
        if traceparent_key not in carrier and w3c_only():
            return None
        ctx = propagate.extract(carrier, getter=getter)
        span_ctx = trace.get_current_span(ctx).get_span_context()
        return span_ctx if span_ctx.is_valid else None
    except Exception as exc:
        _errors.report("propagation", exc)
        return None
