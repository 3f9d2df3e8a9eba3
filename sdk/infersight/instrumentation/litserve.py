"""LitServe: ``decode_request``, ``predict`` and ``encode_response`` become the preprocess, model and
postprocess stages of the request they serve, with its queue wait and, when LitServe batches,
the batch size.

LitServe serves HTTP in one or more API server processes (FastAPI: their requests are
instrumented by ``starlette``) and runs the LitAPI in inference workers it starts with
``spawn``. The two meet at a multiprocessing queue. infersight wraps that queue
(``LitServer._get_request_queue``): the server side adds the request's span context to each item,
the worker side takes it off again before LitServe reads the item, so LitServe and the LitAPI see
what they always saw. The worker's stages are spans whose parent is the request's server span in
the API server process: one trace per request, its request counted once (by the API server), its
stages once (by the worker).

The worker is a fresh interpreter. It runs ``import infersight.auto`` again when it re-imports the
app's main module (the usual layout); if it didn't, infersight starts there, with the API
server's settings, as the worker receives its queue.

Each process keeps its own metrics: with ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus_client's
multiprocess mode) the app's ``/metrics`` shows the workers' stage metrics with the servers'
request metrics. Streaming LitAPIs (``stream=True``) and custom loops get the request spans and
the trace context in the worker, not the automatic stages.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from .. import _compat, _errors, _runtime
from .._records import StageRecord
from ..conventions import ATTR, SPAN
from ._common import unwrap, wrap

__all__ = ["Carrier", "TracedQueue", "instrument", "uninstrument"]

_STAGES = {"decode_request": SPAN.PREPROCESS, "predict": SPAN.MODEL, "encode_response": SPAN.POSTPROCESS}
# Items taken off the queue whose decode_request hasn't run yet (a request that timed out in the
# queue never gets one), and requests between decode_request and encode_response (a failed
# predict never gets to the latter): both bounded, the oldest dropped first.
_MAX_OPEN = 4096


class Carrier(NamedTuple):
    """The request's span context, as the API server hands it to the inference worker."""

    trace_id: int
    span_id: int
    flags: int


class _Job:
    """One request in the inference worker, from the queue to encode_response."""

    __slots__ = ("carrier", "context", "enqueued", "payload", "waited")

    def __init__(self, payload: Any, enqueued: float | None, carrier: Carrier | None) -> None:
        self.payload = payload  # held: its id() is the key until decode_request
        self.enqueued = enqueued  # the API server's time.monotonic() (one clock for all processes)
        self.carrier = carrier
        self.context: Any = None  # LitServe's per-request context dict, held for the same reason
        self.waited = -1.0

    def parent(self) -> SpanContext | None:
        c = self.carrier
        if c is None:
            return None
        return SpanContext(c.trace_id, c.span_id, True, TraceFlags(c.flags))


# id(payload) -> jobs, oldest first: payloads may be one shared object (a small int, an interned
# string), whose requests are decoded in the order they were taken.
_taken: OrderedDict[int, list[_Job]] = OrderedDict()
_open: OrderedDict[int, _Job] = OrderedDict()  # id(context) -> job


def _remember(table: OrderedDict[int, Any], key: int, value: Any) -> None:
    table[key] = value
    while len(table) > _MAX_OPEN:
        table.popitem(last=False)


def _take(payload: Any) -> _Job | None:
    jobs = _taken.get(id(payload))
    if not jobs:
        return None
    job = jobs.pop(0)
    if not jobs:
        del _taken[id(payload)]
    return job if job.payload is payload else None


def _carrier() -> Carrier | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return Carrier(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))


