"""An in-process webhook receiver standing in for Alertmanager's receivers."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .processes import LOOPBACK, wait_until

__all__ = ["WebhookReceiver", "serving", "webhook_receiver"]


@dataclass
class WebhookReceiver:
    """Records every JSON POST it gets as ``(path, body)``; thread-safe."""

    url: str
    received: list[tuple[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, body: Any) -> None:
        with self._lock:
            self.received.append((path, body))

    def snapshot(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self.received)

    def wait_for(self, predicate: Callable[[str, Any], bool], timeout: float = 10.0) -> tuple[str, Any]:
        """The first received ``(path, body)`` matching ``predicate``, waiting if needed."""

        def match() -> tuple[str, Any] | None:
            return next((r for r in self.snapshot() if predicate(*r)), None)

        found: tuple[str, Any] = wait_until(match, timeout, what="webhook notification")
        return found


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server on a free loopback port that records JSON POSTs; stopped on exit."""
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            receiver.add(self.path, body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test and demo output clean

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    receiver = WebhookReceiver(f"http://{LOOPBACK}:{server.server_address[1]}")
    with serving(server, "webhook-receiver"):
        yield receiver


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer, name: str) -> Iterator[ThreadingHTTPServer]:
    """``server`` answering on a daemon thread while the body runs; shut down and closed after."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
