"""Fault switches for the example servers, flipped while they run (the demo and the tests).

Two ways in, whichever changed last wins:

* a JSON file named by ``$INFERSIGHT_DEMO_FAULTS``, re-read at most once per second::

      {"slow_preprocess_ms": 0, "slow_model_ms": 0, "slow_postprocess_ms": 250, "cold_start": false,
       "slow_tokenizer_ms_per_kb": 0, "lock_postprocess_ms": 0, "gil_hog": false}

* ``POST /admin/faults`` with the same JSON on an app that called ``faults.install(app)``.

The example apps call ``delay("postprocess")`` etc. from inside their own stage code, so the
slowness lands in the stage it names; ``take_cold_start()`` is true once per switch-on.

* ``slow_tokenizer_ms_per_kb``: preprocessing sleeps this long per KiB of input text
  (``tokenizer_delay(text)``), a tokenizer that is slow on long inputs;
* ``lock_postprocess_ms``: postprocessing holds one process-wide lock this long
  (``locked("postprocess")``), so concurrent requests wait for each other: wall time grows,
  CPU time does not;
* ``gil_hog``: a background thread runs long C calls that hold the GIL (``sum(range(...))``),
  so every request thread waits for it.

Large payloads, load spikes and input shift are client-side: see examples/load/.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

__all__ = [
    "FAULT_KEYS",
    "current",
    "delay",
    "install",
    "locked",
    "set_faults",
    "take_cold_start",
    "tokenizer_delay",
    "write",
]

FAULT_KEYS = (
    "slow_preprocess_ms",
    "slow_model_ms",
    "slow_postprocess_ms",
    "cold_start",
    "slow_tokenizer_ms_per_kb",
    "lock_postprocess_ms",
    "gil_hog",
)
_FLAGS = ("cold_start", "gil_hog")
_ENV = "INFERSIGHT_DEMO_FAULTS"
_REREAD_S = 1.0

_lock = threading.Lock()
_state: dict[str, Any] = {}
_file_mtime: float | None = None
_checked_at = 0.0
_cold_pending = False


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - set(FAULT_KEYS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULT_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in _FLAGS:
            out[key] = bool(value)
        else:
            ms = float(value)
            if not 0 <= ms <= 60_000:
                raise ValueError(f"{key} must be within [0, 60000] ms, got {value!r}")
            out[key] = ms
    return out


def set_faults(values: dict[str, Any]) -> dict[str, Any]:
    """Replace the faults (keys left out are off). Returns the new state."""
    global _state, _cold_pending
    new = _clean(values)
    with _lock:
        _state = new
        _cold_pending = bool(new.get("cold_start"))
        state = dict(_state)
    _gil_hog(bool(new.get("gil_hog")))
    return state


def _refresh() -> None:
    """Pick up the fault file when it changed; cheap enough for the request path."""
    global _checked_at, _file_mtime
    path = os.environ.get(_ENV)
    now = time.monotonic()
    if not path or now - _checked_at < _REREAD_S:
        return
    _checked_at = now
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return
    if mtime == _file_mtime:
        return
    _file_mtime = mtime
    try:
        with open(path, encoding="utf-8") as f:
            set_faults(json.load(f))
    except (OSError, ValueError) as exc:  # a half-written or bad file: keep the last faults
        print(f"faults: ignoring {path}: {exc}", flush=True)


def current() -> dict[str, Any]:
    _refresh()
    with _lock:
        return dict(_state)


def delay(stage: str) -> None:
    """Sleep as long as the fault for ``stage`` says (0 when off)."""
    ms = current().get(f"slow_{stage}_ms", 0.0)
    if ms > 0:
        time.sleep(ms / 1000.0)


def tokenizer_delay(text: object) -> None:
    """Sleep ``slow_tokenizer_ms_per_kb`` per KiB of ``text`` (a string or a list of them)."""
    per_kb = current().get("slow_tokenizer_ms_per_kb", 0.0)
    if per_kb > 0:
        texts = text if isinstance(text, list) else [text]
        size = sum(len(t.encode()) for t in texts if isinstance(t, str))
        time.sleep(per_kb * size / 1024 / 1000.0)


_stage_lock = threading.Lock()


def locked(stage: str) -> None:
    """Hold one process-wide lock for ``lock_<stage>_ms``: concurrent requests queue on it."""
    ms = current().get(f"lock_{stage}_ms", 0.0)
    if ms > 0:
        with _stage_lock:
            time.sleep(ms / 1000.0)


_hog_stop: threading.Event | None = None


def _gil_hog(on: bool) -> None:
    """Start or stop the thread that holds the GIL (one C call of ~35 ms at a time on a 2-core VM)."""
    global _hog_stop
    if on and _hog_stop is None:
        stop = _hog_stop = threading.Event()

        def hog() -> None:
            while not stop.is_set():
                sum(range(1_500_000))  # one C call: the GIL is not released until it returns

        threading.Thread(target=hog, name="gil-hog", daemon=True).start()
    elif not on and _hog_stop is not None:
        _hog_stop.set()
        _hog_stop = None


def take_cold_start() -> bool:
    """True once after cold start was switched on: the app then reloads its model."""
    global _cold_pending
    _refresh()
    with _lock:
        pending, _cold_pending = _cold_pending, False
        return pending


def write(path: str | os.PathLike[str], **values: Any) -> None:
    """Write a fault file atomically (what the demo does while the server runs)."""
    _clean(values)
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(values, f)
    os.replace(tmp, path)


def install(app: Any) -> None:
    """Add ``GET``/``POST /admin/faults`` to a Flask, FastAPI or Starlette app."""
    if hasattr(app, "add_url_rule"):
        _install_flask(app)
    else:
        _install_asgi(app)


def _install_flask(app: Any) -> None:
    from flask import jsonify, request

    def admin_faults() -> Any:
        if request.method == "POST":
            try:
                return jsonify(set_faults(request.get_json(force=True) or {}))
            except (TypeError, ValueError) as exc:
                return jsonify(error=str(exc)), 400
        return jsonify(current())

    app.add_url_rule("/admin/faults", "admin_faults", admin_faults, methods=["GET", "POST"])


def _install_asgi(app: Any) -> None:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    async def admin_faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                return JSONResponse(set_faults(json.loads(await request.body() or b"{}")))
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(current())

    app.add_route("/admin/faults", admin_faults, methods=["GET", "POST"])