class TracedQueue:
    """LitServe's request queue, with the request's span context riding along with each item."""

    def __init__(self, queue: Any, config: Any = None) -> None:
        self.queue = queue
        self.config = config  # the API server's settings, for a worker that has none

    def put(self, item: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            if type(item) is tuple and len(item) == _compat.LITSERVE_ITEM_LEN:
                carrier = _carrier()
                if carrier is not None:
                    item = (*item, carrier)
        except Exception as exc:
            _errors.report("litserve", exc)
        return self.queue.put(item, *args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return _taken_off(self.queue.get(*args, **kwargs))

    def get_nowait(self) -> Any:
        return _taken_off(self.queue.get_nowait())

    def __getattr__(self, name: str) -> Any:  # qsize, empty, ...: the queue's own
        return getattr(self.queue, name)

    def __reduce__(self) -> tuple[Callable[..., TracedQueue], tuple[Any, Any]]:
        return _received, (self.queue, self.config)


def _taken_off(item: Any) -> Any:
    """The item as LitServe put it; its request remembered for decode_request. Unconditional: an
    item must never reach LitServe with the carrier still on."""
    if type(item) is not tuple:
        return item
    n = len(item)
    if n == _compat.LITSERVE_ITEM_LEN + 1 and isinstance(item[-1], Carrier):
        carrier: Carrier | None = item[-1]
        item = item[:-1]
    elif n == _compat.LITSERVE_ITEM_LEN:
        carrier = None
    else:
        return item
    try:
        enqueued, payload = item[2], item[3]
        if payload is not None and _runtime.get_runtime() is not None:
            job = _Job(payload, enqueued if isinstance(enqueued, float) else None, carrier)
            jobs = _taken.get(id(payload))
            if jobs is None:
                _remember(_taken, id(payload), [job])
            elif len(jobs) < _MAX_OPEN:
                jobs.append(job)
    except Exception as exc:
        _errors.report("litserve", exc)
    return item


def _received(queue: Any, config: Any) -> TracedQueue:
    """Unpickled in the inference worker, before its loop starts: infersight starts there unless
    the app's main module already started it."""
    if _runtime.get_runtime() is None and config is not None:
        try:
            from .._startup import init
            from . import instrument_all

            init(config)
            instrument_all()
        except Exception as exc:
            _errors.report("litserve", exc)
    return TracedQueue(queue, config)


def _get_queue(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    queue = wrapped(*args, **kwargs)
    if isinstance(queue, TracedQueue):
        return queue
    rt = _runtime.get_runtime()
    return TracedQueue(queue, rt.config if rt is not None else None)


# ---- The inference worker: the LitAPI's hooks as stages -------------------------------------------


class _Plan:
    __slots__ = ("batch", "jobs", "model", "name")

    def __init__(self, name: str, jobs: list[_Job], batch: int, model: str | None) -> None:
        self.name = name
        self.jobs = jobs
        self.batch = batch
        self.model = model


def _plan(args: tuple[Any, ...]) -> _Plan | None:
    """Which stage this hook call is, and for which requests (None: not one of ours)."""
    if len(args) < 2:
        return None
    rt = _runtime.get_runtime()
    if rt is None:
        return None
    context, hook = args[0], args[1]
    name = _STAGES.get(getattr(hook, "__name__", ""))
    if name is None:
        return None
    path = getattr(getattr(hook, "__self__", None), "api_path", None)
    model = rt.config.model_for_endpoint(path) if isinstance(path, str) else None
    if name == SPAN.PREPROCESS:
        payload = args[2] if len(args) > 2 else None
        job = _take(payload)
        if job is None:
            job = _Job(payload, None, None)  # not from the queue we know: timed, without a parent
        job.payload = None
        if job.enqueued is not None:
            job.waited = max(0.0, time.monotonic() - job.enqueued)
        job.context = context
        _remember(_open, id(context), job)
        return _Plan(name, [job], 0, model)
    if isinstance(context, list):  # a batch: one context per request
        jobs = [job for job in (_open.get(id(c)) for c in context) if job is not None]
        return _Plan(name, jobs, len(context), model) if jobs else None
    job = _open.pop(id(context), None) if name == SPAN.POSTPROCESS else _open.get(id(context))
    return _Plan(name, [job], 0, model) if job is not None else None


def _begin(plan: _Plan) -> tuple[StageRecord | None, Any]:
    """The first request's stage is current while the hook runs (stages and calls inside nest
    under it); the batch's other requests get theirs, with the same times, at the end."""
    parent = plan.jobs[0].parent()
    token = _runtime._attach(NonRecordingSpan(parent)) if parent is not None else None
    st, tokens = _runtime.start_stage(plan.name, plan.model)
    return st, (token, tokens)


def _end(plan: _Plan, st: StageRecord | None, held: Any, error: BaseException | None) -> None:
    token, tokens = held
    if st is not None:
        first = plan.jobs[0]
        if plan.batch:
            st.batch_size = plan.batch  # one observation per batch
            st.set_attr(ATTR.BATCH_SIZE, plan.batch)
        if first.waited >= 0 and plan.name == SPAN.PREPROCESS:
            st.queue_wait_s = first.waited
    _runtime.end_stage(st, tokens, error)
    if token is not None:
        _runtime._reset(token)
    rt = _runtime.get_runtime()
    if st is None or rt is None or len(plan.jobs) < 2:
        return
    try:
        for job in itertools.islice(plan.jobs, 1, None):
            parent = job.parent()
            if parent is not None:
                other = StageRecord(
                    st.name, st.model, None, parent.span_id, parent.trace_id, parent.trace_flags.sampled
                )
            else:
                other = StageRecord(st.name, st.model, None, 0, st.trace_id, st.sampled)
            other.start_ns, other.end_ns, other.error = st.start_ns, st.end_ns, error
            other.set_attr(ATTR.BATCH_SIZE, plan.batch)
            if st.extras:
                other.extras = dict(st.extras)
            rt.worker.submit(other)
    except Exception as exc:
        _errors.report("litserve", exc)


def _plan_or_none(args: tuple[Any, ...]) -> Any:
    """The hook call's plan; None (the hook runs unobserved) where there is none or it failed."""
    try:
        return _plan(args)
    except Exception as exc:
        _errors.report("litserve", exc)
        return None


def _hook_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    plan = _plan_or_none(args)
    if plan is None:
        return wrapped(*args, **kwargs)
    st, held = _begin(plan)
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _end(plan, st, held, exc)
        raise
    _end(plan, st, held, None)
    return result


def _async_hook_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    plan = _plan_or_none(args)
    if plan is None:
        return wrapped(*args, **kwargs)

    async def staged() -> Any:
        st, held = _begin(plan)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _end(plan, st, held, exc)
            raise
        _end(plan, st, held, None)
        return result

    return staged()


def instrument() -> None:
    module, path = _compat.LITSERVE_QUEUE_GETTER
    wrap(module, path, _get_queue)
    for (module, name), wrapper in zip(_compat.LITSERVE_HOOK_CALLERS, (_hook_call, _async_hook_call), strict=True):
        wrap(module, name, wrapper)


def uninstrument() -> None:
    module, path = _compat.LITSERVE_QUEUE_GETTER
    unwrap(module, path)
    for module, name in _compat.LITSERVE_HOOK_CALLERS:
        unwrap(module, name)
