"""The example servers, run as users run them (a subprocess, ``import infersight.auto`` reading
the environment), over real HTTP on loopback: stage histograms, exemplars, faults, batching."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from infersight.conventions import METRIC, STAGES
from stack import free_port

ROOT = Path(__file__).resolve().parent.parent
SENTIMENT = ROOT / "examples" / "flask_sentiment" / "app.py"
MULTI = ROOT / "examples" / "multi_model" / "app.py"
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


@contextlib.contextmanager
def serve_example(app: Path, model_dir: Path, workdir: Path, **env: str) -> Iterator[str]:
    """Run an example app on a free loopback port; yield its base URL; always stop it."""
    port = free_port()
    full_env = {
        **os.environ,
        "MODEL": str(model_dir),
        "OTEL_TRACES_EXPORTER": "none",
        "INFERSIGHT_GPU": "off",
        "OMP_NUM_THREADS": "1",
        "INFERSIGHT_DEMO_FAULTS": str(workdir / "faults.json"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        **env,  # may override the defaults above (INFERSIGHT_GPU for a fake GPU)
    }
    log = workdir / f"{app.parent.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(app), "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"{app.name} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < end, f"{app.name} did not answer:\n{log.read_text()[-3000:]}"
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def scrape(url: str) -> dict[str, Any]:
    """OpenMetrics families by name, as Prometheus would read them (exemplars included)."""
    time.sleep(0.4)  # the SDK flushes records every 0.1 s
    resp = requests.get(f"{url}/metrics", headers=OPENMETRICS, timeout=5)
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def samples(families: dict[str, Any], spec: Any, suffix: str, **labels: str) -> list[Any]:
    family = families.get(spec.name)
    assert family is not None, f"{spec.name} missing; have {sorted(families)}"
    return [
        s
        for s in family.samples
        if s.name == spec.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(families: dict[str, Any], spec: Any, suffix: str = "", **labels: str) -> float:
    found = samples(families, spec, suffix, **labels)
    assert found, f"no {spec.name}{suffix} with {labels}"
    return sum(s.value for s in found)


@pytest.fixture(scope="module")
def sentiment(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("sentiment")
    models = json.dumps({"tiny-sentiment": {"version": "3", "slo_p99_seconds": 0.1}})
    with serve_example(SENTIMENT, tiny_model_dir, workdir, INFERSIGHT_MODELS=models) as url:
        yield url, workdir


def test_sentiment_one_line_gives_request_and_stage_histograms_with_exemplars(sentiment: tuple[str, Path]) -> None:
    url, _ = sentiment
    before = scrape(url)
    n0 = (
        value(before, METRIC.REQUEST_DURATION, "_count", model="tiny-sentiment")
        if samples(before, METRIC.REQUEST_DURATION, "_count", model="tiny-sentiment")
        else 0.0
    )
    labels = set()
    for text in ("great excellent movie", "awful terrible service", "the food was fine", "bad slow server"):
        r = requests.post(f"{url}/predict", json={"text": text}, timeout=10)
        assert r.status_code == 200, r.text
        assert 0.0 <= r.json()["score"] <= 1.0
        labels.add(r.json()["label"])
    assert labels <= {"POSITIVE", "NEGATIVE"}
    assert requests.post(f"{url}/predict", json={"nope": 1}, timeout=10).status_code == 400

    fams = scrape(url)
    req = value(fams, METRIC.REQUEST_DURATION, "_count", model="tiny-sentiment", version="3", outcome="success")
    assert req - n0 == 4
    for stage in STAGES:
        assert value(fams, METRIC.STAGE_DURATION, "_count", model="tiny-sentiment", stage=stage) >= 4, stage
    # Exemplars: trace ids on latency buckets, with spans not exported (OTEL_TRACES_EXPORTER=none).
    exemplars = [
        s.exemplar
        for s in samples(fams, METRIC.REQUEST_DURATION, "_bucket", model="tiny-sentiment")
        if s.exemplar is not None
    ]
    assert exemplars, "no exemplars on the request histogram"
    assert all(len(e.labels["trace_id"]) == 32 for e in exemplars)
    stage_ex = [
        s for s in samples(fams, METRIC.STAGE_DURATION, "_bucket", model="tiny-sentiment") if s.exemplar is not None
    ]
    assert {s.labels["stage"] for s in stage_ex} == set(STAGES)
    assert value(fams, METRIC.MODEL_SLO_P99, model="tiny-sentiment") == pytest.approx(0.1)
    assert value(fams, METRIC.MODEL_LOAD_DURATION, model="tiny-sentiment") > 0
    # The bad request is an outcome of its own, not a 5xx error.
    assert not samples(fams, METRIC.REQUEST_DURATION, "_count", model="tiny-sentiment", outcome="error")


def _stage_sum(url: str, stage: str) -> tuple[float, float]:
    fams = scrape(url)
    return (
        value(fams, METRIC.STAGE_DURATION, "_sum", model="tiny-sentiment", stage=stage),
        value(fams, METRIC.STAGE_DURATION, "_count", model="tiny-sentiment", stage=stage),
    )


def test_slow_postprocess_fault_lands_in_the_postprocess_stage(sentiment: tuple[str, Path]) -> None:
    url, _ = sentiment
    r = requests.post(f"{url}/admin/faults", json={"slow_postprocess_ms": 80}, timeout=5)
    assert r.status_code == 200 and r.json()["slow_postprocess_ms"] == 80
    try:
        post0, n0 = _stage_sum(url, "postprocess")
        model0, _ = _stage_sum(url, "model")
        for _ in range(3):
            assert requests.post(f"{url}/predict", json={"text": "good day"}, timeout=10).status_code == 200
        post1, n1 = _stage_sum(url, "postprocess")
        model1, _ = _stage_sum(url, "model")
    finally:
        requests.post(f"{url}/admin/faults", json={}, timeout=5)
    assert n1 - n0 == 3
    assert (post1 - post0) / 3 >= 0.08
    assert (model1 - model0) / 3 < 0.08  # the delay is not charged to the model stage
    assert requests.post(f"{url}/admin/faults", json={"slow_gpu_ms": 1}, timeout=5).status_code == 400


def test_fault_file_is_picked_up_while_running_and_cold_start_reloads(sentiment: tuple[str, Path]) -> None:
    url, workdir = sentiment
    sys.path.insert(0, str(ROOT / "examples"))
    import faults

    load0 = value(scrape(url), METRIC.MODEL_LOAD_DURATION, model="tiny-sentiment")
    faults.write(workdir / "faults.json", cold_start=True, slow_preprocess_ms=50)
    try:
        time.sleep(1.2)  # the file is re-read at most once a second
        pre0, _ = _stage_sum(url, "preprocess")
        assert requests.post(f"{url}/predict", json={"text": "nice"}, timeout=30).status_code == 200
        assert requests.post(f"{url}/predict", json={"text": "nice"}, timeout=30).status_code == 200
        pre1, _ = _stage_sum(url, "preprocess")
        load1 = value(scrape(url), METRIC.MODEL_LOAD_DURATION, model="tiny-sentiment")
    finally:
        faults.write(workdir / "faults.json")
        time.sleep(1.2)
    assert (pre1 - pre0) / 2 >= 0.05
    assert load1 != load0, "cold start should have reloaded the model (a new load time)"


def test_multi_model_batcher_records_batch_size_and_queue_wait(tiny_model_dir: Path, tmp_path: Path) -> None:
    with serve_example(MULTI, tiny_model_dir, tmp_path) as url:
        results: list[int] = []

        def call(path: str) -> None:
            results.append(requests.post(f"{url}{path}", json={"text": "good great"}, timeout=30).status_code)

        threads = [threading.Thread(target=call, args=("/predict/batch",)) for _ in range(12)]
        threads += [threading.Thread(target=call, args=("/predict/realtime",)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results.count(200) == 15, results
        fams = scrape(url)
    assert value(fams, METRIC.BATCH_SIZE, "_sum", model="batch") == 12
    batches = value(fams, METRIC.BATCH_SIZE, "_count", model="batch")
    assert 1 <= batches < 12, "12 concurrent requests should share batches"
    assert value(fams, METRIC.QUEUE_WAIT, "_count", model="batch") == 12
    assert value(fams, METRIC.QUEUE_WAIT, "_sum", model="batch") > 0
    assert not samples(fams, METRIC.QUEUE_WAIT, "_count", model="realtime")
    for model, n in (("batch", 12), ("realtime", 3)):
        assert value(fams, METRIC.REQUEST_DURATION, "_count", model=model, outcome="success") == n
        for stage in STAGES:
            assert value(fams, METRIC.STAGE_DURATION, "_count", model=model, stage=stage) == n, (model, stage)
    assert value(fams, METRIC.MODEL_SLO_P99, model="realtime") == pytest.approx(0.1)
    assert value(fams, METRIC.MODEL_SLO_P99, model="batch") == pytest.approx(2.0)
    assert value(fams, METRIC.MODEL_LOAD_DURATION, model="batch") > 0


def test_load_generator_large_payloads_and_input_shift(sentiment: tuple[str, Path]) -> None:
    url, _ = sentiment
    sys.path.insert(0, str(ROOT / "examples" / "load"))
    import random

    import http_load

    rng = random.Random(1)
    normal = {w for _ in range(50) for w in http_load.make_text("normal", rng).split()}
    shifted = [http_load.make_text("shift", rng).split() for _ in range(20)]
    assert all(len(words) >= 60 for words in shifted)
    assert set().union(*shifted) - normal, "shifted input should bring unseen words"

    before = scrape(url)
    big0 = value(before, METRIC.PAYLOAD_SIZE, "_count", model="tiny-sentiment", direction="request") - value(
        before, METRIC.PAYLOAD_SIZE, "_bucket", model="tiny-sentiment", direction="request", le="65536.0"
    )
    result = http_load.run(f"{url}/predict", duration_s=1.5, rps=6, concurrency=2, mode="large", large_kb=80)
    assert result.requests >= 4 and result.errors == 0, result.summary()
    assert result.quantile(0.5) <= result.quantile(0.99)
    after = scrape(url)
    big1 = value(after, METRIC.PAYLOAD_SIZE, "_count", model="tiny-sentiment", direction="request") - value(
        after, METRIC.PAYLOAD_SIZE, "_bucket", model="tiny-sentiment", direction="request", le="65536.0"
    )
    assert big1 - big0 == result.requests  # every large body landed above the 64 KiB bucket


FASTAPI_SENTIMENT = ROOT / "examples" / "fastapi_sentiment" / "app.py"


@pytest.mark.parametrize("app", [SENTIMENT, FASTAPI_SENTIMENT], ids=["flask", "fastapi"])
def test_sentiment_twins_stream_with_time_to_first_byte(app: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The Flask server and its FastAPI twin (under uvicorn) get the same: templated endpoints,
    stage histograms, exemplars, and a time-to-first-byte histogram for the streamed route."""
    models = json.dumps({"tiny-sentiment": {"version": "3", "slo_p99_seconds": 0.1}})
    with serve_example(app, tiny_model_dir, tmp_path, INFERSIGHT_MODELS=models) as url:
        for text in ("great excellent movie", "awful terrible service"):
            r = requests.post(f"{url}/predict", json={"text": text}, timeout=10)
            assert r.status_code == 200 and r.json()["label"] in {"POSITIVE", "NEGATIVE"}, r.text
        streamed = requests.post(f"{url}/predict/stream", json={"text": "fine"}, timeout=10)
        assert streamed.text.count("data: ") == 2
        fams = scrape(url)
    ok = {"model": "tiny-sentiment", "version": "3", "outcome": "success"}
    assert value(fams, METRIC.REQUEST_DURATION, "_count", endpoint="/predict", **ok) == 2
    assert value(fams, METRIC.REQUEST_DURATION, "_count", endpoint="/predict/stream", **ok) == 1
    assert value(fams, METRIC.TIME_TO_FIRST_BYTE, "_count", endpoint="/predict/stream") == 1
    for stage in STAGES:
        assert value(fams, METRIC.STAGE_DURATION, "_count", model="tiny-sentiment", stage=stage) == 3, stage
    exemplars = [s for s in samples(fams, METRIC.REQUEST_DURATION, "_bucket", endpoint="/predict") if s.exemplar]
    assert exemplars and all(len(s.exemplar.labels["trace_id"]) == 32 for s in exemplars)
    stage_ex = [s for s in samples(fams, METRIC.STAGE_DURATION, "_bucket", model="tiny-sentiment") if s.exemplar]
    assert {s.labels["stage"] for s in stage_ex} == set(STAGES)
