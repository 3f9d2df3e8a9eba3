"""The LitServe hand-over without LitServe: the queue carries the request's span context and
gives LitServe back its items as they were; the hooks, called as LitServe's loops call them,
become stages of the right requests. tests/test_litserve.py runs the real server."""

from __future__ import annotations

import pickle
import queue
import time
from typing import Any

import pytest

import infersight
from infersight import _runtime
from infersight.instrumentation import litserve
from infersight.testing import Captured, capture


@pytest.fixture
def t() -> Any:
    with capture(models={"doubler": {"endpoints": ["/predict"]}}) as captured:
        yield captured


class Api:
    api_path = "/predict"

    def decode_request(self, request: dict[str, int], context: Any = None) -> int:
        return request["x"]

    def predict(self, xs: Any) -> Any:
        return [2 * x for x in xs] if isinstance(xs, list) else 2 * xs

    def encode_response(self, y: int) -> dict[str, int]:
        return {"y": y}


def inject(context: Any, hook: Any, *args: Any) -> Any:
    """LitServe's ``_inject_context``, as its loops call it."""
    return hook(*args)


def hook_call(context: Any, hook: Any, *args: Any) -> Any:
    return litserve._hook_call(inject, None, (context, hook, *args), {})


def served(t: Captured, n: int) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """``n`` requests put on a TracedQueue by the API server's side: the items a worker gets."""
    inner: queue.Queue[Any] = queue.Queue()
    server_side = litserve.TracedQueue(inner)
    records = []
    for i in range(n):
        with infersight.request(endpoint="/predict") as req:
            server_side.put((0, f"uid-{i}", time.monotonic(), {"x": i}))
            records.append(req.record)
    # As spawn hands it to the worker (with a stand-in: a queue.Queue doesn't pickle, LitServe's
    # manager queue does).
    worker_side = pickle.loads(pickle.dumps(litserve.TracedQueue([], server_side.config)))
    assert isinstance(worker_side, litserve.TracedQueue)
    worker_side.queue = inner
    items = [worker_side.get(timeout=1) for _ in range(n)]
    return items, records


def test_items_reach_litserve_as_it_put_them(t: Captured) -> None:
    inner: queue.Queue[Any] = queue.Queue()
    with infersight.request(endpoint="/predict"):
        litserve.TracedQueue(inner).put((0, "uid", 1.0, {"x": 1}))
    raw = inner.get_nowait()
    assert len(raw) == 5 and isinstance(raw[-1], litserve.Carrier)  # on the queue: the carrier too
    inner.put(raw)
    assert litserve.TracedQueue(inner).get_nowait() == (0, "uid", 1.0, {"x": 1})
    sentinel = (None, None, None, None)  # LitServe's stop signal goes through untouched
    inner.put(sentinel)
    assert litserve.TracedQueue(inner).get() == sentinel


def test_single_requests_get_their_stages_under_their_request(t: Captured) -> None:
    items, records = served(t, 2)
    api = Api()
    for (_, _, _, payload), rec in zip(items, records, strict=True):
        context: dict[str, Any] = {}
        x = hook_call(context, api.decode_request, payload)
        y = hook_call(context, api.predict, x)
        assert hook_call(context, api.encode_response, y) == {"y": 2 * payload["x"]}
        for stage in ("preprocess", "model", "postprocess"):
            span = [s for s in t.spans(stage) if s.context.trace_id == rec.trace_id]
            assert len(span) == 1 and span[0].parent.span_id == rec.span_id, stage  # type: ignore[union-attr]
    pre = t.spans("preprocess")[0]
    assert pre.attributes["infersight.queue.wait_s"] >= 0  # type: ignore[index,operator]
    assert t.value("infersight_queue_wait_seconds_count", model="doubler") == 2
    assert t.value("infersight_stage_duration_seconds_count", model="doubler", stage="model") == 2
    assert t.value("infersight_batch_size_count", model="doubler") is None  # no batching, no batch size


def test_a_batch_gives_each_request_a_model_stage_and_one_batch_size(t: Captured) -> None:
    items, records = served(t, 3)
    api = Api()
    contexts: list[dict[str, Any]] = [{} for _ in items]
    xs = [hook_call(c, api.decode_request, item[3]) for c, item in zip(contexts, items, strict=True)]
    ys = hook_call(contexts, api.predict, xs)
    outs = [hook_call(c, api.encode_response, y) for c, y in zip(contexts, ys, strict=True)]
    assert outs == [{"y": 0}, {"y": 2}, {"y": 4}]
    models = t.spans("model")
    assert sorted(s.parent.span_id for s in models) == sorted(r.span_id for r in records)  # type: ignore[union-attr]
    assert {s.attributes["infersight.batch.size"] for s in models} == {3}  # type: ignore[index]
    assert t.value("infersight_batch_size_count", model="doubler") == 1  # one batch
    assert t.value("infersight_batch_size_sum", model="doubler") == 3
    assert t.value("infersight_stage_duration_seconds_count", model="doubler", stage="postprocess") == 3


def test_a_failing_predict_passes_its_exception_through_and_marks_the_stage(t: Captured) -> None:
    items, _ = served(t, 1)
    context: dict[str, Any] = {}
    x = hook_call(context, Api().decode_request, items[0][3])

    def predict(x: Any) -> Any:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        hook_call(context, predict, x)
    assert t.spans("model")[0].status.status_code.name == "ERROR"
    assert _runtime.get_runtime().errors.counts().get("litserve", 0) == 0  # type: ignore[union-attr]


def test_other_hooks_and_no_runtime_pass_straight_through() -> None:
    def batch(xs: Any) -> Any:
        return ("batched", xs)

    assert hook_call([{}], batch, [1]) == ("batched", [1])  # not a stage
    assert hook_call({}, Api().decode_request, {"x": 3}) == 3  # infersight not started


def test_requests_with_one_shared_payload_object_keep_their_own_parents(t: Captured) -> None:
    """Small ints (and interned strings) are one object in the worker: order tells them apart."""
    inner: queue.Queue[Any] = queue.Queue()
    records = []
    for i in range(2):
        with infersight.request(endpoint="/predict") as req:
            litserve.TracedQueue(inner).put((0, f"uid-{i}", time.monotonic(), 7))
            records.append(req.record)
    worker_side = litserve.TracedQueue(inner)
    payloads = [worker_side.get()[3] for _ in range(2)]
    assert payloads[0] is payloads[1]

    def decode_request(x: int) -> int:
        return x

    for payload in payloads:
        hook_call({}, decode_request, payload)
    parents = [s.parent.span_id for s in t.spans("preprocess")]  # type: ignore[union-attr]
    assert parents == [r.span_id for r in records]  # type: ignore[union-attr]
