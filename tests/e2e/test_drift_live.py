"""Drift end to end: shifted inputs flip infersight_drift_detected and fire DriftDetected.

The Flask example runs with INFERSIGHT_DRIFT=true, a 4 s interval and a 40-sample reference
and window (live_stack.DRIFT_ENV). Normal load (examples/load/http_load.py) first, until
Prometheus shows a verdict of no drift; then ``--mode shift`` (long texts of words the model
has never seen) until the gauge reads 1 and the alert of prometheus-rules/drift.rules.yaml
fires in Prometheus and reaches the webhook through Alertmanager. The test copy of the rules
cuts its ``for: 30m`` to 10 s (live_stack.ALERT_FOR_OVERRIDES): like production, longer than
one drift run, so a single noisy 40-sample window does not fire it.
"""

from __future__ import annotations

import time

import pytest

from .live_stack import LiveStack

pytestmark = [pytest.mark.stack, pytest.mark.slow]  # real binaries, ~100 s for the set

ALERT = "DriftDetected"


def test_shifted_inputs_fire_the_drift_alert(live: LiveStack) -> None:
    if not live.drift:
        pytest.skip("sdk/infersight/drift is not in this checkout: the drift monitor is not built yet")
    model, url = live.model, f"{live.sentiment.url}/predict"
    detected = f'max by (model) (infersight_drift_detected{{model="{model}"}})'
    verdict = f'infersight_drift_insufficient_data{{model="{model}"}} == 0'

    # 1. A reference and a normal window: a verdict of "no drift" (only after a fresh run).
    with live.background_load(url, max_s=60, rps=10, concurrency=2, seed=8):
        t0 = time.time()
        live.wait_query(
            f"{detected} == 0 and on (model) ({verdict}) and on (model) "
            f'infersight_drift_last_run_timestamp_seconds{{model="{model}"}} > {t0}',
            60,
            "a no-drift verdict on normal traffic",
        )
        time.sleep(1.5)  # one rule evaluation after the verdict
        assert not [a for a in live.alerts(ALERT) if a["labels"].get("model") == model], "drift alert on normal traffic"
    share_normal = live.value(f'infersight_drift_share_ratio{{model="{model}"}}')

    # 2. Shifted inputs: the verdict flips and the alert fires.
    t_shift = time.monotonic()
    seen = len(live.webhook.snapshot())  # only notifications from now on count
    timings: dict[str, float] = {}
    with live.background_load(url, max_s=90, rps=10, concurrency=2, mode="shift", seed=9) as shifted:
        live.wait_query(f"{detected} == 1", 60, "infersight_drift_detected == 1 after the shift")
        timings["gauge"] = round(time.monotonic() - t_shift, 1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            firing = [a for a in live.alerts(ALERT) if a["labels"].get("model") == model]
            if firing and "alert" not in timings:
                timings["alert"] = round(time.monotonic() - t_shift, 1)
            notified = [
                a
                for _, body in live.webhook.snapshot()[seen:]
                for a in body.get("alerts", [])
                if a["labels"].get("alertname") == ALERT
                and a["labels"].get("model") == model
                and a["status"] == "firing"
            ]
            if notified:
                timings["webhook"] = round(time.monotonic() - t_shift, 1)
                break
            time.sleep(0.5)
    assert shifted and shifted[0].requests and not shifted[0].errors, shifted
    assert "alert" in timings, f"{ALERT} not firing in Prometheus 30 s after the gauge flipped"
    assert "webhook" in timings, f"{ALERT} did not reach the webhook: {live.webhook.snapshot()}"
    share = live.value(f'infersight_drift_share_ratio{{model="{model}"}}')
    assert share is not None and share_normal is not None and share > share_normal
    scores = {
        r["metric"].get("feature", "?"): round(float(r["value"][1]), 3)
        for r in live.query(f'max by (feature) (infersight_drift_feature_drifted{{model="{model}"}})')
    }
    live.notes["drift"] = {
        "share_normal": share_normal,
        "share_shifted": share,
        "after_shift_s": timings,
        "features_drifted": scores,
    }
    print(f"\ndrift: {live.notes['drift']}")
