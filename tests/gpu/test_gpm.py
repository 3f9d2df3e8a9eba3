"""GPM kernel counters: metric ids, normalisation like DCGM_FI_PROF_*, the 100 ms rule, fallback."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from infersight.conventions import METRIC
from infersight.gpu.collector import GpuCollector
from infersight.gpu.gpm import GPM_METRICS, MIN_INTERVAL_NS, SamplePool, normalise
from infersight.gpu.sampler import Sampler
from infersight.gpu.testing import (
    ERROR_UNKNOWN,
    GPM_ANY_TENSOR_UTIL,
    GPM_DRAM_BW_UTIL,
    GPM_NVLINK_TOTAL_TX_PER_SEC,
    GPM_PCIE_TX_PER_SEC,
    GPM_SM_UTIL,
    FakeDevice,
    FakeNVML,
)

MIB = 1 << 20


def test_metric_ids_are_pynvml_s() -> None:
    pynvml = pytest.importorskip("pynvml")
    expected = {
        "sm_active": "SM_UTIL",
        "sm_occupancy": "SM_OCCUPANCY",
        "tensor_active": "ANY_TENSOR_UTIL",
        "dram_active": "DRAM_BW_UTIL",
        "fp16_active": "FP16_UTIL",
        "fp32_active": "FP32_UTIL",
        "fp64_active": "FP64_UTIL",
        "pcie_tx_bytes_per_second": "PCIE_TX_PER_SEC",
        "pcie_rx_bytes_per_second": "PCIE_RX_PER_SEC",
        "nvlink_rx_bytes_per_second": "NVLINK_TOTAL_RX_PER_SEC",
        "nvlink_tx_bytes_per_second": "NVLINK_TOTAL_TX_PER_SEC",
    }
    assert {m.key for m in GPM_METRICS} == set(expected)
    for m in GPM_METRICS:
        assert m.metric_id == getattr(pynvml, f"NVML_GPM_METRIC_{expected[m.key]}"), m.key


def test_normalise_percent_to_ratio_and_mib_to_bytes() -> None:
    out = normalise(
        {
            GPM_SM_UTIL: 87.5,
            GPM_ANY_TENSOR_UTIL: 100.4,
            GPM_DRAM_BW_UTIL: -0.1,
            GPM_PCIE_TX_PER_SEC: 3.5,
            GPM_NVLINK_TOTAL_TX_PER_SEC: float("nan"),
        }
    )
    assert out == {
        "sm_active": 0.875,
        "tensor_active": 1.0,  # clamped: NVML rounding can pass 100
        "dram_active": 0.0,
        "pcie_tx_bytes_per_second": 3.5 * MIB,
    }  # NaN and missing metrics are left out, not exported as 0


def test_sampler_exports_gpm_deltas_after_two_samples_100ms_apart() -> None:
    fake = FakeNVML([FakeDevice()])
    fake.devices[0].gpm_values[GPM_SM_UTIL] = 62.0
    sampler = Sampler(fake, interval_s=60.0)
    assert sampler.start()
    try:
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        labels = {"gpu": "0", "uuid": fake.devices[0].uuid}
        # One sample is not a delta: nothing yet.
        assert registry.get_sample_value(METRIC.GPU_SM_ACTIVE.name, labels) is None
        assert registry.get_sample_value(METRIC.GPU_PROFILING_MODE.name, {**labels, "mode": "gpm"}) == 1.0
        time.sleep(MIN_INTERVAL_NS / 1e9)
        sampler.sample_once()
        assert registry.get_sample_value(METRIC.GPU_SM_ACTIVE.name, labels) == 0.62
        assert registry.get_sample_value(METRIC.GPU_TENSOR_ACTIVE.name, labels) == 0.30
        assert registry.get_sample_value(METRIC.GPU_DRAM_ACTIVE.name, labels) == 0.20
        assert registry.get_sample_value(METRIC.GPU_FP16_ACTIVE.name, labels) == 0.10
        assert registry.get_sample_value(METRIC.GPU_PCIE_TX.name, {**labels, "name": fake.devices[0].name}) == 100 * MIB
        # In GPM mode PCIe comes from GPM: NVML's blocking PCIe counter is never called.
        assert fake.calls["nvmlDeviceGetPcieThroughput"] == 0
        assert all(interval >= MIN_INTERVAL_NS for interval in fake.gpm_intervals_ns)
    finally:
        sampler.stop()


def test_ticks_under_100ms_apart_take_no_gpm_sample_and_keep_the_last_values() -> None:
    fake = FakeNVML([FakeDevice()])
    sampler = Sampler(fake, interval_s=60.0)
    assert sampler.start()
    try:
        time.sleep(MIN_INTERVAL_NS / 1e9)
        sampler.sample_once()
        fake.devices[0].gpm_values[GPM_SM_UTIL] = 99.0
        ring = sampler.gpus[0].ring
        expected = 0.40
        for _ in range(5):  # a loaded machine may stall us past 100 ms: try again then
            gets = fake.calls["nvmlGpmSampleGet"]
            sampler.sample_once()  # at once: too soon for GPM
            if ring[-1].ts_ns - ring[-2].ts_ns < MIN_INTERVAL_NS:
                break
            expected = 0.99  # that tick did take a fresh GPM sample
        assert fake.calls["nvmlGpmSampleGet"] == gets
        assert ring[-1].gpm is None  # nothing new for spans either
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        assert (
            registry.get_sample_value(METRIC.GPU_SM_ACTIVE.name, {"gpu": "0", "uuid": fake.devices[0].uuid}) == expected
        )
    finally:
        sampler.stop()


def test_without_gpm_support_mode_is_nvml_and_utilization_remains() -> None:
    fake = FakeNVML([FakeDevice(gpm=False, utilization=33), FakeDevice()])
    sampler = Sampler(fake, interval_s=60.0)
    assert sampler.start()
    try:
        time.sleep(MIN_INTERVAL_NS / 1e9)
        sampler.sample_once()
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        dev0, dev1 = fake.devices
        mode = {
            (gpu, m): registry.get_sample_value(
                METRIC.GPU_PROFILING_MODE.name, {"gpu": gpu, "uuid": dev.uuid, "mode": m}
            )
            for gpu, dev in (("0", dev0), ("1", dev1))
            for m in ("gpm", "nvml")
        }
        assert mode == {("0", "gpm"): 0.0, ("0", "nvml"): 1.0, ("1", "gpm"): 1.0, ("1", "nvml"): 0.0}
        assert registry.get_sample_value(METRIC.GPU_SM_ACTIVE.name, {"gpu": "0", "uuid": dev0.uuid}) is None
        assert registry.get_sample_value(METRIC.GPU_SM_ACTIVE.name, {"gpu": "1", "uuid": dev1.uuid}) == 0.40
        assert (
            registry.get_sample_value(METRIC.GPU_UTILIZATION.name, {"gpu": "0", "uuid": dev0.uuid, "name": dev0.name})
            == 0.33
        )
        assert fake.calls["nvmlGpmSampleAlloc"] == 2  # only GPU 1 has a GPM stream
    finally:
        sampler.stop()


def test_gpm_failing_mid_run_falls_back_to_nvml(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNVML([FakeDevice()])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)  # NVML PCIe is in the slow set
    assert sampler.start()
    try:
        fake.fail("nvmlGpmSampleGet", ERROR_UNKNOWN)
        time.sleep(MIN_INTERVAL_NS / 1e9)
        with caplog.at_level("WARNING", logger="infersight"):
            sampler.sample_once()
            time.sleep(MIN_INTERVAL_NS / 1e9)
            sampler.sample_once()
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        uuid = fake.devices[0].uuid
        assert (
            registry.get_sample_value(METRIC.GPU_PROFILING_MODE.name, {"gpu": "0", "uuid": uuid, "mode": "nvml"}) == 1.0
        )
        assert registry.get_sample_value(METRIC.GPU_SAMPLER_ERRORS.sample_name, {"call": "nvmlGpmSampleGet"}) == 1.0
        assert (
            registry.get_sample_value(METRIC.GPU_UP.name, {"gpu": "0", "uuid": uuid, "name": fake.devices[0].name})
            == 1.0
        )
        assert fake.calls["nvmlDeviceGetPcieThroughput"] > 0  # NVML PCIe took over
        assert sum("nvmlGpmSampleGet" in r.getMessage() for r in caplog.records) == 1
    finally:
        sampler.stop()


def test_sample_pool_reuses_samples_and_is_bounded() -> None:
    fake = FakeNVML(1)
    fake.nvmlInit()
    pool = SamplePool(fake, limit=2)
    a, b = pool.acquire(), pool.acquire()
    assert a is not None and b is not None
    assert pool.acquire() is None  # limit reached: the caller falls back
    pool.release(a)
    assert pool.acquire() is a
    assert fake.calls["nvmlGpmSampleAlloc"] == 2
    pool.release(a)
    pool.release(b)
    pool.close()
    assert fake.calls["nvmlGpmSampleFree"] == 2


def test_pcie_falls_back_to_nvml_when_gpm_leaves_it_out() -> None:
    device = FakeDevice(pcie_tx_kbps=4)
    del device.gpm_values[GPM_PCIE_TX_PER_SEC]  # e.g. a driver without GPM PCIe metrics
    fake = FakeNVML([device])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)  # NVML PCIe is in the slow set
    assert sampler.start()
    try:
        assert fake.calls["nvmlDeviceGetPcieThroughput"] == 0  # first tick: GPM may have it
        time.sleep(MIN_INTERVAL_NS / 1e9)
        sampler.sample_once()
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        labels = {"gpu": "0", "uuid": device.uuid, "name": device.name}
        assert registry.get_sample_value(METRIC.GPU_PCIE_TX.name, labels) == 4 * 1024
        assert registry.get_sample_value(METRIC.GPU_SM_ACTIVE.name, {"gpu": "0", "uuid": device.uuid}) == 0.40
    finally:
        sampler.stop()
