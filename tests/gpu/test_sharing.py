"""A shared GPU: GPU time per model (measured, a batch's share, estimated), processes on one
device (two real processes over one fake device), time-slicing, MIG instances, cost, torch's
allocator, the slow/fast call tiers, and a GPU that was asked for but can't be read."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import types
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import infersight
from infersight.conventions import ATTR, GPU_SECONDS_BATCH_SHARE, GPU_SECONDS_ESTIMATED, GPU_SECONDS_MEASURED, METRIC
from infersight.gpu import _nvml
from infersight.gpu.collector import GpuCollector
from infersight.gpu.sampler import Sampler, price_of
from infersight.gpu.testing import FakeDevice, FakeNVML, use_fake_nvml
from infersight.testing import capture

GIB = 1 << 30
STAGE_S = 0.05


def run_batch(model: str, size: int, seconds: float = 0.0) -> None:
    """``size`` requests waiting on one batched model call, as a dynamic batcher runs them."""
    requests = [infersight.request(model=model) for _ in range(size)]
    handles = []
    for r in requests:
        r.__enter__()
        handles.append(infersight.current_request_handle())
    with infersight.batch(handles, model=model):
        time.sleep(seconds)
    for r in reversed(requests):
        r.__exit__(None, None, None)


def gpu_seconds(t: Any, model: str, fake: FakeNVML, index: int = 0) -> float | None:
    value: float | None = t.value(
        METRIC.MODEL_GPU_SECONDS.sample_name, model=model, gpu=str(index), uuid=fake.devices[index].uuid
    )
    return value


def test_without_cuda_events_a_models_gpu_time_is_estimated_from_utilization(
    monkeypatch: pytest.MonkeyPatch, current_sampler: Callable[[], Sampler]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    fake = FakeNVML([FakeDevice(utilization=40, gpm=False)])
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0) as t:
        with infersight.request(model="ranker"), infersight.model():
            time.sleep(STAGE_S)
        (span,) = t.spans("model")
        attrs = span.attributes or {}
        assert attrs[ATTR.GPU_SECONDS_SOURCE] == GPU_SECONDS_ESTIMATED
        wall = (span.end_time - span.start_time) / 1e9  # type: ignore[operator]
        assert attrs[ATTR.GPU_SECONDS] == pytest.approx(wall * 0.4, rel=0.05)
        assert gpu_seconds(t, "ranker", fake) == pytest.approx(attrs[ATTR.GPU_SECONDS])
        assert gpu_seconds(t, "other", fake) is None


def test_the_estimate_leaves_out_another_processs_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    pid, other = os.getpid(), os.getpid() + 1
    # The GPU is 80% busy, but this process ran kernels 20% of the time: the rest is the neighbour's.
    device = _device({pid: (GIB, 20.0), other: (GIB, 60.0)})
    device.utilization = 80
    fake = FakeNVML([device])
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0) as t:
        with infersight.request(model="ranker"), infersight.model():
            time.sleep(STAGE_S)
        (span,) = t.spans("model")
        wall = (span.end_time - span.start_time) / 1e9  # type: ignore[operator]
        assert (span.attributes or {})[ATTR.GPU_SECONDS] == pytest.approx(wall * 0.2, rel=0.05)


def test_a_batch_splits_its_gpu_time_across_its_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    fake = FakeNVML([FakeDevice(utilization=100, gpm=False)])
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0) as t:
        run_batch("batch", 4, STAGE_S)
        spans = t.spans("model")
        assert len(spans) == 4
        shares = [(s.attributes or {})[ATTR.GPU_SECONDS] for s in spans]
        wall = (spans[0].end_time - spans[0].start_time) / 1e9  # type: ignore[operator]
        assert shares == pytest.approx([wall / 4] * 4, rel=0.05)
        # The model's counter got the batch's GPU time once, not four times.
        assert gpu_seconds(t, "batch", fake) == pytest.approx(wall, rel=0.05)


class _Event:
    """torch.cuda.Event stand-in: 8 ms of kernel time between any two events."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.done = False

    def record(self) -> None:
        self.done = True

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: _Event) -> float:
        return 8.0


def _fake_torch(uuid: str, stats: dict[str, int] | None = None) -> types.ModuleType:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
        is_initialized=lambda: True,
        current_device=lambda: 0,
        device_count=lambda: 1,
        Event=_Event,
        get_device_properties=lambda i: types.SimpleNamespace(uuid=uuid),
        memory_stats=lambda device: dict(stats or {}),
    )
    return torch


