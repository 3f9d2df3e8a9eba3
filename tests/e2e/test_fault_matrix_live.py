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

A payload jump and a load spike are named by notes that compare with the model's own past:
"payload xN" and "traffic xN" against an hour ago or, on a deployment younger than that (as
here), against the median of the history there is. Each has a model label of its own with
normal traffic before the fault:

* payload jump: on the matrix server (label fault-payload, whose tokenizer costs 150 ms per KiB
  all along), a minute of a few words a request, then the same rate with 4 KiB inputs; the
  alert names preprocess with "payload xN" (and no traffic note), and the exemplar's trace has
  the long preprocess span and the request body size on its server span;
* load spike: on the FastAPI example with a pool of 2 threads for its sync endpoint (label
  fault-spike, a model of 100 ms), 0.5 req/s from the stack's start (the traffic baseline
  takes 5 m rates only from a series' fifth minute on: run alone, the case waits for six),
  then about 40 req/s offered, more than the two threads serve: requests queue for a thread.
  The alert names outside_stages with "traffic xN ... requests queue for the server's
  threads", and the exemplar of the time outside the stages leads to a trace whose server span
  carries that time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from infersight.conventions import ATTR, METRIC

from .live_stack import LOOPBACK, SENTIMENT_SLO_S, SPIKE_LABEL, LiveStack
from .test_alerts_live import BREACH_ALERT, _notified

TIMES = "\N{MULTIPLICATION SIGN}"

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
    not_says: str | None = None  # text that would blame another fault


