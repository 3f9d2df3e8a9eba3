"""The GPU this example's models share, and a GPU-heavy neighbour model to switch on.

With ``--device cuda`` the models run on the GPU and the neighbour (``embedder``) runs large
matmuls on it: real contention, measured by CUDA events. Otherwise ``SimulatedGpu`` stands in:
one lock that every forward pass holds while it runs, as time-slicing gives the GPU to one
context at a time. With ``EXAMPLE_FAKE_GPU=1`` a fake NVML device reports that lock's busy
time as its utilization, so infersight's sampler, its per-model GPU time and the
GPUNoisyNeighbour alert see what they would see on a shared GPU (this is how CI runs it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import infersight

FAKE_GPU = os.environ.get("EXAMPLE_FAKE_GPU", "") == "1"
_GIB = 1 << 30
_SCOPE = contextlib.ExitStack()


class SimulatedGpu:
    """One context at a time; counts the time it was held."""

    name = "cpu (simulated GPU)"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy_ns = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            start = time.perf_counter_ns()
            try:
                yield
            finally:
                self._busy_ns += time.perf_counter_ns() - start

    def busy_ns(self) -> int:
        return self._busy_ns

    def heavy(self, ms: float) -> None:
        with self.hold():
            time.sleep(ms / 1000.0)


class CudaGpu:
    """The real GPU: CUDA schedules the contexts; the neighbour's kernels are matmuls."""

    name = "cuda"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self._a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        yield

    def heavy(self, ms: float) -> None:
        end = time.perf_counter() + ms / 1000.0
        while time.perf_counter() < end:
            for _ in range(8):
                _ = self._a @ self._a  # the kernel is the point
            self.torch.cuda.synchronize()


def install_fake_nvml() -> Any:
    """Route infersight to one fake H100 for this process (before ``infersight.init``)."""
    from infersight.gpu.testing import FakeDevice, FakeNVML, use_fake_nvml

    pid = os.getpid()
    fake = FakeNVML(
        [
            FakeDevice(
                name="NVIDIA H100 80GB HBM3",
                utilization=0,
                gpm=False,
                memory_used=4 * _GIB,
                processes=[(pid, 3 * _GIB)],
                process_utilization={pid: 0.0},
            )
        ]
    )
    _SCOPE.enter_context(use_fake_nvml(fake))  # for the life of the process
    return fake


def drive_fake_utilization(fake: Any, gpu: SimulatedGpu, period_s: float = 0.1) -> threading.Thread:
    """Every ``period_s``, set the fake device's utilization to the simulated GPU's busy share."""

    def run() -> None:
        last_t, last_busy = time.perf_counter_ns(), gpu.busy_ns()
        while True:
            time.sleep(period_s)
            now, busy = time.perf_counter_ns(), gpu.busy_ns()
            share = min(1.0, (busy - last_busy) / max(1, now - last_t))
            last_t, last_busy = now, busy
            device = fake.devices[0]
            device.utilization = round(share * 100)
            device.process_utilization = {os.getpid(): share * 100}

    thread = threading.Thread(target=run, name="fake-gpu-utilization", daemon=True)
    thread.start()
    return thread


class Neighbour:
    """The ``embedder`` model: while on, one long GPU call after another, each its own request."""

    def __init__(self, gpu: SimulatedGpu | CudaGpu, model: str = "embedder", kernel_ms: float = 150.0) -> None:
        self.gpu, self.model, self.kernel_ms = gpu, model, kernel_ms
        self._on = threading.Event()
        self._thread = threading.Thread(target=self._run, name="neighbour", daemon=True)
        self._thread.start()

    @property
    def on(self) -> bool:
        return self._on.is_set()

    def switch(self, on: bool) -> None:
        if on:
            self._on.set()
        else:
            self._on.clear()

    def _run(self) -> None:
        while True:
            self._on.wait()
            with infersight.request(model=self.model, endpoint="/neighbour"), infersight.model():
                self.gpu.heavy(self.kernel_ms)
            time.sleep(0.005)  # others get a turn between calls, as with time-slicing
