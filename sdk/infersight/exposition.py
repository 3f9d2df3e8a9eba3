"""Serve ``/metrics`` (Prometheus text or OpenMetrics with exemplars, by Accept header) and
extra pages such as ``/drift``, from a Flask route or a small background HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from . import _errors
from .metrics import multiprocess_mode

__all__ = ["MetricsServer", "extra_pages", "metrics_payload", "wsgi_metrics_app"]

# path -> () -> (content type, body); the drift monitor registers "/drift".
extra_pages: dict[str, Callable[[], tuple[str, bytes]]] = {}


def _registry(registry: CollectorRegistry | None) -> CollectorRegistry:
    if multiprocess_mode():
        from .multiprocess import LockedMultiProcessCollector

        mp = CollectorRegistry()
        # Locked: dead workers' files are merged and deleted while scrapes may be reading.
        LockedMultiProcessCollector(mp)  # type: ignore[no-untyped-call]
        # Custom collectors have no files: add this process's GPU readings (a scrape reads them,
        # it makes no NVML call).
        from ._runtime import get_runtime

        rt = get_runtime()
        if rt is not None and rt.extras.get("gpu") is not None:
            from .gpu import GpuCollector

            mp.register(GpuCollector(rt.extras["gpu"]))
        return mp
    return registry if registry is not None else REGISTRY


def _observe_pending() -> None:
    """Process what this process recorded since the worker's last drain (every
    INFERSIGHT_FLUSH_INTERVAL), so a scrape counts every request that finished before it."""
    from ._runtime import get_runtime

    rt = get_runtime()
    if rt is not None:
        try:
            rt.worker.drain()
        except Exception as exc:
            _errors.report("scrape", exc)


def metrics_payload(registry: CollectorRegistry | None, accept: str | None) -> tuple[str, bytes]:
    _observe_pending()
    encoder, content_type = choose_encoder(accept or "")
    return content_type, encoder(_registry(registry))


def wsgi_metrics_app(registry: CollectorRegistry | None, metrics_path: str = "/metrics") -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == metrics_path:
            content_type, body = metrics_payload(registry, environ.get("HTTP_ACCEPT"))
        elif path in extra_pages:
            content_type, body = extra_pages[path]()
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found; try " + metrics_path.encode() + b"\n"]
        start_response("200 OK", [("Content-Type", content_type),
                                  ("Content-Length", str(len(body)))])  # fmt: skip
        return [body]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class MetricsServer:
    """The metrics endpoint for apps that aren't Flask (gRPC, workers), on its own port."""

    def __init__(self, registry: CollectorRegistry | None, addr: str, port: int,
                 metrics_path: str = "/metrics") -> None:  # fmt: skip
        self._server = make_server(addr, port, wsgi_metrics_app(registry, metrics_path or "/metrics"),
                                   _ThreadingServer, handler_class=_QuietHandler)  # fmt: skip
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="infersight-metrics", daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
