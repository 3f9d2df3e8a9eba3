"""Automatic instrumentation of Flask, Starlette and FastAPI, LitServe, BentoML, gRPC (sync and
asyncio), Ray Serve, transformers pipelines and PyTriton's inference callables; and of the clients
the app calls others with: requests, httpx, gRPC channels and tritonclient.

Libraries are patched when they are imported (wrapt post-import hooks), so importing
infersight never imports a heavy library the app doesn't use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from .. import _errors
from ._library import Library

__all__ = ["LIBRARIES", "InfersightInstrumentor", "Library", "instrument_all", "uninstrument_all"]

# Every library infersight instruments: the post-import hooks and the entry point's
# instrumentation_dependencies() both come from here.
LIBRARIES: tuple[Library, ...] = (
    Library("flask", module="flask", requirement="flask >= 3.0", patcher="flask"),
    # FastAPI apps are Starlette apps: "starlette" instruments both; "fastapi" only hands
    # FastAPI's own tracing to infersight when infersight's provider is the one that enabled it.
    Library("starlette", module="starlette.applications", requirement="starlette >= 0.37, < 2", patcher="starlette"),
    Library("fastapi", module="fastapi", requirement="fastapi >= 0.115", patcher="fastapi"),
    # LitServe: its API servers are FastAPI apps ("starlette"); this adds the LitAPI's stages,
    # run in its inference workers, to the requests' traces.
    Library("litserve", module="litserve.server", requirement="litserve >= 0.2.19, < 0.3", patcher="litserve"),
    # BentoML: its services are Starlette apps ("starlette"); this adds the stages of each API call.
    Library("bentoml", module="_bentoml_sdk.method", requirement="bentoml >= 1.4, < 1.5", patcher="bentoml"),
    Library("grpc", module="grpc", requirement="grpcio >= 1.60", patcher="grpc"),  # sync and grpc.aio
    # Each replica's HTTP requests (the module is imported in every replica process).
    Library("ray_serve", module="ray.serve._private.replica", requirement="ray >= 2.60, < 3", patcher="ray_serve"),
    # Clients: outgoing calls, for the network's share of a call (see docs/layers.md)
    Library("requests", module="requests", requirement="requests >= 2.28", patcher="requests"),
    Library("httpx", module="httpx", requirement="httpx >= 0.24, < 1", patcher="httpx"),  # sync and async
    Library("grpc_client", module="grpc", requirement="grpcio >= 1.60", patcher="grpc_client"),  # sync and aio
    # Triton: tritonclient's HTTP clients, sync and asyncio (its gRPC clients' channels are
    # "grpc_client"'s), and the inference callables PyTriton binds.
    Library(
        "tritonclient", module="tritonclient.http", requirement="tritonclient >= 2.40", patcher="tritonclient_http"
    ),
    Library(
        "tritonclient_aio",
        module="tritonclient.http.aio",
        requirement="tritonclient >= 2.40",
        patcher="tritonclient_http_aio",
    ),
    Library("pytriton", module="pytriton.triton", requirement="nvidia-pytriton >= 0.5", patcher="pytriton"),
    Library(
        "transformers", module="transformers.pipelines", requirement="transformers >= 4.44, < 6", patcher="transformers"
    ),
)

_active: dict[str, Library] = {}  # by name: what uninstrument_all undoes


def _by_name() -> dict[str, Library]:
    return {library.name: library for library in LIBRARIES}


def _disabled() -> set[str]:
    raw = os.environ.get("INFERSIGHT_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _on_import(library: Library) -> Callable[[Any], None]:
    def hook(_module: Any) -> None:
        if library.name not in _active:
            return  # uninstrumented since: wrapt can't take a hook back
        try:
            library.instrument()
        except Exception as exc:
            _errors.report(f"instrument.{library.name}", exc)

    return hook


def instrument_all(libraries: Collection[str] | None = None) -> None:
    """Instrument the given libraries (default: all supported, less INFERSIGHT_DISABLED_INSTRUMENTATIONS)."""
    known = _by_name()
    wanted = set(known if libraries is None else libraries) - _disabled()
    for name in wanted:
        library = known.get(name)
        if library is None or name in _active:
            continue
        _active[name] = library
        if library.module in sys.modules:
            _on_import(library)(sys.modules[library.module])  # already imported: patch now
        else:
            wrapt.register_post_import_hook(_on_import(library), library.module)


def uninstrument_all() -> None:
    for name, library in list(_active.items()):
        del _active[name]
        try:
            library.uninstrument()
        except ImportError:
            pass
        except Exception as exc:
            _errors.report(f"uninstrument.{name}", exc)


class InfersightInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """The ``opentelemetry_instrumentor`` entry point: ``opentelemetry-instrument python app.py``
    gives the same result as ``import infersight.auto``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return tuple(library.requirement for library in LIBRARIES)

    def instrument(self, **kwargs: Any) -> None:
        # Each library is optional and its version is checked when the app imports it;
        # BaseInstrumentor's check would turn everything off for one library not installed.
        kwargs.setdefault("skip_dep_check", True)
        super().instrument(**kwargs)

    def _instrument(self, **kwargs: Any) -> None:
        from .._startup import init

        init(tracer_provider=kwargs.get("tracer_provider"))
        instrument_all(kwargs.get("libraries"))

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument_all()
