"""FastAPI: its own tracing, when only infersight's tracer provider switched it on, is left to
infersight. (FastAPI apps are Starlette apps: their requests are instrumented by ``starlette``.)

FastAPI traces its requests itself once any tracer provider is set, and infersight sets one when
the app has none. A provider only infersight made then turns FastAPI's tracing off for the app,
as it is created, so the server span is infersight's, at a fraction of the cost. A provider the
user set, globally or in ``FastAPI(telemetry=...)``, leaves it on, and infersight's stages join
FastAPI's server span. The app's metrics and logs settings are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _compat, _errors, _runtime
from ._common import unwrap, wrap

__all__ = ["hand_over_tracing", "instrument", "uninstrument"]


def hand_over_tracing(app: Any) -> None:
    rt = _runtime.get_runtime()
    config = _compat.fastapi_telemetry_config(app)
    if rt is not None and rt.owns_provider and config is not None and config["tracer_provider"] is None:
        config["tracing"] = False


def _init(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        hand_over_tracing(instance)
    except Exception as exc:
        _errors.report("fastapi", exc)
    return result


def instrument() -> None:
    wrap("fastapi.applications", "FastAPI.__init__", _init)


def uninstrument() -> None:
    unwrap("fastapi.applications", "FastAPI.__init__")
