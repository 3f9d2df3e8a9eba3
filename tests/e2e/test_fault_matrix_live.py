"""The fault matrix, live: each injected bottleneck must bring, within two minutes, an alert
through Alertmanager that names the model and the right stage or kind of wait, and an exemplar
whose trace (read back from the stack's trace backend) shows it.

One shared live stack (live_stack.py), faults one after another. Each fault has a model label
of its own on the matrix server (matrix_app.py: the tiny model under ``MATRIX_LABELS``), so no
fault sees another's 5 m window and nothing needs resetting between them; only the fault
switches (examples/faults.py) are process-wide, and each is switched off after its case.
The alert is InferenceSLOBreachByStage (prometheus-rules/attribution.rules.yaml, ``for:``
capped at live_stack.ALERT_FOR): a fresh Prometheus has no hour of history, so it names the
stage with the largest P99 and says "Waiting" when that stage's CPU time is under half its
wall time, and "GIL contention" when the GIL probe's P99 is over 5 ms.

Network delay: the matrix server relays ``/relay/<label>`` to itself through a delay proxy
(tests/support/netproxy.py) with an instrumented ``requests`` client; with the delay on, the
alert InferenceNetworkLatencyHigh (prometheus-rules/network.rules.yaml) names the layer
"network" and the target, the server's own P99 stays under its objective, and no alert names a
stage of that model.

Not here: a payload jump and a load spike need an hour of history for their "payload xN" /
"traffic xN" notes (promtool: tests/rules/attribution_test.yaml).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from infersight.conventions import ATTR, METRIC

from .live_stack import LOOPBACK, SENTIMENT_SLO_S, LiveStack
from .test_alerts_live import BREACH_ALERT, _notified

pytestmark = [pytest.mark.stack, pytest.mark.slow]

WITHIN_S = 120  # what the matrix promises: an alert naming the cause within two minutes


@dataclass(frozen=True)
class Fault:
    label: str  # the model label on the matrix server (live_stack.MATRIX_LABELS)
    switches: dict[str, Any]
    stage: str | None  # the stage the alert must name (None: any; the kind of wait says it)
    says: str | None  # text the alert's description must hold
    span_at_least_s: float  # the named stage's span in the exemplar's trace lasts this long
    load: dict[str, Any] = field(default_factory=dict)


FAULTS = [
    Fault(
        "fault-tokenizer",
        {"slow_tokenizer_ms_per_kb": 350},
        "preprocess",
        None,
        0.5,
        {"mode": "large", "large_kb": 2},
    ),
    Fault("fault-lock", {"lock_postprocess_ms": 100}, "postprocess", "Waiting", 0.1),
    Fault("fault-model", {"slow_model_ms": 700}, "model", None, 0.7),
    Fault("fault-gil", {"gil_hog": True}, None, "GIL contention", 0.1),
]


def _exemplar_trace(live: LiveStack, label: str, stage: str, since: float, at_least_s: float) -> tuple[str, float]:
    """An exemplar of the stage's histogram whose trace the sink holds, with the stage's span."""
    selector = f'{METRIC.STAGE_DURATION.name}_bucket{{model="{label}",stage="{stage}"}}'

    def find() -> tuple[str, float] | None:
        data = live.api("query_exemplars", query=selector, start=since, end=time.time() + 1)
        slow = sorted((e for s in data for e in s["exemplars"]), key=lambda e: -float(e["value"]))
        for ex in slow[:5]:  # the slowest: the fault's, not a fast one
            trace_id = ex["labels"].get("trace_id", "")
            stored = live.sink.trace(trace_id)  # the trace backend's query API
            for span in stored.spans if stored is not None else ():
                if span.name == stage and span.duration_s >= at_least_s:
                    return trace_id, span.duration_s
        return None

    found: tuple[str, float] = live_wait(find, 30, f"an exemplar trace of {selector} with a {stage} span")
    return found


def live_wait(check: Any, timeout: float, what: str) -> Any:
    import stack

    return stack.wait_until(check, timeout, interval=1.0, what=what)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.label for f in FAULTS])
def test_fault_is_named_by_an_alert_with_its_trace(live: LiveStack, fault: Fault) -> None:
    assert live.matrix is not None
    url = f"{live.matrix.url}/predict/{fault.label}"
    t0, since = time.monotonic(), time.time()
    live.matrix.set_faults(**fault.switches)
    notified = None
    try:
        with live.background_load(url, max_s=WITHIN_S + 10, rps=12, concurrency=8, seed=7, **fault.load) as result:
            while time.monotonic() - t0 < WITHIN_S:
                notified = _notified(live, BREACH_ALERT, model=fault.label)
                if notified:
                    break
                time.sleep(1)
            after_s = round(time.monotonic() - t0, 1)
            p99 = live.value(f'model:infersight_request_duration_seconds:p99_5m{{model="{fault.label}"}}')
    finally:
        live.matrix.set_faults()
    summary = result[0].summary() if result else "no load result"
    assert notified, f"{fault.label}: no {BREACH_ALERT} in {WITHIN_S} s (P99 {p99}, SLO {SENTIMENT_SLO_S}); {summary}"
    _, alert = notified
    stage, description = alert["labels"]["stage"], alert["annotations"]["description"]
    if fault.stage is not None:
        assert stage == fault.stage, f"{fault.label}: named {stage}: {description}"
    if fault.says is not None:
        assert fault.says in description, f"{fault.label}: {description}"
    assert fault.label in description
    trace_id, seconds = _exemplar_trace(live, fault.label, stage, since, fault.span_at_least_s)
    live.notes.setdefault("fault_matrix", {})[fault.label] = {
        "notified_after_s": after_s,
        "stage": stage,
        "description": description,
        "exemplar_trace": trace_id,
        "stage_span_s": round(seconds, 3),
        "load": summary,
    }
    print(f"\n{fault.label}: {live.notes['fault_matrix'][fault.label]}")


NETWORK_ALERT = "InferenceNetworkLatencyHigh"
DELAY_S, JITTER_S = 0.15, 0.05  # per crossing of the proxy


def test_network_delay_is_named_network_not_a_stage(live: LiveStack) -> None:
    assert live.matrix is not None and live.network_proxy is not None
    label, proxy = "fault-network", live.network_proxy
    url = f"{live.matrix.url}/relay/{label}"
    target, endpoint = f"{LOOPBACK}:{proxy.port}", f"/predict/{label}"
    t0, since = time.monotonic(), time.time()
    proxy.set_delay(DELAY_S, JITTER_S)
    notified = None
    try:
        with live.background_load(url, max_s=WITHIN_S + 10, rps=12, concurrency=8, seed=8) as result:
            while time.monotonic() - t0 < WITHIN_S:
                notified = _notified(live, NETWORK_ALERT, target=target, endpoint=endpoint)
                if notified:
                    break
                time.sleep(1)
            after_s = round(time.monotonic() - t0, 1)
            where = f'{{target="{target}",endpoint="{endpoint}"}}'
            client_p99 = live.value(f"target_endpoint:infersight_client_request_duration_seconds:p99_5m{where}")
            network_p99 = live.value(f"target_endpoint:infersight_client_network_seconds:p99_5m{where}")
            server_p99 = live.value(f'model:infersight_request_duration_seconds:p99_5m{{model="{label}"}}')
    finally:
        proxy.set_delay(0.0)
    summary = result[0].summary() if result else "no load result"
    figures = {"client_p99": client_p99, "network_p99": network_p99, "server_p99": server_p99}
    assert notified, f"no {NETWORK_ALERT} for {target}{endpoint} in {WITHIN_S} s: {figures}; {summary}"
    _, alert = notified
    assert alert["labels"]["layer"] == "network", alert
    assert "network" in alert["annotations"]["description"]
    # The server did not spend it: its own P99 is under the objective, and no stage is blamed.
    assert server_p99 is not None and server_p99 < SENTIMENT_SLO_S, figures
    assert network_p99 is not None and network_p99 > 2 * DELAY_S * 0.8, figures
    assert not _notified(live, BREACH_ALERT, model=label)

    # An exemplar of the network histogram leads to the CLIENT span that carries the network time.
    selector = f"{METRIC.CLIENT_NETWORK.name}_bucket{where}"

    def find() -> tuple[str, float] | None:
        data = live.api("query_exemplars", query=selector, start=since, end=time.time() + 1)
        slow = sorted((e for s in data for e in s["exemplars"]), key=lambda e: -float(e["value"]))
        for ex in slow[:5]:
            trace_id = ex["labels"].get("trace_id", "")
            stored = live.sink.trace(trace_id)
            for span in stored.spans if stored is not None else ():
                network = span.number(ATTR.CLIENT_NETWORK)
                if network is not None and network >= 2 * DELAY_S:
                    return trace_id, network
        return None

    trace_id, network_s = live_wait(find, 30, f"an exemplar trace of {selector} with its network time")
    live.notes.setdefault("fault_matrix", {})[label] = {
        "notified_after_s": after_s,
        **figures,
        "description": alert["annotations"]["description"],
        "exemplar_trace": trace_id,
        "client_span_network_s": round(network_s, 3),
        "load": summary,
    }
    print(f"\n{label}: {live.notes['fault_matrix'][label]}")
