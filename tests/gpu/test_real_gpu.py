"""Against a real NVIDIA GPU (``pytest -m gpu tests/gpu``): skipped where NVML or CUDA is absent.

Written for an H100 (GPM available); on older GPUs the GPM checks skip and the rest runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import infersight
from infersight.conventions import ATTR, METRIC
from infersight.gpu._nvml import PyNVML
from infersight.gpu.collector import GpuCollector
from infersight.gpu.nvtx_ranges import NvtxRanges
from infersight.gpu.sampler import Sampler
from infersight.testing import capture

pytestmark = pytest.mark.gpu

LOAD_S = 0.3


@pytest.fixture(scope="module")
def torch() -> Any:
    """torch with CUDA, after NVML answered; the NVML check first keeps skips cheap."""
    try:
        nvml = PyNVML()
        nvml.nvmlInit()
        count = nvml.nvmlDeviceGetCount()
        nvml.nvmlShutdown()
    except Exception as exc:
        pytest.skip(f"no NVML here: {exc}")
    if count < 1:
        pytest.skip("NVML sees no GPU")
    import torch as torch_module

    if not torch_module.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    torch_module.cuda.init()  # type: ignore[no-untyped-call]
    return torch_module


@pytest.fixture
def sampler(torch: Any) -> Iterator[Sampler]:
    s = Sampler(PyNVML(), interval_s=60.0, mode="on")
    assert s.start()
    yield s
    s.stop()


def busy(torch: Any, seconds: float, size: int = 4096) -> None:
    """Keep the current GPU's SMs and tensor cores busy for about ``seconds``."""
    a = torch.randn(size, size, device="cuda", dtype=torch.float16)
    b = torch.randn(size, size, device="cuda", dtype=torch.float16)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(8):
            a @ b
        torch.cuda.synchronize()


def gpm_supported(s: Sampler, index: int) -> bool:
    gpu = s.gpu(index)
    return gpu is not None and gpu.mode == "gpm"


def test_device_metrics_are_real(sampler: Sampler, torch: Any) -> None:
    registry = CollectorRegistry()
    registry.register(GpuCollector(sampler))
    gpu = sampler.gpus[0]
    labels = {"gpu": str(gpu.index), "uuid": gpu.uuid, "name": gpu.name}
    assert gpu.uuid.startswith(("GPU-", "MIG-")) and gpu.name
    value: Any = registry.get_sample_value
    assert value(METRIC.GPU_UP.name, labels) == 1.0
    assert value(METRIC.GPU_MEMORY_TOTAL.name, labels) > 1 << 30
    assert 0 < value(METRIC.GPU_MEMORY_USED.name, labels) <= value(METRIC.GPU_MEMORY_TOTAL.name, labels)
    assert value(METRIC.GPU_SM_CLOCK.name, labels) > 1e8  # > 100 MHz
    assert value(METRIC.GPU_MEMORY_CLOCK.name, labels) > 1e8
    assert value(METRIC.GPU_POWER.name, labels) > 1.0
    assert value(METRIC.GPU_ENERGY.sample_name, labels) > 0
    assert 0 < value(METRIC.GPU_TEMPERATURE.name, labels) < 120
    assert 0.0 <= value(METRIC.GPU_UTILIZATION.name, labels) <= 1.0
    # torch holds a context here: either NVML attributes memory to this PID, or the series is absent.
    mine = value(METRIC.GPU_PROCESS_MEMORY.name, {"gpu": labels["gpu"], "uuid": gpu.uuid})
    assert mine is None or mine > 0, mine
    throttle = [
        value(METRIC.GPU_THROTTLE.name, {"gpu": labels["gpu"], "uuid": gpu.uuid, "reason": r})
        for r in ("gpu_idle", "sw_power_cap")
    ]
    assert all(v in (0.0, 1.0) for v in throttle)
    # Real NVML rejected nothing the sampler asked for (not-supported calls are not errors).
    assert sampler.errors() == {}, sampler.errors()


def test_utilization_rises_under_load(sampler: Sampler, torch: Any) -> None:
    index = sampler.nvml_index(torch.cuda.current_device())
    assert index is not None
    worker = threading.Thread(target=busy, args=(torch, 1.5))
    worker.start()
    try:
        time.sleep(0.5)
        sampler.sample_once()
        time.sleep(0.3)
        sampler.sample_once()
    finally:
        worker.join(30)
    reading = next(r for r in sampler.readings if r.gpu == str(index))
    assert reading.values[METRIC.GPU_UTILIZATION] > 0.2


def test_gpm_counters_on_hopper(sampler: Sampler, torch: Any) -> None:
    index = sampler.nvml_index(torch.cuda.current_device())
    assert index is not None
    if not gpm_supported(sampler, index):
        major, _ = torch.cuda.get_device_capability()
        if major >= 9:
            pytest.fail("Hopper or later, yet GPM is unsupported (MIG mode? old driver?)")
        pytest.skip("GPM needs Hopper or later")
    worker = threading.Thread(target=busy, args=(torch, 1.5))
    worker.start()
    try:
        time.sleep(0.3)
        sampler.sample_once()
        time.sleep(0.5)
        sampler.sample_once()
    finally:
        worker.join(30)
    reading = next(r for r in sampler.readings if r.gpu == str(index))
    assert reading.mode == "gpm"
    sm = reading.values[METRIC.GPU_SM_ACTIVE]
    tensor = reading.values[METRIC.GPU_TENSOR_ACTIVE]
    assert 0.2 < sm <= 1.0, sm  # fp16 matmuls keep the SMs busy
    assert 0.05 < tensor <= 1.0, tensor  # ... on the tensor cores
    assert 0.0 <= reading.values[METRIC.GPU_DRAM_ACTIVE] <= 1.0
    assert METRIC.GPU_PCIE_TX in reading.values  # bytes/s, from GPM (or NVML if GPM lacks it)


