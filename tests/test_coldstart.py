"""A cold start taken apart: process start, imports, model load (files read, moved to the
device, warm-up) and the first request, as one span tree and a gauge per phase."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import infersight
from infersight import _coldstart
from infersight.conventions import ATTR, COLD_START_PHASES, SPAN
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

MODEL = "tiny-sentiment"


@pytest.fixture
def t() -> Iterator[Captured]:
    with capture(models={MODEL: {"version": "1", "slo_p99_seconds": 1.0}}) as captured:
        instrument_all(["transformers"])
        try:
            yield captured
        finally:
            uninstrument_all()


def _tree(t: Captured) -> tuple[Any, dict[str, list[Any]]]:
    deadline = time.monotonic() + 5  # the worker may hold the request's record a moment longer
    while not [s for s in t.spans() if s.name == SPAN.COLD_START] and time.monotonic() < deadline:
        time.sleep(0.02)
    spans = t.spans()
    root = [s for s in spans if s.name == SPAN.COLD_START]
    assert len(root) == 1, [s.name for s in spans]
    mine = [s for s in spans if s.context.trace_id == root[0].context.trace_id and s is not root[0]]
    by_name: dict[str, list[Any]] = {}
    for span in mine:
        by_name.setdefault(span.name, []).append(span)
    return root[0], by_name


def test_process_start_is_read_from_proc() -> None:
    started = _coldstart.process_started_ns()
    assert started is not None and started < _coldstart.IMPORTED_NS  # this process began before the import


def test_pipeline_cold_start_tree_and_gauges(t: Captured, tiny_model_dir: Path) -> None:
    from transformers import pipeline

    clf = pipeline("sentiment-analysis", model=str(tiny_model_dir))
    clf("warm up")  # outside any request: the warm-up
    t.flush()
    assert not [s for s in t.spans() if s.name == SPAN.COLD_START], "no cold start before the first request"
    with infersight.request(endpoint="/predict"):
        clf("great movie")
    with infersight.request(endpoint="/predict"):
        clf("second request: no second cold start")

    root, spans = _tree(t)
    assert sorted(spans) == sorted(
        ["process_start", "imports", "model_load", "read_weights", "to_device", "warm_up", "first_request"]
    )
    load = spans["model_load"][0]
    for name in ("process_start", "imports", "model_load", "first_request"):
        assert spans[name][0].parent.span_id == root.context.span_id, name
    for name in ("read_weights", "to_device", "warm_up"):
        for span in spans[name]:
            assert span.parent.span_id == load.context.span_id, name
    assert len(spans["read_weights"]) == 2  # the model's files and the tokenizer's
    # In order, and each inside the root.
    order = [spans[n][0] for n in ("process_start", "imports", "model_load", "first_request")]
    assert all(a.end_time <= b.start_time for a, b in itertools.pairwise(order))
    assert root.start_time == order[0].start_time and root.end_time == order[-1].end_time
    assert spans["warm_up"][0].end_time == load.end_time  # the load ends with its warm-up
    first = spans["first_request"][0]
    request = next(s for s in t.spans() if s.name == SPAN.REQUEST)  # the first of the two
    assert first.attributes[ATTR.COLD_START_REQUEST_TRACE] == f"{request.context.trace_id:032x}"
    assert root.attributes[ATTR.MODEL_NAME] == MODEL

    seconds = {phase: t.value("infersight_cold_start_seconds", model=MODEL, phase=phase) for phase in COLD_START_PHASES}
    assert all(v is not None and v > 0 for v in seconds.values()), seconds
    assert seconds["total"] == pytest.approx((root.end_time - root.start_time) / 1e9)
    parts = seconds["read_weights"] + seconds["to_device"] + seconds["warm_up"]
    assert parts <= seconds["model_load"] + 1e-6


def test_a_later_load_has_no_process_phases_and_record_model_load_counts(t: Captured, tiny_model_dir: Path) -> None:
    from transformers import pipeline

    pipeline("sentiment-analysis", model=str(tiny_model_dir))
    with infersight.request(endpoint="/predict", model=MODEL):
        pass
    _tree(t)  # the pipeline's cold start, process phases and all
    t.exporter.clear()
    infersight.record_model_load("custom", 0.25)  # a model no pipeline loaded
    with infersight.request(endpoint="/score", model="custom"):
        pass
    _root, spans = _tree(t)
    assert sorted(spans) == ["first_request", "model_load"]
    assert t.value("infersight_cold_start_seconds", model="custom", phase="model_load") == pytest.approx(0.25, abs=0.01)
