"""GPU counters on `model` stage spans, CUDA event timing and the per-stage GPU histograms."""

from __future__ import annotations

import gc
import re
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

import infersight
from infersight import _errors
from infersight._records import StageRecord
from infersight.config import Config
from infersight.conventions import ATTR, METRIC
from infersight.gpu.sampler import Sampler
from infersight.gpu.spans import SpanCounters
from infersight.gpu.testing import GPM_SM_UTIL, FakeDevice, FakeNVML, use_fake_nvml
from infersight.testing import Captured, capture

StartGpu = Callable[..., Any]
SAMPLER_PERIOD_S = 0.1  # GPM needs samples >= 100 ms apart
LONG_STAGE_S = 0.12


def model_span(t: Captured) -> Any:
    spans = t.spans("model")
    assert len(spans) == 1
    return spans[0]


def warm_sampler(sampler: Sampler) -> None:
    """A second tick 100 ms after the first, so the ring holds a GPM delta."""
    time.sleep(SAMPLER_PERIOD_S)
    sampler.sample_once()


def test_long_stage_gets_gpm_delta_over_the_span(
    gpu_telemetry: StartGpu, fake: FakeNVML, current_sampler: Callable[[], Sampler], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a process without torch, also after a real-GPU test initialised CUDA in this one.
    monkeypatch.setitem(sys.modules, "torch", None)
    with gpu_telemetry() as t:
        warm_sampler(current_sampler())
        with infersight.request(model="ranker"), infersight.model():
            time.sleep(LONG_STAGE_S)
            fake.devices[0].gpm_values[GPM_SM_UTIL] = 90.0  # the span's own activity
        attrs = model_span(t).attributes
        assert attrs[ATTR.GPU_COUNTER_SOURCE] == "gpm_delta"
        assert attrs[ATTR.GPU_PREFIX + "sm_active"] == 0.9  # not the sampler's 0.4
        assert attrs[ATTR.GPU_PREFIX + "tensor_active"] == 0.3
        assert attrs[ATTR.GPU_PREFIX + "dram_active"] == 0.2
        assert attrs[ATTR.GPU_PREFIX + "utilization"] == 0.5  # NVML, from the sampler
        assert attrs[ATTR.GPU_UUID] == fake.devices[0].uuid
        labels = {"model": "ranker", "stage": "model"}
        assert t.value(METRIC.STAGE_GPU_SM_ACTIVE.name + "_count", **labels) == 1.0
        assert t.value(METRIC.STAGE_GPU_SM_ACTIVE.name + "_sum", **labels) == 0.9
        # No CUDA events without torch CUDA: no busy time, no wall time claimed.
        assert ATTR.GPU_BUSY_SECONDS not in attrs
        assert t.value(METRIC.STAGE_GPU_BUSY.name + "_count", **labels) is None
        assert all(i >= 100_000_000 for i in fake.gpm_intervals_ns)


def test_short_stage_gets_the_sampler_window(
    gpu_telemetry: StartGpu, fake: FakeNVML, current_sampler: Callable[[], Sampler]
) -> None:
    with gpu_telemetry() as t:
        warm_sampler(current_sampler())
        fake.devices[0].gpm_values[GPM_SM_UTIL] = 90.0  # seen by snapshots, not by the sampler
        with infersight.request(model="ranker"), infersight.model():
            pass
        attrs = model_span(t).attributes
        assert attrs[ATTR.GPU_COUNTER_SOURCE] == "sampler_window"
        assert attrs[ATTR.GPU_PREFIX + "sm_active"] == 0.4
        assert attrs[ATTR.GPU_UUID] == fake.devices[0].uuid
        # The snapshot samples went back to the pool: nothing held after the span.
        pool = current_sampler().pool
        assert pool._out == 0


def test_no_nvml_call_on_the_request_path_by_default(fake: FakeNVML) -> None:
    # Default settings (snapshots off), not the fixture's.
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0) as t:
        before = fake.calls.copy()
        with infersight.request(model="m"), infersight.model():
            pass
        t.flush()  # enrich too reads only the sampler's memory
        assert fake.calls == before
        assert model_span(t).attributes[ATTR.GPU_COUNTER_SOURCE] == "sampler_window"


def test_snapshots_make_exactly_two_gpm_sample_calls_on_the_request_thread(
    gpu_telemetry: StartGpu, fake: FakeNVML
) -> None:
    with gpu_telemetry() as t:
        me = threading.get_ident()
        before = fake.calls_in(me)
        with infersight.request(model="m"), infersight.model():
            pass
        made = fake.calls_in(me) - before
        assert made == {"nvmlGpmSampleGet": 2}  # samples come pre-allocated from the pool
        t.flush()


def test_only_the_model_stage_is_instrumented(gpu_telemetry: StartGpu, fake: FakeNVML) -> None:
    with gpu_telemetry() as t:
        before = fake.calls.copy()
        with infersight.request(model="m"):
            with infersight.preprocess():
                pass
            with infersight.postprocess():
                pass
        t.flush()
        assert fake.calls == before
        for span in t.spans():
            assert not any(k.startswith(ATTR.GPU_PREFIX) for k in span.attributes or {})


