"""Synthetic streams through the monitor: verdicts, metrics, references and their persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from infersight.drift import is_drifted

from .conftest import Feed, Harness

M = "infersight_"


def test_shifted_stream_is_flagged_and_same_distribution_is_not(harness: Harness, feed: Feed) -> None:
    mon = harness.monitor()
    for model in ("same", "shifted"):
        mon.declare(model, text=["query"])
        feed(mon, model, 200, seed=1)  # the first 200 samples become the reference
    mon.collect()
    feed(mon, "same", 200, seed=2)
    feed(mon, "shifted", 200, seed=2, shifted=True)
    results = mon.run_once()

    same, shifted = results["same"], results["shifted"]
    assert same is not None and shifted is not None
    assert harness.value(M + "drift_detected", model="shifted") == 1.0
    assert harness.value(M + "drift_detected", model="same") == 0.0
    assert shifted.share >= 0.5 > same.share
    drifted = {f.feature for f in shifted.features if f.drifted}
    # numeric, categorical, text-derived and prediction features all moved; age did not.
    assert {"amount", "country", "query_length_chars", "query_tokens", "prediction_label"} <= drifted
    assert "age" not in drifted
    assert harness.value(M + "drift_share_ratio", model="shifted") == pytest.approx(shifted.share)
    assert harness.value(M + "drift_insufficient_data", model="shifted") == 0.0
    assert harness.value(M + "drift_window_samples", model="shifted") == 200.0
    assert harness.value(M + "drift_samples_captured_total", model="shifted") == 400.0
    assert (harness.value(M + "drift_last_run_timestamp_seconds", model="same") or 0) > 0
    assert (harness.value(M + "drift_run_duration_seconds", model="same") or 0) > 0
    # evidently's own share agrees with the normalised per-feature verdicts.
    assert shifted.evidently_share == pytest.approx(shifted.share)
    assert same.evidently_share == pytest.approx(same.share)


def test_exported_verdicts_follow_each_methods_direction(harness: Harness, feed: Feed) -> None:
    """Over 1000 reference rows evidently switches numeric columns to Wasserstein distance (drift
    when high); below it uses K-S p-values (drift when low). 1 means drifted for both."""
    mon = harness.monitor(drift_reference_size=1100, drift_window=1100)
    mon.declare("big", text=["query"])
    feed(mon, "big", 1100, seed=3)
    mon.collect()
    feed(mon, "big", 1100, seed=4, shifted=True)
    mon.collect()
    mon2 = harness.monitor()
    mon2.declare("small", text=["query"])
    feed(mon2, "small", 200, seed=3)
    mon2.collect()
    feed(mon2, "small", 200, seed=4, shifted=True)
    big = mon.run_once()["big"]
    small_result = mon2.run_once()["small"]
    assert big is not None and small_result is not None
    by_method = {}
    for result in (big, small_result):
        amount = next(f for f in result.features if f.feature == "amount")
        by_method[amount.method] = amount
        assert amount.drifted
        assert is_drifted(amount.method, amount.score, amount.threshold)
    wasserstein = by_method["Wasserstein distance (normed)"]
    ks = by_method["K-S p_value"]
    assert wasserstein.score >= wasserstein.threshold  # a distance above its threshold
    assert ks.score < ks.threshold  # a p-value below its threshold
    # The gauges carry the raw statistic and the normalised verdict side by side.
    assert harness.value(M + "drift_score", model="small", feature="amount", method="K-S p_value") == pytest.approx(
        ks.score
    )
    assert harness.value(M + "drift_feature_drifted", model="small", feature="amount", method="K-S p_value") == 1.0
    age = next(f for f in small_result.features if f.feature == "age")
    assert harness.value(M + "drift_feature_drifted", model="small", feature="age", method=age.method) == 0.0


def test_reference_survives_a_restart(harness: Harness, feed: Feed, tmp_path: Path) -> None:
    first = harness.monitor()
    first.declare("m", text=["query"])
    feed(first, "m", 200, seed=5)
    first.run_once()
    saved = first.reference("m")
    assert saved is not None and len(saved) == 200
    first.stop()
    assert list((tmp_path / "drift").glob("*/reference.parquet"))

    second = harness.monitor()  # same drift_dir: a restarted process
    second.declare("m", text=["query"])
    feed(second, "m", 200, seed=6, shifted=True)
    result = second.run_once()["m"]
    loaded = second.reference("m")
    assert loaded is not None
    pd.testing.assert_frame_equal(loaded.reset_index(drop=True), saved.reset_index(drop=True), check_like=True)
    # Had the shifted samples become the reference, nothing would drift.
    assert result is not None and result.detected
    assert harness.value(M + "drift_detected", model="m") == 1.0


def _reference_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = "good bad movie service fast slow the a was very".split()
    return pd.DataFrame(
        {
            "amount": rng.normal(100.0, 20.0, n),
            "age": rng.integers(18, 80, n),
            "country": rng.choice(["fr", "de", "us"], n),
            "query": [" ".join(rng.choice(words, int(rng.integers(3, 8)))) for _ in range(n)],
            "prediction_label": rng.choice(["yes", "no"], n),
            "prediction_score": rng.uniform(0.5, 1.0, n),
        }
    )


@pytest.mark.parametrize("form", ["dataframe", "rows", "csv", "parquet"])
def test_set_reference_from_each_source(harness: Harness, feed: Feed, tmp_path: Path, form: str) -> None:
    frame = _reference_frame(150, seed=7)
    data: object = frame
    if form == "rows":
        data = frame.to_dict(orient="records")
    elif form == "csv":
        data = tmp_path / "ref.csv"
        frame.to_csv(data, index=False)
    elif form == "parquet":
        data = str(tmp_path / "ref.parquet")
        frame.to_parquet(data)
    mon = harness.monitor()
    mon.declare("m", text=["query"])
    mon.set_reference("m", data)
    feed(mon, "m", 150, seed=8, shifted=True)
    result = mon.run_once()["m"]
    ref = mon.reference("m")
    assert ref is not None and len(ref) == 150
    assert {"amount", "country", "query_length_chars", "query_tokens", "prediction_score"} <= set(ref)
    assert result is not None and result.detected
    # The given reference is saved too, and wins over collecting the first samples.
    assert list((tmp_path / "drift").glob("*/reference.parquet"))


def test_set_reference_same_distribution_is_no_drift(harness: Harness, feed: Feed) -> None:
    mon = harness.monitor()
    mon.declare("m", text=["query"])
    mon.set_reference("m", _reference_frame(300, seed=9))
    feed(mon, "m", 200, seed=10)
    result = mon.run_once()["m"]
    assert result is not None and not result.detected
    assert harness.value(M + "drift_detected", model="m") == 0.0


def test_reset_reference_collects_a_new_one(harness: Harness, feed: Feed) -> None:
    mon = harness.monitor()
    feed(mon, "m", 200, seed=11)
    mon.collect()
    mon.reset_reference("m")
    feed(mon, "m", 200, seed=12, shifted=True)
    result = mon.run_once()["m"]
    ref = mon.reference("m")
    assert ref is not None and ref["amount"].mean() > 120  # the shifted samples
    assert result is not None


def test_report_pages_are_served_and_removed_on_stop(harness: Harness, feed: Feed, tmp_path: Path) -> None:
    mon = harness.monitor(html=True)
    mon.start()
    try:
        feed(mon, "team/model:1", 200, seed=13)
        mon.collect()
        feed(mon, "team/model:1", 200, seed=14, shifted=True)
        mon.run_once()
        content_type, index = harness.exposition.pages["/drift"]()
        assert content_type.startswith("text/html")
        text = index.decode()
        assert "team/model:1" in text and "DRIFT" in text
        page = mon.pages.path_of("team/model:1")
        assert f'href="{page}"' in text and "/" not in page[len("/drift/") :]
        _, report = harness.exposition.pages[page]()
        assert report.lstrip().startswith(b"<!DOCTYPE html>") and len(report) > 100_000
        assert list((tmp_path / "drift").glob("*/report.html"))
        # The standalone metrics server (non-Flask apps) serves the same pages.
        app = harness.exposition.wsgi_app()
        statuses: list[str] = []
        body = b"".join(app({"PATH_INFO": "/drift"}, lambda s, h: statuses.append(s)))
        assert statuses == ["200 OK"] and b"team/model:1" in body
    finally:
        mon.stop()
    assert "/drift" not in harness.exposition.pages and page not in harness.exposition.pages
