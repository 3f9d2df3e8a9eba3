"""A real transformers pipeline, loaded from a locally built model: stages appear by themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

import infersight
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import capture


@pytest.fixture
def instrumented():  # type: ignore[no-untyped-def]
    with capture(models={"tiny-sentiment": {"version": "1", "slo_p99_seconds": 1.0}}) as t:
        instrument_all(["transformers"])
        try:
            yield t
        finally:
            uninstrument_all()


def test_pipeline_stages_model_label_tokens_and_load_time(instrumented, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from transformers import pipeline

    clf = pipeline("sentiment-analysis", model=str(tiny_model_dir))
    with infersight.request(endpoint="/predict"):
        out = clf("great excellent movie")
    assert out[0]["label"] in {"POSITIVE", "NEGATIVE"}
    t = instrumented
    spans = {s.name: s for s in t.spans()}
    root = spans["inference"]
    for stage in ("preprocess", "model", "postprocess"):
        span = spans[stage]
        assert span.parent.span_id == root.context.span_id
        assert span.attributes["infersight.model.name"] == "tiny-sentiment"
        assert span.attributes["infersight.pipeline.task"] == "sentiment-analysis"
    assert spans["preprocess"].attributes["infersight.input.tokens"] == 5  # [CLS] 3 words [SEP]
    assert (
        t.value(
            "infersight_request_duration_seconds_count",
            model="tiny-sentiment",
            version="1",
            endpoint="/predict",
            outcome="success",
        )
        == 1.0
    )
    assert t.value("infersight_input_tokens_sum", model="tiny-sentiment") == 5.0
    load = t.value("infersight_model_load_duration_seconds", model="tiny-sentiment", version="1")
    assert load is not None and load > 0


def test_pipeline_outside_a_request_gets_one_trace(instrumented, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from transformers import pipeline

    clf = pipeline("sentiment-analysis", model=str(tiny_model_dir))
    clf(["good", "bad"])
    spans = instrumented.spans()
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == ["pipeline sentiment-analysis"]
    assert len([s for s in spans if s.name == "model"]) == 2
    assert {s.context.trace_id for s in spans} == {roots[0].context.trace_id}


def test_model_exception_passes_through(instrumented, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from transformers import pipeline

    clf = pipeline("sentiment-analysis", model=str(tiny_model_dir))
    with pytest.raises(Exception) as info:
        clf(12345)  # not text: the tokenizer rejects it
    spans = instrumented.spans("preprocess")
    assert spans and spans[0].status.status_code.name == "ERROR"
    assert spans[0].events[0].attributes["exception.type"] == type(info.value).__qualname__
