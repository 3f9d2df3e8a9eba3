"""The NVML sampler against FakeNVML: values, units, labels, throttle reasons, scrape cost."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from infersight.conventions import METRIC
from infersight.gpu.collector import GpuCollector
from infersight.gpu.sampler import Sampler
from infersight.gpu.testing import FakeDevice, FakeNVML
from infersight.gpu.throttle import REASONS, decode

ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30


@pytest.fixture
def two_gpus() -> FakeNVML:
    return FakeNVML(
        [
            FakeDevice(
                name="NVIDIA H100 80GB HBM3",
                utilization=75,
                memory_utilization=30,
                memory_used=12 * GIB,
                memory_total=80 * GIB,
                power_mw=412_500,
                energy_mj=9_876_543,
                temperature=71,
                sm_clock_mhz=1755,
                memory_clock_mhz=2619,
                gpm=False,
                pcie_tx_kbps=1500,
                pcie_rx_kbps=250,
            ),
            FakeDevice(name="NVIDIA A10G", utilization=5, gpm=False, power_mw=60_000),
        ]
    )


@pytest.fixture
def running(two_gpus: FakeNVML) -> Iterator[tuple[Sampler, CollectorRegistry]]:
    sampler = Sampler(two_gpus, interval_s=60.0, mode="on", process_memory_every=1)  # all on every tick
    assert sampler.start()
    registry = CollectorRegistry()
    registry.register(GpuCollector(sampler))
    yield sampler, registry
    sampler.stop()


def labels(fake: FakeNVML, index: int) -> dict[str, str]:
    dev = fake.devices[index]
    return {"gpu": str(index), "uuid": dev.uuid, "name": dev.name}


def test_device_metrics_in_exported_units_with_gpu_labels(
    running: tuple[Sampler, CollectorRegistry], two_gpus: FakeNVML
) -> None:
    _, registry = running
    gpu0 = labels(two_gpus, 0)
    value = registry.get_sample_value
    assert value(METRIC.GPU_UP.name, gpu0) == 1.0
    assert value(METRIC.GPU_UTILIZATION.name, gpu0) == 0.75
    assert value(METRIC.GPU_MEMORY_UTILIZATION.name, gpu0) == 0.30
    assert value(METRIC.GPU_MEMORY_USED.name, gpu0) == 12 * GIB
    assert value(METRIC.GPU_MEMORY_TOTAL.name, gpu0) == 80 * GIB
    assert value(METRIC.GPU_POWER.name, gpu0) == pytest.approx(412.5)  # mW -> W
    assert value(METRIC.GPU_ENERGY.sample_name, gpu0) == pytest.approx(9876.543)  # mJ -> J
    assert value(METRIC.GPU_TEMPERATURE.name, gpu0) == 71
    assert value(METRIC.GPU_SM_CLOCK.name, gpu0) == 1755e6  # MHz -> Hz
    assert value(METRIC.GPU_MEMORY_CLOCK.name, gpu0) == 2619e6
    assert value(METRIC.GPU_PCIE_TX.name, gpu0) == 1500 * 1024  # KB/s -> bytes/s
    assert value(METRIC.GPU_PCIE_RX.name, gpu0) == 250 * 1024
    # The second GPU is labelled as itself, with its own values.
    gpu1 = labels(two_gpus, 1)
    assert value(METRIC.GPU_UTILIZATION.name, gpu1) == 0.05
    assert value(METRIC.GPU_POWER.name, gpu1) == 60.0
    assert value(METRIC.GPU_PROFILING_MODE.name, {"gpu": "1", "uuid": gpu1["uuid"], "mode": "nvml"}) == 1.0


def test_values_follow_the_device_on_the_next_sample(
    running: tuple[Sampler, CollectorRegistry], two_gpus: FakeNVML
) -> None:
    sampler, registry = running
    two_gpus.devices[0].utilization = 12
    two_gpus.devices[0].energy_mj = 10_000_000
    assert registry.get_sample_value(METRIC.GPU_UTILIZATION.name, labels(two_gpus, 0)) == 0.75
    sampler.sample_once()
    assert registry.get_sample_value(METRIC.GPU_UTILIZATION.name, labels(two_gpus, 0)) == 0.12
    assert registry.get_sample_value(METRIC.GPU_ENERGY.sample_name, labels(two_gpus, 0)) == 10_000


def test_scrapes_read_the_snapshot_and_make_no_nvml_call(
    running: tuple[Sampler, CollectorRegistry], two_gpus: FakeNVML
) -> None:
    _, registry = running
    before = sum(two_gpus.calls.values())
    for _ in range(5):
        text = generate_latest(registry).decode()
    assert sum(two_gpus.calls.values()) == before
    assert METRIC.GPU_UTILIZATION.name in text


def test_throttle_bitmask_decodes_into_reason_labels(two_gpus: FakeNVML) -> None:
    two_gpus.devices[0].throttle_mask = 0x004 | 0x040  # sw_power_cap | hw_thermal_slowdown
    sampler = Sampler(two_gpus, interval_s=60.0)
    assert sampler.start()
    try:
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        uuid = two_gpus.devices[0].uuid
        active = {
            reason
            for reason, _ in REASONS
            if registry.get_sample_value(METRIC.GPU_THROTTLE.name, {"gpu": "0", "uuid": uuid, "reason": reason}) == 1.0
        }
        assert active == {"sw_power_cap", "hw_thermal_slowdown"}
        # Inactive reasons are exported as 0, not left out, so alerts see them.
        assert (
            registry.get_sample_value(METRIC.GPU_THROTTLE.name, {"gpu": "0", "uuid": uuid, "reason": "gpu_idle"}) == 0.0
        )
    finally:
        sampler.stop()


def test_decode_covers_every_bit_and_matches_the_alert_rule() -> None:
    assert decode(0) == {name: 0 for name, _ in REASONS}
    assert decode(0x1FF) == {name: 1 for name, _ in REASONS}
    assert decode(0x080)["hw_power_brake_slowdown"] == 1
    assert sum(decode(0x080).values()) == 1
    # Every reason the GPUClockThrottled alert selects is one the sampler can emit.
    rules = yaml.safe_load((ROOT / "prometheus-rules" / "gpu.rules.yaml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == "GPUClockThrottled"]
    assert exprs, "GPUClockThrottled alert not found"
    pattern = re.search(r'reason=~"([^"]+)"', exprs[0])
    assert pattern is not None
    selected = {name for name, _ in REASONS if re.fullmatch(pattern.group(1), name)}
    assert {
        "sw_power_cap",
        "hw_slowdown",
        "hw_thermal_slowdown",
        "sw_thermal_slowdown",
        "hw_power_brake_slowdown",
    } <= selected
    assert "gpu_idle" not in selected


def test_process_memory_counts_only_this_process_and_is_read_every_n_samples() -> None:
    fake = FakeNVML([FakeDevice(processes=[(os.getpid(), 3 * GIB), (os.getpid() + 1, 5 * GIB)])])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=3)
    assert sampler.start()
    try:
        for _ in range(5):
            sampler.sample_once()
        # 6 ticks in all (start + 5): the slow call ran on ticks 1 and 4 only.
        assert fake.calls["nvmlDeviceGetUtilizationRates"] == 6
        assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 2
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        assert (
            registry.get_sample_value(METRIC.GPU_PROCESS_MEMORY.name, {"gpu": "0", "uuid": fake.devices[0].uuid})
            == 3 * GIB
        )
    finally:
        sampler.stop()


@pytest.mark.parametrize("processes", [[], [(1, 3 * GIB)]], ids=["empty list", "other PIDs only"])
def test_process_memory_is_left_out_when_nvml_lists_no_process_with_this_pid(
    processes: list[tuple[int, int]],
) -> None:
    # Not 0: NVML may list the PIDs of another namespace (containers, VMs) or none at all.
    fake = FakeNVML([FakeDevice(processes=processes)])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)
    assert sampler.start()
    try:
        sampler.sample_once()
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        labels = {"gpu": "0", "uuid": fake.devices[0].uuid}
        assert registry.get_sample_value(METRIC.GPU_PROCESS_MEMORY.name, labels) is None
        assert registry.get_sample_value(METRIC.GPU_UP.name, {**labels, "name": fake.devices[0].name}) == 1.0
    finally:
        sampler.stop()


def test_ecc_and_xid_errors_are_counters() -> None:
    fake = FakeNVML([FakeDevice(ecc_corrected=4, ecc_uncorrected=1)])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)  # ECC and XID are in the slow set
    assert sampler.start()
    try:
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        uuid = fake.devices[0].uuid
        for kind, count in (("corrected", 4), ("uncorrected", 1)):
            assert (
                registry.get_sample_value(METRIC.GPU_ECC_ERRORS.sample_name, {"gpu": "0", "uuid": uuid, "type": kind})
                == count
            )
        fake.xid(0, 79)
        fake.xid(0, 79)
        fake.xid(0, 48)
        sampler.sample_once()
        fake.xid(0, 79)
        sampler.sample_once()
        xid = {
            code: registry.get_sample_value(METRIC.GPU_XID_ERRORS.sample_name, {"gpu": "0", "uuid": uuid, "xid": code})
            for code in ("79", "48", "13")
        }
        assert xid == {"79": 3.0, "48": 1.0, "13": None}
    finally:
        sampler.stop()


def test_xid_unsupported_is_skipped_quietly(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNVML([FakeDevice(xid_events=False)])
    sampler = Sampler(fake, interval_s=60.0)
    with caplog.at_level("INFO", logger="infersight"):
        assert sampler.start()
    sampler.stop()
    assert fake.calls["nvmlEventSetCreate"] == 0
    assert fake.calls["nvmlEventSetWait"] == 0
    assert sampler.errors() == {}
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_thread_samples_each_interval_and_stop_ends_it() -> None:
    fake = FakeNVML(1)
    sampler = Sampler(fake, interval_s=0.02)
    assert sampler.start()
    deadline = time.monotonic() + 3.0
    while sampler.ticks < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    assert sampler.ticks >= 4
    assert not any(t.name == "infersight-gpu" and t.is_alive() for t in threading.enumerate())
    calls = sum(fake.calls.values())
    time.sleep(0.06)
    assert sum(fake.calls.values()) == calls  # no sampling after stop
    assert fake.init_count == 0  # nvmlInit balanced by nvmlShutdown
    assert sampler.cpu_seconds >= 0.0


def test_window_averages_the_samples_covering_a_span() -> None:
    fake = FakeNVML([FakeDevice(gpm=False, utilization=10)])
    sampler = Sampler(fake, interval_s=60.0)
    assert sampler.start()  # tick 1: 10 %
    try:
        start = time.perf_counter_ns()
        fake.devices[0].utilization = 50
        sampler.sample_once()  # covers the span's first part
        end = time.perf_counter_ns()
        fake.devices[0].utilization = 90
        sampler.sample_once()  # its period contains the span's end
        fake.devices[0].utilization = 0
        sampler.sample_once()  # after: ignored
        window = sampler.window(0, start, end)
        assert window is not None
        assert window["utilization"] == pytest.approx((0.5 + 0.9) / 2)
        assert "sm_active" not in window  # no GPM on this device
        # A span after the last sample gets the latest one.
        late = time.perf_counter_ns()
        assert sampler.window(0, late, late + 1) == {"utilization": 0.0, "memory_utilization": 0.2}
        assert sampler.window(5, start, end) is None
    finally:
        sampler.stop()


def test_fork_restarts_the_sampler_in_the_child(gpu_telemetry, current_sampler) -> None:  # type: ignore[no-untyped-def]
    if not hasattr(os, "fork"):
        pytest.skip("no os.fork on this platform")
    with gpu_telemetry(gpu_interval_s=0.02):
        sampler = current_sampler()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: report whether a live sampler thread ticks here, then leave
            code = 1
            try:
                ticks = sampler.ticks
                deadline = time.monotonic() + 2.0
                while sampler.ticks < ticks + 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                alive = any(t.name == "infersight-gpu" for t in threading.enumerate())
                os.write(write_fd, f"{alive} {sampler.ticks - ticks}".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        deadline = time.monotonic() + 10.0
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child did not finish")
        report = os.read(read_fd, 100).decode().split()
        os.close(read_fd)
        assert os.waitstatus_to_exitcode(status) == 0
        alive, ticked = report[0] == "True", int(report[1])
        assert alive and ticked >= 3
