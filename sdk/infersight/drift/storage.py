"""Where drift state lives on disk: one folder per model under ``drift_dir``, written atomically
so a reader (the ``/drift`` page, another worker process) never sees half a file."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["default_drift_dir", "model_dir", "model_slug", "write_atomic"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_drift_dir(service: str) -> Path:
    """``$XDG_CACHE_HOME/infersight/drift/<service>``, else ``~/.cache/infersight/drift/<service>``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "infersight" / "drift" / model_slug(service)


def model_slug(name: str) -> str:
    """A file- and URL-safe name. Names that had to change get a short hash, so ``a/b`` and
    ``a_b`` stay apart."""
    safe = _UNSAFE.sub("_", name).strip("._") or "model"
    if safe != name:
        safe = f"{safe[:80]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return safe


def model_dir(root: Path, model: str) -> Path:
    return root / model_slug(model)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