class FakeEvent:
    """torch.cuda.Event stand-in: the kernel time is fixed, completion lags two queries."""

    kernel_ms = 7.5
    created = 0

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        FakeEvent.created += 1
        self.recorded = False
        self.queries = 0
        self.synced = False

    def record(self) -> None:
        self.recorded = True

    def query(self) -> bool:
        self.queries += 1
        return self.queries > 2

    def synchronize(self) -> None:
        self.synced = True

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.recorded and end.recorded and end.synced
        return self.kernel_ms


def fake_torch(uuid: str) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_initialized=lambda: True,
        current_device=lambda: 0,
        Event=FakeEvent,
        get_device_properties=lambda i: types.SimpleNamespace(uuid=uuid),
    )
    return torch


def test_cuda_events_time_the_stage_on_the_device_torch_uses(
    monkeypatch: pytest.MonkeyPatch, current_sampler: Callable[[], Sampler]
) -> None:
    fake = FakeNVML([FakeDevice(), FakeDevice()])
    fake.devices[1].gpm_values[GPM_SM_UTIL] = 70.0
    # CUDA device 0 is NVML GPU 1 (CUDA_VISIBLE_DEVICES=1, or fastest-first ordering).
    monkeypatch.setitem(sys.modules, "torch", fake_torch(fake.devices[1].uuid.removeprefix("GPU-")))
    FakeEvent.created = 0
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0, gpu_span_snapshots=True) as t:
        with infersight.request(model="m"), infersight.model():
            time.sleep(LONG_STAGE_S)
        span = model_span(t)
        attrs = span.attributes
        assert FakeEvent.created == 2
        assert attrs[ATTR.GPU_UUID] == fake.devices[1].uuid
        assert attrs[ATTR.GPU_PREFIX + "sm_active"] == pytest.approx(0.7)  # GPM delta of GPU 1
        assert attrs[ATTR.GPU_BUSY_SECONDS] == 0.0075
        assert attrs[ATTR.GPU_WALL_SECONDS] >= LONG_STAGE_S
        labels = {"model": "m", "stage": "model"}
        assert t.value(METRIC.STAGE_GPU_BUSY.name + "_sum", **labels) == 0.0075
        # The busy-time observation carries the span as its exemplar.
        text = t.openmetrics()
        ctx = span.context
        line = next(
            ln for ln in text.splitlines() if ln.startswith(METRIC.STAGE_GPU_BUSY.name + "_bucket") and " # {" in ln
        )
        assert f'trace_id="{ctx.trace_id:032x}"' in line
        assert f'span_id="{ctx.span_id:016x}"' in line


def test_unsampled_stage_is_observed_without_exemplar(fake: FakeNVML) -> None:
    registry = CollectorRegistry()
    with use_fake_nvml(fake):
        infersight.init(
            registry=registry,
            tracer_provider=TracerProvider(sampler=ALWAYS_OFF),
            gpu="on",
            gpu_interval_s=60.0,
            gpu_span_snapshots=True,
        )
        try:
            with infersight.request(model="m"), infersight.model():
                time.sleep(LONG_STAGE_S)
            rt = infersight.get_runtime()
            assert rt is not None
            rt.worker.drain()
            text = generate_latest(registry).decode()  # type: ignore[no-untyped-call]
        finally:
            infersight.shutdown()
    count = re.search(METRIC.STAGE_GPU_SM_ACTIVE.name + r'_count\{model="m",stage="model"\} (\S+)', text)
    assert count is not None and float(count.group(1)) == 1.0
    assert not [ln for ln in text.splitlines() if ln.startswith(METRIC.STAGE_GPU_SM_ACTIVE.name) and " # {" in ln]


def test_a_dropped_stage_record_returns_its_gpm_samples(fake: FakeNVML) -> None:
    sampler = Sampler(fake, interval_s=60.0)
    assert sampler.start()
    try:
        rt = types.SimpleNamespace(config=Config(traces_exporter="none", gpu_span_snapshots=True), metrics=None)
        hook = SpanCounters(sampler, rt)
        free = sampler.pool.free_count()
        stage = StageRecord("model", "m", None, 0, 1, True)
        hook.on_stage_start(stage)
        hook.on_stage_end(stage)
        assert sampler.pool.free_count() == free - 2
        del stage  # e.g. the worker queue was full: enrich never runs
        gc.collect()
        assert sampler.pool.free_count() == free
    finally:
        sampler.stop()


def test_hooks_never_raise_into_the_runtime(gpu_telemetry: StartGpu, fake: FakeNVML) -> None:
    with gpu_telemetry() as t:
        for _ in range(3):
            with infersight.request(model="m"), infersight.model():
                pass
        t.flush()
        assert len(t.spans("model")) == 3
    assert not [c for c in _errors.counts() if c.startswith("hook.")]


def test_metrics_off_still_puts_counters_on_spans(gpu_telemetry: StartGpu, fake: FakeNVML) -> None:
    with gpu_telemetry(metrics=False) as t:
        with infersight.request(model="m"), infersight.model():
            pass
        attrs = model_span(t).attributes
        assert attrs[ATTR.GPU_UUID] == fake.devices[0].uuid
        assert attrs[ATTR.GPU_PREFIX + "utilization"] == 0.5
        assert t.value(METRIC.GPU_UP.name, gpu="0", uuid=fake.devices[0].uuid, name=fake.devices[0].name) is None