def test_measured_gpu_time_and_a_batchs_measured_share(
    monkeypatch: pytest.MonkeyPatch, current_sampler: Callable[[], Sampler]
) -> None:
    fake = FakeNVML([FakeDevice(utilization=90, gpm=False)])
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(fake.devices[0].uuid))
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0) as t:
        with infersight.request(model="a"), infersight.model():
            pass
        run_batch("b", 2)
        by_model = {}
        for span in t.spans("model"):
            attrs = span.attributes or {}
            by_model.setdefault(attrs[ATTR.MODEL_NAME], []).append(
                (attrs[ATTR.GPU_SECONDS], attrs[ATTR.GPU_SECONDS_SOURCE])
            )
        assert by_model["a"] == [(0.008, GPU_SECONDS_MEASURED)]
        assert by_model["b"] == [(0.004, GPU_SECONDS_BATCH_SHARE)] * 2
        assert gpu_seconds(t, "a", fake) == pytest.approx(0.008)
        assert gpu_seconds(t, "b", fake) == pytest.approx(0.008)
        # The busy-time histogram counts the batch once.
        assert t.value(METRIC.STAGE_GPU_BUSY.name + "_count", model="b", stage="model") == 1


def test_torch_allocator_memory_is_exported_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNVML([FakeDevice(gpm=False)])
    stats = {"allocated_bytes.all.current": 3 * GIB, "reserved_bytes.all.current": 5 * GIB, "num_ooms": 2}
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(fake.devices[0].uuid, stats))
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0) as t:
        labels = {"gpu": "0", "uuid": fake.devices[0].uuid}
        assert t.value(METRIC.GPU_TORCH_ALLOCATED.name, **labels) == 3 * GIB
        assert t.value(METRIC.GPU_TORCH_RESERVED.name, **labels) == 5 * GIB
        assert t.value(METRIC.GPU_TORCH_OOMS.sample_name, **labels) == 2


def _shares(sampler: Sampler) -> dict[str, float | None]:
    registry = CollectorRegistry()
    registry.register(GpuCollector(sampler))
    uuid = sampler.gpus[0].uuid
    labels = {"gpu": "0", "uuid": uuid}
    return {
        "processes": registry.get_sample_value(METRIC.GPU_COMPUTE_PROCESSES.name, labels),
        "time_sliced": registry.get_sample_value(METRIC.GPU_TIME_SLICED.name, labels),
        "sm": registry.get_sample_value(METRIC.GPU_PROCESS_SM_UTILIZATION.name, labels),
        "memory": registry.get_sample_value(METRIC.GPU_PROCESS_MEMORY.name, labels),
    }


def _device(pids: dict[int, tuple[int, float]]) -> FakeDevice:
    return FakeDevice(
        gpm=False,
        processes=[(pid, mem) for pid, (mem, _) in pids.items()],
        process_utilization={pid: sm for pid, (_, sm) in pids.items()},
    )


def _child_shares(parent: int, queue: Any) -> None:
    me = os.getpid()
    fake = FakeNVML([_device({parent: (2 * GIB, 30.0), me: (6 * GIB, 60.0)})])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)
    assert sampler.start()
    queue.put(_shares(sampler))
    sampler.stop()


def test_two_server_processes_on_one_gpu_each_see_their_own_share() -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    parent = os.getpid()
    child = ctx.Process(target=_child_shares, args=(parent, queue))
    child.start()
    try:
        theirs = queue.get(timeout=20)
    finally:
        child.join(10)
    assert child.pid is not None
    fake = FakeNVML([_device({parent: (2 * GIB, 30.0), child.pid: (6 * GIB, 60.0)})])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)
    assert sampler.start()
    try:
        mine = _shares(sampler)
    finally:
        sampler.stop()
    assert mine == {"processes": 2, "time_sliced": 1, "sm": 0.3, "memory": 2 * GIB}
    assert theirs == {"processes": 2, "time_sliced": 1, "sm": 0.6, "memory": 6 * GIB}


def test_a_gpu_to_itself_is_not_time_sliced_and_an_idle_process_reads_zero() -> None:
    pid = os.getpid()
    fake = FakeNVML([FakeDevice(gpm=False, processes=[(pid, GIB)])])  # no utilization sample at all
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)
    assert sampler.start()
    try:
        assert _shares(sampler) == {"processes": 1, "time_sliced": 0, "sm": 0.0, "memory": GIB}
        assert not sampler.errors()  # NOT_FOUND (no new sample) is not a failure
    finally:
        sampler.stop()


def test_mig_instances_are_gpus_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = FakeDevice(
        name="NVIDIA H100 80GB HBM3",
        gpm=False,
        mig=[
            FakeDevice(name="NVIDIA H100 80GB HBM3 MIG 3g.40gb", memory_total=40 * GIB, memory_used=GIB, gpm=False),
            FakeDevice(name="NVIDIA H100 80GB HBM3 MIG 3g.40gb", memory_total=40 * GIB, memory_used=9 * GIB, gpm=False),
        ],
    )
    fake = FakeNVML([parent])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", parent.mig[1].uuid)  # a pod given one instance
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)
    assert sampler.start()
    try:
        gpu = sampler.gpu(sampler.nvml_index(None))
        assert gpu is not None and gpu.label == "0/mig1"  # spans go to that instance
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        used = {
            (labels["gpu"], labels["uuid"]): value
            for family in registry.collect()
            if family.name == METRIC.GPU_MEMORY_USED.name
            for _, labels, value, *_ in family.samples
        }
        mig = parent.mig
        assert used[("0/mig0", mig[0].uuid)] == GIB
        assert used[("0/mig1", mig[1].uuid)] == 9 * GIB
        assert mig[0].uuid.startswith("MIG-")
        # A GPU in MIG mode: its processes run in separate instances, not time-sliced.
        uuid = parent.uuid
        assert registry.get_sample_value(METRIC.GPU_TIME_SLICED.name, {"gpu": "0", "uuid": uuid}) is None
        assert not sampler.errors()  # utilization NOT_SUPPORTED on MIG is silent
    finally:
        sampler.stop()