def test_cuda_event_timing_and_counters_on_the_model_span(torch: Any) -> None:
    # Big enough matmuls (~0.3 ms each on an H100) that kernels, not launches, fill the time.
    model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(4)]).cuda().half()
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        model(x)  # warm-up: cuBLAS handles, kernels loaded
    torch.cuda.synchronize()
    with capture(gpu="on", gpu_interval_s=0.2, gpu_span_snapshots=True) as t:
        time.sleep(0.25)  # two sampler ticks: the ring holds a GPM delta
        with infersight.request(model="mlp"), infersight.model(), torch.no_grad():
            end = time.perf_counter() + LOAD_S
            while time.perf_counter() < end:
                for _ in range(5):
                    model(x)
                torch.cuda.synchronize()  # the outputs are needed on the CPU
        with infersight.request(model="mlp"), infersight.model(), torch.no_grad():
            model(x).float().sum().item()  # a short one: the sampler window
        spans = t.spans("model")
        assert len(spans) == 2
        long, short = sorted(spans, key=lambda s: (s.end_time or 0) - (s.start_time or 0), reverse=True)
        attrs: Any = long.attributes
        wall, gpu_busy = attrs[ATTR.GPU_WALL_SECONDS], attrs[ATTR.GPU_BUSY_SECONDS]
        assert wall >= LOAD_S
        assert 0.5 * wall < gpu_busy <= wall * 1.02 + 0.002, (gpu_busy, wall)
        rt = infersight.get_runtime()
        assert rt is not None
        sampler = rt.gpu
        index = sampler.nvml_index(torch.cuda.current_device())
        assert attrs[ATTR.GPU_UUID] == sampler.gpu(index).uuid
        if gpm_supported(sampler, index):
            assert attrs[ATTR.GPU_COUNTER_SOURCE] == "gpm_delta"
            assert attrs[ATTR.GPU_PREFIX + "sm_active"] > 0.2
        short_attrs: Any = short.attributes
        assert short_attrs[ATTR.GPU_COUNTER_SOURCE] == "sampler_window"
        assert 0 < short_attrs[ATTR.GPU_BUSY_SECONDS] < 0.1
        labels = {"model": "mlp", "stage": "model"}
        assert t.value(METRIC.STAGE_GPU_BUSY.name + "_count", **labels) == 2.0


def test_nvtx_ranges_with_cuda(torch: Any) -> None:
    with capture(gpu="on", nvtx=True, gpu_interval_s=60.0) as t:
        rt = infersight.get_runtime()
        assert rt is not None
        ranges = [h for h in rt.hooks if isinstance(h, NvtxRanges)]
        assert len(ranges) == 1, "nvtx package missing?"
        with infersight.request(model="m"):
            with infersight.preprocess():
                x = torch.ones(1024, device="cuda")
            with infersight.model():
                assert ranges[0].depth() == 1
                (x * 2).sum().item()
        assert ranges[0].depth() == 0
        assert len(t.spans("model")) == 1


def test_transformers_pipeline_on_cuda_gets_gpu_counters(torch: Any, tiny_model_dir: Any) -> None:
    """The auto-instrumented pipeline, placed on the GPU: its model spans carry the GPU's figures."""
    from transformers import pipeline

    from infersight.instrumentation import instrument_all, uninstrument_all

    with capture(gpu="on", gpu_interval_s=0.2, models={"tiny-sentiment": {"slo_p99_seconds": 1.0}}) as t:
        instrument_all(["transformers"])
        try:
            clf = pipeline("sentiment-analysis", model=str(tiny_model_dir), device=0)
            assert next(clf.model.parameters()).is_cuda
            clf("warm up")
            time.sleep(0.45)  # sampler readings around the requests: the window source
            for _ in range(3):
                with infersight.request(endpoint="/predict"):
                    out = clf("great excellent movie")
                assert out[0]["label"] in {"POSITIVE", "NEGATIVE"}
            time.sleep(0.25)
        finally:
            uninstrument_all()
        rt = infersight.get_runtime()
        assert rt is not None
        uuid = rt.gpu.gpu(rt.gpu.nvml_index(torch.cuda.current_device())).uuid
        spans = [s for s in t.spans("model") if s.parent is not None and s.attributes]
        assert len(spans) >= 3
        for span in spans[-3:]:
            attrs: Any = span.attributes
            assert attrs[ATTR.GPU_UUID] == uuid
            wall, gpu_busy = attrs[ATTR.GPU_WALL_SECONDS], attrs[ATTR.GPU_BUSY_SECONDS]
            assert 0 < gpu_busy <= wall * 1.02 + 0.002, (gpu_busy, wall)
            assert attrs[ATTR.GPU_COUNTER_SOURCE] in ("sampler_window", "gpm_delta")
        count = t.value(METRIC.STAGE_GPU_BUSY.name + "_count", model="tiny-sentiment", stage="model")
        assert count is not None and count >= 3
