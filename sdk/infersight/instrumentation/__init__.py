"""Automatic instrumentation of Flask, gRPC (sync and asyncio) and transformers pipelines.

Libraries are patched when they are imported (wrapt post-import hooks), so importing
infersight never imports a heavy library the app doesn't use.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from .. import _errors

__all__ = ["SUPPORTED", "InfersightInstrumentor", "instrument_all", "uninstrument_all"]

logger = logging.getLogger("infersight")

# library module -> (instrument, uninstrument, supported versions); one place for versions.
SUPPORTED: dict[str, tuple[str, str, str]] = {
    "flask": ("flask:instrument_flask", "flask:uninstrument_flask", "flask >= 3.0"),
    "grpc": ("grpc:instrument_grpc", "grpc:uninstrument_grpc", "grpcio >= 1.60"),
    "transformers": (
        "transformers:instrument_transformers",
        "transformers:uninstrument_transformers",
        "transformers >= 4.44, < 6",
    ),
}

_active: set[str] = set()


def _load(spec: str) -> Callable[[], None]:
    module, func = spec.split(":")
    mod = __import__(f"{__name__}.{module}", fromlist=[func])
    return getattr(mod, func)  # type: ignore[no-any-return]


def _disabled() -> set[str]:
    raw = os.environ.get("INFERSIGHT_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _on_import(library: str) -> Callable[[Any], None]:
    def hook(_module: Any) -> None:
        if library not in _active:
            return
        try:
            _load(SUPPORTED[library][0])()
        except Exception as exc:
            _errors.report(f"instrument.{library}", exc)

    return hook


def instrument_all(libraries: Collection[str] | None = None) -> None:
    """Instrument the given libraries (default: all supported, less INFERSIGHT_DISABLED_INSTRUMENTATIONS)."""
    wanted = set(SUPPORTED if libraries is None else libraries) - _disabled()
    for library in wanted:
        if library in _active:
            continue
        _active.add(library)
        module = "transformers.pipelines" if library == "transformers" else library
        if module in sys.modules:
            _on_import(library)(sys.modules[module])  # already imported: patch now
        else:
            wrapt.register_post_import_hook(_on_import(library), module)


def uninstrument_all() -> None:
    for library in list(_active):
        _active.discard(library)
        try:
            _load(SUPPORTED[library][1])()
        except ImportError:
            pass
        except Exception as exc:
            _errors.report(f"uninstrument.{library}", exc)


class InfersightInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """The ``opentelemetry_instrumentor`` entry point: ``opentelemetry-instrument python app.py``
    gives the same result as ``import infersight.auto``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # each library is optional and patched only if the app imports it

    def _instrument(self, **kwargs: Any) -> None:
        from .._startup import init

        init(tracer_provider=kwargs.get("tracer_provider"))
        instrument_all(kwargs.get("libraries"))

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument_all()
