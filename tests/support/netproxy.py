"""A TCP proxy that adds latency and jitter between a client and a server, for network faults.

One asyncio loop in a daemon thread. Each chunk read from either side is written to the other
side ``delay_s`` later, plus a uniform jitter in ``[0, jitter_s]``; chunks keep their order
(a chunk never overtakes the one before it, as on a real TCP path). Bounded: at most
``max_connections`` at once (more are refused), and ``stop()`` closes everything within
seconds. The delay can be changed while it runs (``set_delay``), so one proxy can be "on" and
"off" in the same test.

    with DelayProxy(("127.0.0.1", server_port), delay_s=0.1, jitter_s=0.02) as proxy:
        requests.get(f"http://127.0.0.1:{proxy.port}/predict")
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

__all__ = ["DelayProxy"]

_CHUNK = 65536


class DelayProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        delay_s: float = 0.0,
        jitter_s: float = 0.0,
        max_connections: int = 64,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self.max_connections = max_connections
        self.port = 0
        self.connections = 0  # accepted since start
        self._open = 0
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def set_delay(self, delay_s: float, jitter_s: float = 0.0) -> None:
        """Applies to chunks read from now on (the loop reads both floats; no lock needed)."""
        self.delay_s, self.jitter_s = delay_s, jitter_s

    def _latency(self) -> float:
        return self.delay_s + (self._rng.uniform(0.0, self.jitter_s) if self.jitter_s > 0 else 0.0)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    break
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(send())
        last_due = 0.0
        try:
            while True:
                chunk = await reader.read(_CHUNK)
                last_due = max(last_due, time.monotonic() + self._latency())  # in order
                queue.put_nowait((last_due, chunk))
                if not chunk:
                    break
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            sender.cancel()
            try:
                writer.write_eof() if writer.can_write_eof() else writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            client_w.close()
            return
        self._open += 1
        self.connections += 1
        try:
            server_r, server_w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), 5)
        except (OSError, asyncio.TimeoutError):
            self._open -= 1
            client_w.close()
            return
        try:
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        finally:
            self._open -= 1
            for w in (client_w, server_w):
                w.close()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)  # gather() at shutdown looks the loop up
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def start(self) -> DelayProxy:
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"delay proxy did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
