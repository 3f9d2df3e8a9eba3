"""Every panel of the four dashboards has data from the real Prometheus scraping the real servers.

Traffic: the Flask example (normal load; drift on when sdk/infersight/drift exists) and the
multi-model example (realtime with large payloads, batch with concurrent clients so batches
form and requests queue), plus requests that fail: ``["not", "an", "object"]`` as the body
makes both apps raise (AttributeError), in the multi-model app inside its preprocess stage,
so the error panels (outcome="error", infersight_errors_total by stage) have data too.

Each panel query (grafana-dashboards/dashboards/*.json, variables at All, $__rate_interval
1m: tests/support/dashboards.py) runs as a range query over the test's traffic and must return
at least one non-NaN point, except the queries in ``ALLOWED_EMPTY``; those must still run
without error. The per-panel table is printed.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from tests.support.dashboards import load_dashboards, panel_queries, query_range, substitute_variables

from stack import http_post_json

from .live_stack import LiveStack

pytestmark = [pytest.mark.stack, pytest.mark.slow]  # real binaries, ~100 s for the set

# (dashboard file, metric in the query) -> why it may be empty here. Anything not listed
# must have data.
NO_GPU = "needs an NVIDIA GPU (NVML); this machine is CPU-only"
ALLOWED_EMPTY_GPU = {  # only applied when no server reports a GPU (infersight_gpu_up absent)
    ("infersight-gpu.json", m): NO_GPU
    for m in (
        "infersight_gpu_up",
        "infersight_gpu_profiling_mode",
        "infersight_gpu_utilization_ratio",
        "infersight_gpu_memory_utilization_ratio",
        "infersight_gpu_memory_used_bytes",
        "infersight_gpu_memory_total_bytes",
        "infersight_gpu_process_memory_used_bytes",
        "infersight_gpu_power_watts",
        "infersight_gpu_energy_joules_total",
        "infersight_gpu_temperature_celsius",
        "infersight_gpu_sm_clock_hertz",
        "infersight_gpu_memory_clock_hertz",
        "infersight_gpu_clock_throttle",
        "infersight_gpu_pcie_tx_bytes_per_second",
        "infersight_gpu_pcie_rx_bytes_per_second",
        "infersight_gpu_ecc_errors_total",
        "infersight_gpu_xid_errors_total",
        "infersight_gpu_sampler_errors_total",
        "infersight_gpu_sm_active_ratio",
        "infersight_gpu_sm_occupancy_ratio",
        "infersight_gpu_tensor_active_ratio",
        "infersight_gpu_dram_active_ratio",
        "infersight_gpu_fp16_active_ratio",
        "infersight_gpu_fp32_active_ratio",
        "infersight_gpu_fp64_active_ratio",
        "infersight_gpu_nvlink_tx_bytes_per_second",
        "infersight_gpu_nvlink_rx_bytes_per_second",
        "infersight_stage_gpu_busy_seconds",
        "infersight_stage_gpu_sm_active_ratio",
        "infersight_model_gpu_seconds_total",
        "infersight_gpu_compute_processes",
        "infersight_gpu_time_sliced",
        "infersight_gpu_process_sm_utilization_ratio",
        "infersight_gpu_torch_",
        "infersight_gpu_sampler_up",  # INFERSIGHT_GPU=auto: no sampler without a GPU
    )
}
# With a GPU (not run here: no GPU on this machine), some panels are still empty by design.
ALLOWED_EMPTY_WITH_GPU = {
    ("infersight-gpu.json", "infersight_gpu_xid_errors_total"): "no XID errors in a healthy run",
    ("infersight-gpu.json", "infersight_gpu_sampler_errors_total"): "NVML calls succeed",
    ("infersight-gpu.json", "infersight_gpu_nvlink_"): "a GPU without NVLink",
    # The examples run their models where transformers/torch put them: the CPU unless told.
    ("infersight-gpu.json", "infersight_stage_gpu_"): "the example models run on the CPU (no CUDA events)",
    ("infersight-gpu.json", "infersight_model_gpu_seconds_total"): "the example models run on the CPU",
    ("infersight-gpu.json", "infersight_gpu_torch_"): "the example models leave torch's CUDA allocator unused",
}
GPM_ONLY = (
    "infersight_gpu_sm_active_ratio",
    "infersight_gpu_sm_occupancy_ratio",
    "infersight_gpu_tensor_active_ratio",
    "infersight_gpu_dram_active_ratio",
    "infersight_gpu_fp16_active_ratio",
    "infersight_gpu_fp32_active_ratio",
    "infersight_gpu_fp64_active_ratio",
)
ALLOWED_EMPTY = {
    # Counters of things that do not happen in a healthy run, by design: infersight's own
    # swallowed errors, label values over the cardinality limit, failed drift runs.
    ("infersight-overview.json", "infersight_sdk_errors_total"): "no SDK-internal errors by design",
    ("infersight-overview.json", "infersight_label_overflow_total"): "no label over its cardinality limit",
    ("infersight-drift.json", "infersight_drift_errors_total"): "drift runs succeed",
    # The example servers call no other service; tests/test_layers.py covers outgoing calls.
    ("infersight-overview.json", "infersight_client_"): "the example servers make no outgoing calls",
    # No Triton in this stack; tests/e2e/test_triton_live.py runs one.
    ("infersight-overview.json", "nv_inference_"): "no Triton Inference Server in this stack",
}
DRIFT_METRICS = ("infersight_drift_", "infersight_input_tokens", "infersight_payload_size")


def _points(answer: dict[str, Any]) -> int:
    """Non-NaN points in a query_range answer."""
    return sum(1 for s in answer["data"]["result"] for _, v in s["values"] if not math.isnan(float(v)))


def _allowed(dashboard: str, expr: str, table: dict[tuple[str, str], str]) -> str | None:
    return next((why for (d, metric), why in table.items() if d == dashboard and metric in expr), None)


def test_every_panel_has_data(live: LiveStack) -> None:
    start = time.time()
    bad = ["not", "an", "object"]  # a JSON body that is not an object: AttributeError -> 500
    with (
        live.background_load(f"{live.multi.url}/predict/batch", max_s=12, rps=16, concurrency=6, seed=5) as batch,
        live.background_load(
            f"{live.multi.url}/predict/realtime", max_s=12, rps=4, concurrency=1, mode="large", large_kb=8, seed=6
        ) as realtime,
    ):
        normal = live.load(f"{live.sentiment.url}/predict", duration_s=12, rps=8, concurrency=2, seed=7)
        # Two bursts a few scrapes apart: a counter's first sample shows no increase, so
        # rate()/increase() need the series to exist before it grows.
        for burst in (1, 3):
            for url in (f"{live.multi.url}/predict/realtime", f"{live.sentiment.url}/predict"):
                for _ in range(burst):
                    assert http_post_json(url, bad, timeout=5)[0] == 500, url
            for _ in range(burst):  # streamed answers, for the time-to-first-byte panel
                status, text = http_post_json(f"{live.sentiment.url}/predict/stream", {"text": "fine"}, timeout=5)
                assert status == 200 and text.count("data: ") == 2, text
            time.sleep(3)
    for result in (normal, *batch, *realtime):
        assert result.requests and not result.errors, result.summary()

    # Wait (bounded) for what the last scrapes must have brought: errors by stage, batches,
    # and a drift verdict when drift is on.
    live.wait_query('infersight_errors_total{stage="preprocess"}', 20)
    live.wait_query("infersight_batch_size_bucket", 20)
    if live.drift:
        # A verdict needs a full reference and a full window of requests: keep a light load on
        # the sentiment server until the verdict is scraped (a slow box serves fewer requests).
        with live.background_load(f"{live.sentiment.url}/predict", max_s=40, rps=4, concurrency=1, seed=8):
            live.wait_query("infersight_drift_share_ratio", 40, "a drift verdict")
    time.sleep(2)  # one more scrape and rule evaluation after the last requests

    gpu = bool(live.query("infersight_gpu_up"))
    allowed = {**ALLOWED_EMPTY, **(ALLOWED_EMPTY_WITH_GPU if gpu else ALLOWED_EMPTY_GPU)}
    if gpu and not live.query('infersight_gpu_profiling_mode{mode="gpm"} == 1'):
        allowed.update({("infersight-gpu.json", m): "GPU without GPM (profiling counters)" for m in GPM_ONLY})
    if not live.drift:
        allowed.update({("infersight-drift.json", m): "sdk/infersight/drift not present" for m in DRIFT_METRICS})
    end = time.time()
    rows, failures = [], []
    for name, dashboard in load_dashboards().items():
        for title, expr in panel_queries(dashboard):
            promql = substitute_variables(expr)
            answer = query_range(live.prometheus.url, promql, start - 60, end, step="2s")
            if answer.get("status") != "success":
                failures.append(f"{name} / {title}: query failed: {answer.get('error')} ({promql})")
                rows.append((name, title, "ERROR", promql))
                continue
            points = _points(answer)
            why = _allowed(name, promql, allowed)
            if points:
                verdict = f"{len(answer['data']['result'])} series, {points} pts"
            elif why:
                verdict = f"empty (allowed: {why})"
            else:
                verdict = "EMPTY"
                failures.append(f"{name} / {title}: no data for {promql}")
            rows.append((name, title, verdict, promql))

    width = max(len(f"{d} / {t}") for d, t, _, _ in rows)
    table = "\n".join(f"{f'{d} / {t}':<{width}}  {v}" for d, t, v, _ in rows)
    print(f"\ndashboard panels ({len(rows)} queries, GPU {'present' if gpu else 'absent'}):\n{table}")
    live.notes["dashboards"] = {"queries": len(rows), "with_data": sum("pts" in r[2] for r in rows)}
    assert len(rows) > 40, "fewer panel queries than the dashboards have: is the generator output missing?"
    assert not failures, "\n".join(failures)
