"""A tiny Alertmanager webhook receiver for the demo stack: logs each alert it receives.

    python examples/webhook_receiver.py --host 0.0.0.0 --port 5001

Alertmanager posts to /page and /ticket (alertmanager/alertmanager.yml); the path is logged
as the receiver. Delivery is at least once, so a notification already seen (same alert
fingerprint, startsAt and status) is logged as a duplicate rather than as a new alert.
GET /healthz answers 200 for the compose healthcheck. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("alert-webhook")


class AlertLog:
    """Alerts seen so far, keyed for de-duplication (bounded: oldest keys are dropped)."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._seen: dict[tuple[str, str, str], None] = {}
        self._max = max_keys
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []  # first sightings, for tests and the demo

    def record(self, receiver: str, payload: dict[str, Any]) -> int:
        """Log the payload's alerts; return how many were new."""
        new = 0
        for alert in payload.get("alerts") or []:
            labels = alert.get("labels") or {}
            key = (
                alert.get("fingerprint") or json.dumps(labels, sort_keys=True),
                alert.get("startsAt", ""),
                alert.get("status", ""),
            )
            with self._lock:
                duplicate = key in self._seen
                if not duplicate:
                    self._seen[key] = None
                    if len(self._seen) > self._max:
                        self._seen.pop(next(iter(self._seen)))
                    self.received.append({"receiver": receiver, **alert})
            new += not duplicate
            log.info(
                "%s%s %s %s model=%s severity=%s summary=%s",
                "duplicate " if duplicate else "",
                receiver,
                alert.get("status"),
                labels.get("alertname"),
                labels.get("model", "-"),
                labels.get("severity", "-"),
                (alert.get("annotations") or {}).get("summary", ""),
            )
        return new


def make_server(host: str, port: int, alerts: AlertLog | None = None) -> ThreadingHTTPServer:
    store = alerts or AlertLog()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(200 if self.path == "/healthz" else 404, {"ok": self.path == "/healthz"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._reply(400, {"error": "expected JSON"})
                return
            new = store.record(self.path.strip("/") or "default", payload)
            self._reply(200, {"new": new})

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # alerts are logged above
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.alerts = store  # type: ignore[attr-defined]
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = make_server(args.host, args.port)
    log.info("listening on http://%s:%d", args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
