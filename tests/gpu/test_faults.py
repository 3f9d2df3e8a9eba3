"""Every GPU fault: the metric is dropped, the error counted and logged once, nothing raised,
and requests go on."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import infersight
from infersight import _errors, get_runtime
from infersight.conventions import ATTR, METRIC
from infersight.gpu import _nvml
from infersight.gpu.sampler import Sampler
from infersight.gpu.testing import (
    ERROR_GPU_IS_LOST,
    ERROR_NO_PERMISSION,
    ERROR_NOT_SUPPORTED,
    ERROR_UNKNOWN,
    FakeDevice,
    FakeNVML,
    use_fake_nvml,
)
from infersight.testing import Captured, capture

StartGpu = Callable[..., Any]
# Every per-sample device call of the sampler without GPM, for "all calls fail" faults.
DEVICE_CALLS = (
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetTemperature",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetPcieThroughput",
    "nvmlDeviceGetTotalEccErrors",
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetProcessUtilization",
    "nvmlDeviceGetAccountingMode",
    "nvmlDeviceGetAccountingStats",
    "nvmlEventSetWait",
)


def gpu_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "infersight-gpu" and t.is_alive()]


def serve_one(t: Captured) -> None:
    """A request still works end to end."""
    with infersight.request(model="m"), infersight.model():
        pass
    assert len(t.spans("model")) >= 1


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def label_set(fake: FakeNVML, index: int) -> dict[str, str]:
    dev = fake.devices[index]
    return {"gpu": str(index), "uuid": dev.uuid, "name": dev.name}


@pytest.mark.parametrize(("mode", "level"), [("auto", "INFO"), ("on", "WARNING")])
def test_no_driver_logs_once_starts_nothing_and_requests_work(
    mode: str, level: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNVML(1, no_driver=True)
    with caplog.at_level("INFO", logger="infersight"), use_fake_nvml(fake):
        for _ in range(2):  # re-initialising does not repeat the message
            with capture(gpu=mode) as t:
                assert get_runtime().gpu is None  # type: ignore[union-attr]
                assert not gpu_threads()
                serve_one(t)
                assert t.value(METRIC.GPU_UP.name, gpu="0", uuid="", name="") is None
                attrs = t.spans("model")[0].attributes or {}
                assert not any(k.startswith(ATTR.GPU_PREFIX) for k in attrs)
    said = messages(caplog, "GPU metrics are off")
    assert [r.levelname for r in said] == [level]
    assert not _errors.counts()


def test_without_nvidia_ml_py_auto_mode_is_quiet(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    _nvml.use(None)
    with caplog.at_level("INFO", logger="infersight"), capture(gpu="auto") as t:
        serve_one(t)
        assert not gpu_threads()
    said = messages(caplog, "nvidia-ml-py is not installed")
    assert [r.levelname for r in said] == ["INFO"]
    assert not _errors.counts()


def test_a_transient_error_is_counted_and_the_metric_comes_back(
    gpu_telemetry: StartGpu,
    fake: FakeNVML,
    current_sampler: Callable[[], Sampler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="infersight"), gpu_telemetry() as t:
        fake.fail("nvmlDeviceGetPowerUsage", ERROR_UNKNOWN, times=1)
        current_sampler().sample_once()
        labels = label_set(fake, 0)
        assert t.value(METRIC.GPU_POWER.name, **labels) is None  # no stale value
        assert t.value(METRIC.GPU_UTILIZATION.name, **labels) == 0.5  # the rest is unaffected
        assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="nvmlDeviceGetPowerUsage") == 1
        current_sampler().sample_once()
        assert t.value(METRIC.GPU_POWER.name, **labels) == 300.0
        serve_one(t)
    assert len(messages(caplog, "nvmlDeviceGetPowerUsage")) == 1


def test_a_persistent_error_disables_that_metric_for_that_gpu_only(
    gpu_telemetry: StartGpu,
    current_sampler: Callable[[], Sampler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeNVML([FakeDevice(gpm=False), FakeDevice(gpm=False)])
    with (
        caplog.at_level("WARNING", logger="infersight"),
        use_fake_nvml(fake),
        capture(gpu="on", gpu_interval_s=60.0) as t,
    ):
        fake.fail("nvmlDeviceGetTemperature", ERROR_UNKNOWN, device=1)
        sampler = current_sampler()
        for _ in range(5):
            sampler.sample_once()
        # 3 failures in a row, then the sampler stops asking GPU 1 for it.
        assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="nvmlDeviceGetTemperature") == 3
        assert fake.calls["nvmlDeviceGetTemperature"] == 6 + 1 + 3  # GPU 0: 6 ticks; GPU 1: 1 ok + 3
        assert t.value(METRIC.GPU_TEMPERATURE.name, **label_set(fake, 1)) is None
        assert t.value(METRIC.GPU_TEMPERATURE.name, **label_set(fake, 0)) == 60
        assert t.value(METRIC.GPU_UP.name, **label_set(fake, 1)) == 1.0
        serve_one(t)
    assert len(messages(caplog, "nvmlDeviceGetTemperature")) == 1


def test_permission_errors_disable_at_once(
    gpu_telemetry: StartGpu, fake: FakeNVML, current_sampler: Callable[[], Sampler]
) -> None:
    with gpu_telemetry() as t:
        fake.fail("nvmlDeviceGetTotalEnergyConsumption", ERROR_NO_PERMISSION)
        for _ in range(3):
            current_sampler().sample_once()
        assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="nvmlDeviceGetTotalEnergyConsumption") == 1
        assert t.value(METRIC.GPU_ENERGY.sample_name, **label_set(fake, 0)) is None


def test_not_supported_is_disabled_silently(
    caplog: pytest.LogCaptureFixture, current_sampler: Callable[[], Sampler]
) -> None:
    fake = FakeNVML(1)
    fake.fail("nvmlDeviceGetTotalEccErrors", ERROR_NOT_SUPPORTED)  # e.g. GeForce: no ECC
    with caplog.at_level("INFO", logger="infersight"), use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0) as t:
        for _ in range(3):
            current_sampler().sample_once()
        uuid = fake.devices[0].uuid
        assert t.value(METRIC.GPU_ECC_ERRORS.sample_name, gpu="0", uuid=uuid, type="corrected") is None
        assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="nvmlDeviceGetTotalEccErrors") is None
        assert fake.calls["nvmlDeviceGetTotalEccErrors"] == 2  # each kind asked once, then never
        assert t.value(METRIC.GPU_UP.name, **label_set(fake, 0)) == 1.0
    assert not messages(caplog, "nvmlDeviceGetTotalEccErrors")


def test_gpu_lost_mid_run_sets_gpu_up_0_and_stops_polling_it(
    current_sampler: Callable[[], Sampler], caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeNVML([FakeDevice(), FakeDevice()])
    with (
        caplog.at_level("WARNING", logger="infersight"),
        use_fake_nvml(fake),
        capture(gpu="on", gpu_interval_s=60.0) as t,
    ):
        sampler = current_sampler()
        fake.lose_gpu(1)
        sampler.sample_once()
        assert t.value(METRIC.GPU_UP.name, **label_set(fake, 1)) == 0.0
        assert t.value(METRIC.GPU_UP.name, **label_set(fake, 0)) == 1.0
        assert t.value(METRIC.GPU_UTILIZATION.name, **label_set(fake, 1)) is None
        assert t.value(METRIC.GPU_UTILIZATION.name, **label_set(fake, 0)) == 0.5
        calls = fake.calls["nvmlDeviceGetUtilizationRates"]
        sampler.sample_once()
        assert fake.calls["nvmlDeviceGetUtilizationRates"] == calls + 1  # GPU 0 only
        serve_one(t)
    assert len(messages(caplog, "no longer polled")) == 1


def test_every_call_failing_three_ticks_running_means_lost(current_sampler: Callable[[], Sampler]) -> None:
    fake = FakeNVML([FakeDevice(gpm=False), FakeDevice(gpm=False)])
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0) as t:
        for call in DEVICE_CALLS:
            fake.fail(call, ERROR_UNKNOWN, device=0)
        sampler = current_sampler()
        sampler.sample_once()
        sampler.sample_once()
        assert t.value(METRIC.GPU_UP.name, **label_set(fake, 0)) == 1.0
        sampler.sample_once()
        assert t.value(METRIC.GPU_UP.name, **label_set(fake, 0)) == 0.0
        assert t.value(METRIC.GPU_UP.name, **label_set(fake, 1)) == 1.0


def test_all_gpus_lost_ends_the_thread() -> None:
    fake = FakeNVML(1)
    sampler = Sampler(fake, interval_s=0.01)
    assert sampler.start()
    try:
        fake.fail("nvmlDeviceGetMemoryInfo", ERROR_GPU_IS_LOST)
        thread = sampler._thread
        assert thread is not None
        thread.join(2.0)
        assert not thread.is_alive()
        assert not sampler.gpus[0].up
    finally:
        sampler.stop()


def test_init_time_failures_skip_the_gpu_not_the_app(
    caplog: pytest.LogCaptureFixture, current_sampler: Callable[[], Sampler]
) -> None:
    fake = FakeNVML([FakeDevice(), FakeDevice()])
    fake.fail("nvmlDeviceGetHandleByIndex", ERROR_UNKNOWN, times=1)  # GPU 0 can't be opened
    fake.fail("nvmlGpmQueryDeviceSupport", ERROR_UNKNOWN)  # nor asked about GPM
    with (
        caplog.at_level("WARNING", logger="infersight"),
        use_fake_nvml(fake),
        capture(gpu="on", gpu_interval_s=60.0) as t,
    ):
        assert [g.index for g in current_sampler().gpus] == [1]
        assert t.value(METRIC.GPU_UP.name, **label_set(fake, 1)) == 1.0
        assert t.value(METRIC.GPU_PROFILING_MODE.name, gpu="1", uuid=fake.devices[1].uuid, mode="nvml") == 1.0
        assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="nvmlDeviceGetHandleByIndex") == 1
        serve_one(t)


def test_device_count_failing_means_no_gpu() -> None:
    fake = FakeNVML(1)
    fake.fail("nvmlDeviceGetCount", ERROR_UNKNOWN)
    with use_fake_nvml(fake), capture(gpu="on") as t:
        serve_one(t)
        assert not gpu_threads()
    assert fake.init_count == 0  # nvmlInit was balanced by nvmlShutdown


def test_a_non_nvml_exception_is_contained(
    gpu_telemetry: StartGpu, fake: FakeNVML, current_sampler: Callable[[], Sampler], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(handle: Any) -> Any:
        raise TypeError("pynvml changed its return type")

    with gpu_telemetry() as t:
        monkeypatch.setattr(fake, "nvmlDeviceGetMemoryInfo", broken)
        current_sampler().sample_once()
        assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="broken") == 1
        assert t.value(METRIC.GPU_MEMORY_USED.name, **label_set(fake, 0)) is None
        assert t.value(METRIC.GPU_UTILIZATION.name, **label_set(fake, 0)) == 0.5


def test_span_snapshot_failures_fall_back_to_the_sampler_window(gpu_telemetry: StartGpu, fake: FakeNVML) -> None:
    with gpu_telemetry() as t:
        fake.fail("nvmlGpmSampleGet", ERROR_UNKNOWN)  # the sampler won't tick again in this test
        for _ in range(4):
            with infersight.request(model="m"), infersight.model():
                time.sleep(0.001)
        spans = t.spans("model")
        assert len(spans) == 4
        assert {s.attributes[ATTR.GPU_COUNTER_SOURCE] for s in spans} == {"sampler_window"}
        # Three failures turn snapshots off: the fourth stage made no GPM call.
        assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="nvmlGpmSampleGet") == 3
    assert not [c for c in _errors.counts() if c.startswith("hook.")]


def test_shutdown_stops_the_thread_and_balances_nvml_init(gpu_telemetry: StartGpu, fake: FakeNVML) -> None:
    with gpu_telemetry(gpu_interval_s=0.01) as t:
        assert gpu_threads()
        serve_one(t)
    assert not gpu_threads()
    assert fake.init_count == 0
    assert fake.calls["nvmlGpmSampleFree"] == fake.calls["nvmlGpmSampleAlloc"]