FAULTS = [
    Fault(
        "fault-tokenizer",
        {"slow_tokenizer_ms_per_kb": 350},
        "preprocess",
        None,
        0.5,
        {"mode": "large", "large_kb": 2},
        not_says="payload",  # long inputs all along: a slow tokenizer, not a payload jump
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
    if fault.not_says is not None:
        assert fault.not_says not in description, f"{fault.label}: {description}"
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
# Per crossing of the proxy. A round trip (two crossings, >= 0.5 s) puts the relay's trace over
# the collector's 500 ms "slow" policy, so Jaeger keeps it whole, not by the 10 % baseline.
DELAY_S, JITTER_S = 0.3, 0.05


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

    seen: list[Any] = []

    def find() -> tuple[str, float] | None:
        data = live.api("query_exemplars", query=selector, start=since, end=time.time() + 1)
        slow = sorted((e for s in data for e in s["exemplars"]), key=lambda e: -float(e["value"]))
        seen[:] = []
        for ex in slow[:5]:
            trace_id = ex["labels"].get("trace_id", "")
            stored = live.sink.trace(trace_id)
            networks = [span.number(ATTR.CLIENT_NETWORK) for span in (stored.spans if stored is not None else ())]
            seen.append((ex["value"], trace_id, stored is not None, networks))
            for network in networks:
                if network is not None and network >= 2 * DELAY_S:
                    return trace_id, network
        return None

    try:
        trace_id, network_s = live_wait(find, 30, f"an exemplar trace of {selector} with its network time")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; slowest exemplars (value, trace, stored, network on its spans): {seen}") from None
    live.notes.setdefault("fault_matrix", {})[label] = {
        "notified_after_s": after_s,
        **figures,
        "description": alert["annotations"]["description"],
        "exemplar_trace": trace_id,
        "client_span_network_s": round(network_s, 3),
        "load": summary,
    }
    print(f"\n{label}: {live.notes['fault_matrix'][label]}")


BASELINE_S = 60  # normal traffic on the fault's label before the fault: the notes' baseline


def _wait_notified(live: LiveStack, label: str, t0: float) -> tuple[dict[str, Any] | None, float]:
    """The first notification of the breach alert for ``label`` within WITHIN_S of ``t0``."""
    while time.monotonic() - t0 < WITHIN_S:
        notified = _notified(live, BREACH_ALERT, model=label)
        if notified:
            return notified[1], round(time.monotonic() - t0, 1)
        time.sleep(1)
    return None, round(time.monotonic() - t0, 1)


def _exemplar_span(live: LiveStack, selector: str, since: float, wanted: Any, what: str) -> tuple[str, dict[str, Any]]:
    """The slowest exemplars of ``selector`` since ``since``: one whose stored trace has a span
    for which ``wanted(span)`` returns figures."""
    seen: list[Any] = []

    def find() -> tuple[str, dict[str, Any]] | None:
        data = live.api("query_exemplars", query=selector, start=since, end=time.time() + 1)
        slow = sorted((e for s in data for e in s["exemplars"]), key=lambda e: -float(e["value"]))
        seen[:] = []
        for ex in slow[:5]:
            trace_id = ex["labels"].get("trace_id", "")
            stored = live.sink.trace(trace_id)
            seen.append((ex["value"], trace_id, stored is not None))
            for span in stored.spans if stored is not None else ():
                figures = wanted(span, stored)
                if figures:
                    return trace_id, figures
        return None

    try:
        found: tuple[str, dict[str, Any]] = live_wait(find, 30, what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; slowest exemplars (value, trace, stored): {seen}") from None
    return found


PAYLOAD_LABEL, PAYLOAD_KB, TOKENIZER_MS_PER_KB = "fault-payload", 4, 150


def test_payload_jump_is_named_with_its_payload_note(live: LiveStack) -> None:
    assert live.matrix is not None
    url = f"{live.matrix.url}/predict/{PAYLOAD_LABEL}"
    mode = ["normal"]
    # The server's tokenizer costs this per KiB all along: a few words cost ~1 ms, 4 KiB 600 ms.
    live.matrix.set_faults(slow_tokenizer_ms_per_kb=TOKENIZER_MS_PER_KB)
    notified, after_s = None, 0.0
    try:
        with live.background_load(
            url,
            max_s=BASELINE_S + WITHIN_S + 10,
            rps=4,
            concurrency=4,
            seed=9,
            mode=lambda: mode[0],
            large_kb=PAYLOAD_KB,
        ) as result:
            time.sleep(BASELINE_S)
            assert not _notified(live, BREACH_ALERT, model=PAYLOAD_LABEL), "alert before the payload jump"
            t0, since = time.monotonic(), time.time()
            mode[0] = "large"  # the fault: the same rate, 4 KiB inputs
            notified, after_s = _wait_notified(live, PAYLOAD_LABEL, t0)
            where = f'{{model="{PAYLOAD_LABEL}"}}'
            figures = {
                "p99": live.value(f"model:infersight_request_duration_seconds:p99_5m{where}"),
                "payload_ratio": live.value(f"model:infersight_payload_size_bytes:ratio_1h{where}"),
            }
    finally:
        live.matrix.set_faults()
    summary = result[0].summary() if result else "no load result"
    assert notified, f"{PAYLOAD_LABEL}: no {BREACH_ALERT} in {WITHIN_S} s: {figures}; {summary}"
    stage, description = notified["labels"]["stage"], notified["annotations"]["description"]
    assert stage == "preprocess", f"named {stage}: {description}"
    assert PAYLOAD_LABEL in description and f"payload {TIMES}" in description, description
    assert f"traffic {TIMES}" not in description, f"the rate did not change: {description}"

    def long_input(span: Any, stored: Any) -> dict[str, Any] | None:
        if span.name != "preprocess" or span.duration_s < 0.3:
            return None
        sizes = [s.number(ATTR.HTTP_REQUEST_BODY_SIZE) for s in stored.spans]
        body = max((b for b in sizes if b is not None), default=0.0)
        return {"preprocess_s": round(span.duration_s, 3), "request_body_bytes": body} if body >= 1024 else None

    selector = f'{METRIC.STAGE_DURATION.name}_bucket{{model="{PAYLOAD_LABEL}",stage="preprocess"}}'
    trace_id, shown = _exemplar_span(live, selector, since, long_input, "an exemplar trace with a long input")
    live.notes.setdefault("fault_matrix", {})[PAYLOAD_LABEL] = {
        "notified_after_s": after_s,
        "stage": stage,
        "description": description,
        **figures,
        "exemplar_trace": trace_id,
        **shown,
        "load": summary,
    }
    print(f"\n{PAYLOAD_LABEL}: {live.notes['fault_matrix'][PAYLOAD_LABEL]}")


# The traffic baseline takes 5 m rates once the series is 5 m old; a minute of those, then the spike.
SPIKE_SETTLED_S = 6 * 60


@pytest.mark.timeout(SPIKE_SETTLED_S + 300)  # run alone, it first waits for the stack's six minutes
def test_load_spike_is_named_queueing_outside_the_stages(live: LiveStack) -> None:
    assert live.spike is not None
    url = f"{live.spike.url}/predict"
    where = f'{{model="{SPIKE_LABEL}"}}'
    # The spike server has had 0.5 req/s since the stack started; in a full run the other
    # tests took longer than this, run alone this case waits for it.
    time.sleep(max(0.0, live.spike_baseline_since + SPIKE_SETTLED_S - time.monotonic()))
    assert not _notified(live, BREACH_ALERT, model=SPIKE_LABEL), "alert before the spike"
    t0, since = time.monotonic(), time.time()
    # The fault: about 80x the requests, more than the two threads serve.
    with live.background_load(url, max_s=WITHIN_S + 10, rps=40, concurrency=24, seed=11) as spike:
        notified, after_s = _wait_notified(live, SPIKE_LABEL, t0)
        figures = {
            "p99": live.value(f"model:infersight_request_duration_seconds:p99_5m{where}"),
            "outside_stages_p99": live.value(
                f'model_stage:infersight_stage_duration_seconds:p99_layers_5m{{model="{SPIKE_LABEL}",'
                'stage="outside_stages"}'
            ),
            "model_p99": live.value(
                f'model_stage:infersight_stage_duration_seconds:p99_5m{{model="{SPIKE_LABEL}",stage="model"}}'
            ),
            "traffic_ratio": live.value(f"model:infersight_request_duration_seconds_count:ratio_1h{where}"),
        }
    summary = spike[0].summary() if spike else "no load result"
    assert notified, f"{SPIKE_LABEL}: no {BREACH_ALERT} in {WITHIN_S} s: {figures}; {summary}"
    stage, description = notified["labels"]["stage"], notified["annotations"]["description"]
    assert stage == "outside_stages", f"named {stage}: {description}; {figures}"
    assert f"traffic {TIMES}" in description and "requests queue for the server's threads" in description, description
    # What grew is the wait outside the stages, not the model.
    assert figures["outside_stages_p99"] is not None and figures["model_p99"] is not None, figures
    assert figures["outside_stages_p99"] > 2 * figures["model_p99"], figures

    def queued(span: Any, stored: Any) -> dict[str, Any] | None:
        outside = span.number(ATTR.OUTSIDE_STAGES_SECONDS)
        if outside is None or outside < 0.3:
            return None
        stages = {
            s.name: round(s.duration_s, 3) for s in stored.spans if s.name in ("preprocess", "model", "postprocess")
        }
        return {"server_span_s": round(span.duration_s, 3), "outside_stages_s": round(outside, 3), "stages_s": stages}

    selector = f"{METRIC.OUTSIDE_STAGES.name}_bucket{where}"
    trace_id, shown = _exemplar_span(live, selector, since, queued, "an exemplar trace that queued outside the stages")
    live.notes.setdefault("fault_matrix", {})[SPIKE_LABEL] = {
        "notified_after_s": after_s,
        "stage": stage,
        "description": description,
        **figures,
        "exemplar_trace": trace_id,
        **shown,
        "load": summary,
    }
    print(f"\n{SPIKE_LABEL}: {live.notes['fault_matrix'][SPIKE_LABEL]}")
