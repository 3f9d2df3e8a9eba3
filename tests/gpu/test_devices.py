"""Which NVML GPU a CUDA device number means (CUDA_VISIBLE_DEVICES, torch's UUIDs)."""

from __future__ import annotations

import types

import pytest

from infersight.gpu.devices import cuda_to_nvml, visible_nvml_indices
from infersight.gpu.sampler import Sampler
from infersight.gpu.testing import ERROR_UNKNOWN, FakeNVML

UUIDS = ["GPU-aaaa-0", "GPU-bbbb-1", "GPU-cccc-2"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, [0, 1, 2]),
        ("2,0", [2, 0]),
        ("1,7,0", [1]),  # CUDA stops at the first invalid entry
        ("GPU-cccc,GPU-aaaa-0", [2, 0]),  # UUID prefixes
        ("GPU-", []),  # ambiguous prefix
        ("", []),
        ("-1", []),
        ("MIG-xyz", []),
    ],
)
def test_visible_devices(env: str | None, expected: list[int]) -> None:
    assert visible_nvml_indices(UUIDS, env) == expected


def test_a_visible_mig_instance_is_found_by_its_uuid() -> None:
    uuids = [*UUIDS, "MIG-dddd-0", "MIG-dddd-1"]  # instances after the GPUs, as the sampler numbers them
    assert visible_nvml_indices(uuids, "MIG-dddd-1") == [4]
    assert visible_nvml_indices(uuids, "MIG-dddd") == []  # ambiguous


def test_torch_uuid_wins_over_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    torch = types.SimpleNamespace(
        cuda=types.SimpleNamespace(get_device_properties=lambda i: types.SimpleNamespace(uuid="cccc-2"))
    )
    assert cuda_to_nvml(0, UUIDS, torch) == 2
    assert cuda_to_nvml(1, UUIDS, None) == 1
    assert cuda_to_nvml(5, UUIDS, None) is None
    broken = types.SimpleNamespace(cuda=types.SimpleNamespace(get_device_properties=None))
    assert cuda_to_nvml(1, UUIDS, broken) == 1  # falls back


def test_sampler_maps_around_a_gpu_it_could_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")
    fake = FakeNVML(3)
    fake.fail("nvmlDeviceGetHandleByIndex", ERROR_UNKNOWN, times=1)  # NVML GPU 0
    sampler = Sampler(fake, interval_s=60.0)
    assert sampler.start()
    try:
        assert [g.index for g in sampler.gpus] == [1, 2]
        assert sampler.default_gpu is None  # CUDA device 0 is NVML GPU 0: not open
        assert sampler.nvml_index(0) is None
        assert sampler.nvml_index(1) == 2
    finally:
        sampler.stop()
