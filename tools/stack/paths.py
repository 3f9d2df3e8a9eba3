"""Where the checkout and the local build cache are: the launcher only runs from a checkout."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ROOT", "cache_dir"]

ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """What tools/setup.sh builds outside the repo (venv, collector, tiny models)."""
    return Path(os.environ.get("INFERSIGHT_CACHE", Path.home() / ".cache" / "infersight"))