def test_price_per_gpu_hour_by_name() -> None:
    prices = {"H100": 4.0, "H100 80GB HBM3": 4.5, "*": 1.0}
    assert price_of("NVIDIA H100 80GB HBM3", prices) == 4.5  # the longest pattern wins
    assert price_of("NVIDIA H100 PCIe", prices) == 4.0
    assert price_of("NVIDIA A10G", prices) == 1.0
    assert price_of("NVIDIA A10G", {"h100": 4.0}) is None


def test_hourly_cost_gauge_follows_the_configured_price() -> None:
    fake = FakeNVML([FakeDevice(name="NVIDIA H100 80GB HBM3", gpm=False), FakeDevice(name="NVIDIA A10G", gpm=False)])
    with use_fake_nvml(fake), capture(gpu="on", gpu_interval_s=60.0, gpu_hourly_cost={"h100": 4.0}) as t:
        h100 = {"gpu": "0", "uuid": fake.devices[0].uuid, "name": fake.devices[0].name}
        a10g = {"gpu": "1", "uuid": fake.devices[1].uuid, "name": fake.devices[1].name}
        assert t.value(METRIC.GPU_HOURLY_COST.name, **h100) == 4.0
        assert t.value(METRIC.GPU_HOURLY_COST.name, **a10g) is None  # no price: no cost


def test_the_slow_set_is_read_every_nth_tick_and_kept_in_between() -> None:
    fake = FakeNVML([FakeDevice(gpm=False, power_mw=100_000)])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=5)
    assert sampler.start()
    try:
        registry = CollectorRegistry()
        registry.register(GpuCollector(sampler))
        labels = {"gpu": "0", "uuid": fake.devices[0].uuid, "name": fake.devices[0].name}
        fake.devices[0].power_mw = 200_000
        for _ in range(9):
            sampler.sample_once()
            assert registry.get_sample_value(METRIC.GPU_POWER.name, labels) in (100.0, 200.0)
        # 10 ticks: the fast set on each, the slow set on ticks 1 and 6.
        assert fake.calls["nvmlDeviceGetUtilizationRates"] == 10
        assert fake.calls["nvmlDeviceGetPowerUsage"] == 2
        assert fake.calls["nvmlDeviceGetTotalEccErrors"] == 4
        assert registry.get_sample_value(METRIC.GPU_POWER.name, labels) == 200.0
    finally:
        sampler.stop()


@pytest.mark.parametrize("how", ["no driver", "no pynvml"])
def test_gpu_on_but_unreadable_exports_sampler_down(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "no driver":
        _nvml.use(FakeNVML(no_driver=True))
    else:
        monkeypatch.setitem(sys.modules, "pynvml", None)
        _nvml.use(None)
    try:
        with capture(gpu="on") as t:
            assert t.value(METRIC.GPU_SAMPLER_UP.name) == 0.0
            assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="init") == 1.0
        with capture(gpu="auto") as t:  # no GPU expected: nothing to say
            assert t.value(METRIC.GPU_SAMPLER_UP.name) is None
    finally:
        _nvml.use(None)


def test_sampler_up_while_it_reads_a_gpu(gpu_telemetry: Callable[..., Any], fake: FakeNVML) -> None:
    with gpu_telemetry() as t:
        assert t.value(METRIC.GPU_SAMPLER_UP.name) == 1.0
        assert t.value(METRIC.GPU_SAMPLER_ERRORS.sample_name, call="init") is None


def test_accounting_stats_stand_in_where_per_process_utilization_is_unsupported() -> None:
    pid = os.getpid()
    device = FakeDevice(gpm=False, processes=[(pid, GIB)], process_utilization_supported=False, accounting={pid: 35.0})
    fake = FakeNVML([device])
    sampler = Sampler(fake, interval_s=60.0, process_memory_every=1)
    assert sampler.start()
    try:
        assert _shares(sampler)["sm"] == 0.35
        sampler.sample_once()
        assert fake.calls["nvmlDeviceGetProcessUtilization"] == 1  # asked once, NOT_SUPPORTED
        assert fake.calls["nvmlDeviceGetAccountingMode"] == 1
        assert not sampler.errors()
    finally:
        sampler.stop()
    # Accounting mode off: nothing to say, and no error either.
    device = FakeDevice(gpm=False, processes=[(pid, GIB)], process_utilization_supported=False)
    sampler = Sampler(FakeNVML([device]), interval_s=60.0, process_memory_every=1)
    assert sampler.start()
    try:
        assert _shares(sampler)["sm"] is None
        assert not sampler.errors()
    finally:
        sampler.stop()
