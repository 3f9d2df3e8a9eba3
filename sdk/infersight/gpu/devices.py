"""Which NVML device a CUDA device number means.

CUDA numbers the devices it sees (``CUDA_VISIBLE_DEVICES``, fastest first by default); NVML
numbers all of them in PCI order. The UUID torch reports settles it; without torch the
visible-devices list is the best guess.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

__all__ = ["cuda_to_nvml", "visible_nvml_indices"]


def visible_nvml_indices(uuids: Sequence[str], env: str | None) -> list[int]:
    """NVML indices of CUDA devices 0, 1, ... per ``CUDA_VISIBLE_DEVICES`` (``env``)."""
    if env is None:
        return list(range(len(uuids)))
    out: list[int] = []
    for token in env.split(","):
        token = token.strip()
        if token.lstrip("-").isdigit():
            index = int(token)
            if not 0 <= index < len(uuids):
                break  # CUDA ignores the list from the first invalid entry on
            out.append(index)
        elif token.startswith(("GPU-", "MIG-")):  # the sampler lists MIG instances after the GPUs
            matches = [i for i, u in enumerate(uuids) if u.startswith(token)]
            if len(matches) != 1:
                break
            out.append(matches[0])
        else:
            break  # empty, or garbage
    return out


def cuda_to_nvml(cuda_index: int, uuids: Sequence[str], torch: Any = None) -> int | None:
    """NVML index of CUDA device ``cuda_index``, or None when it can't be told."""
    if torch is not None:
        try:
            uuid = str(torch.cuda.get_device_properties(cuda_index).uuid)
            wanted = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            if wanted in uuids:
                return uuids.index(wanted)
        except Exception:
            pass  # old torch without .uuid: fall through
    visible = visible_nvml_indices(uuids, os.environ.get("CUDA_VISIBLE_DEVICES"))
    return visible[cuda_index] if 0 <= cuda_index < len(visible) else None
