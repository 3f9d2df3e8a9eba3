"""A Flask app serving a real transformers pipeline, with drift on: reference-like texts, then
texts from another vocabulary and much longer, until ``/metrics`` reports drift."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import infersight
from infersight.drift import get_monitor
from infersight.instrumentation import instrument_all, uninstrument_all

MODEL = "tiny-sentiment"  # the model directory's name is the pipeline's model label
DEADLINE_S = 30.0


@pytest.fixture
def served(tiny_model_dir: Path, tmp_path: Path) -> Iterator[tuple[Any, CollectorRegistry]]:
    from flask import Flask, jsonify, request
    from transformers import pipeline

    registry = CollectorRegistry()
    infersight.init(
        registry=registry,
        traces=False,
        gpu="off",
        drift=True,
        drift_interval_s=0.5,
        drift_reference_size=40,
        drift_window=60,
        drift_dir=str(tmp_path / "drift"),
    )
    instrument_all(["flask", "transformers"])
    try:
        clf = pipeline("text-classification", model=str(tiny_model_dir))
        app = Flask("drift-e2e")

        @app.post("/predict")
        def predict() -> Any:
            return jsonify(clf(request.get_json()["text"]))

        yield app.test_client(), registry
    finally:
        infersight.shutdown()
        uninstrument_all()


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {DEADLINE_S:.0f} s waiting for {what}")


def test_shifted_texts_are_reported_as_drift(served: tuple[Any, CollectorRegistry]) -> None:
    from build_model import synthetic_sentence  # type: ignore[import-not-found]

    client, _registry = served
    rng = random.Random(0)
    for _ in range(40):
        resp = client.post("/predict", json={"text": synthetic_sentence(rng, rng.random() < 0.5)})
        assert resp.status_code == 200
    monitor = get_monitor()
    assert monitor is not None
    _wait(lambda: monitor.reference(MODEL) is not None, "the reference of the first 40 samples")
    ref = monitor.reference(MODEL)
    assert ref is not None and len(ref) == 40
    assert ref["text_unk_share"].between(0.0, 1.0).all()
    # The reference texts use the tiny model's vocabulary, the shifted ones none of it. (With a
    # tokenizer that lost its vocabulary, every word is [UNK] on both sides: no shift to see.)
    vocab_known = ref["text_unk_share"].mean() < 0.5

    def metrics() -> str:
        text: str = client.get("/metrics").get_data(as_text=True)
        return text

    unknown = "zebra quartz nebula fjord kumquat saxophone glacier pixel walrus tundra".split()
    for _ in range(60):
        text = " ".join(rng.choice(unknown) for _ in range(rng.randint(30, 50)))
        assert client.post("/predict", json={"text": text}).status_code == 200
    _wait(lambda: f'infersight_drift_detected{{model="{MODEL}"}} 1.0' in metrics(), "drift_detected 1 in /metrics")

    # Drift can show before the last samples are drained; the count catches up within a tick.
    captured = f'infersight_drift_samples_captured_total{{model="{MODEL}"}} 100.0'
    _wait(lambda: captured in metrics(), "all 100 captured samples counted")
    body = metrics()
    assert f'infersight_drift_insufficient_data{{model="{MODEL}"}} 0.0' in body
    expected = ["text_tokens", "text_length_chars"] + (["text_unk_share"] if vocab_known else [])
    for feature in expected:
        pattern = rf'infersight_drift_feature_drifted{{[^}}]*feature="{feature}"[^}}]*}} 1.0'
        assert re.search(pattern, body), feature

    # The /drift pages, as served next to /metrics by the metrics server's WSGI app.
    rt = infersight.get_runtime()
    assert rt is not None
    app = rt.exposition.wsgi_app()

    def get(path: str) -> tuple[str, bytes]:
        status: list[str] = []
        body = b"".join(app({"PATH_INFO": path}, lambda s, h: status.append(s)))
        return status[0], body

    status, index = get("/drift")
    assert status == "200 OK" and b"<html" in index and MODEL.encode() in index
    page = monitor.pages.path_of(MODEL)
    _wait(lambda: len(get(page)[1]) > 100_000, "the evidently report")
    status, report = get(page)
    assert status == "200 OK" and b"<!DOCTYPE html>" in report[:200]
