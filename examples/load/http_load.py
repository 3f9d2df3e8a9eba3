"""A small load generator: threads + http.client, a target rate, a bounded duration.

    python examples/load/http_load.py --url http://127.0.0.1:8000/predict --rps 20 --duration 30
    python examples/load/http_load.py --url ... --mode shift      # other vocabulary, longer texts
    python examples/load/http_load.py --url ... --mode large --large-kb 64

Closed loop: ``--concurrency`` workers each send one request at a time, paced so that all of
them together aim at ``--rps``; a slow server gets fewer requests, never a pile-up. Prints
P50/P95/P99 and errors at the end. Locust (locustfile.py) does the same with a web UI; this
one starts in milliseconds, which is what the demo and the tests need.

When the server answers with a ``Server-Timing`` header (an infersight-instrumented server
does), its ``total`` is collected too: the summary then puts the server's own P99 next to the
client's, and the difference is the network (plus any queue in front of the server's handler).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["MODES", "LoadResult", "make_text", "run", "server_total_s"]

# The tiny model's vocabulary (examples/build_model.py) ...
POSITIVE = "good great excellent love wonderful happy fast amazing nice fine best perfect".split()
NEGATIVE = "bad awful terrible hate slow broken sad worst poor wrong ugly useless".split()
NEUTRAL = "the a movie service it was is model server this that food day and very".split()
# ... and words it has never seen: the input shift the drift monitor should notice.
SHIFTED = (
    "quantum ledger invoice turbine glacier protocol mortgage saxophone enzyme harbor "
    "volcano satellite tariff orchestra algorithm pharmacy tungsten"
).split()
MODES = ("normal", "shift", "large")


def make_text(mode: str, rng: random.Random, large_kb: int = 32) -> str:
    """One request text: ``normal`` (short, in vocabulary), ``shift`` (long, unseen words) or
    ``large`` (``large_kb`` KiB of text, for payload-size metrics and truncation)."""
    if mode == "normal":
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(4, 12))]
        words[rng.randrange(len(words))] = rng.choice(POSITIVE if rng.random() < 0.5 else NEGATIVE)
        return " ".join(words)
    if mode == "shift":
        return " ".join(rng.choice(SHIFTED + NEUTRAL) for _ in range(rng.randint(60, 200)))
    if mode == "large":
        out: list[str] = []
        size = 0
        while size < large_kb * 1024:
            word = rng.choice(POSITIVE + NEGATIVE + NEUTRAL)
            out.append(word)
            size += len(word) + 1
        return " ".join(out)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def server_total_s(header: str | None) -> float | None:
    """The ``total`` duration of a Server-Timing value (``model;dur=1.8, total;dur=2.6``, in
    milliseconds) in seconds; None when there is none."""
    for metric in (header or "").split(","):
        name, _, params = metric.partition(";")
        if name.strip() != "total":
            continue
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur":
                try:
                    return float(value.strip().strip('"')) / 1000
                except ValueError:
                    return None
    return None


def _nearest_rank(values: list[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    return data[min(len(data) - 1, max(0, int(q * len(data) + 0.5) - 1))]


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    server_s: list[float] = field(default_factory=list)  # the server's own total (Server-Timing), when sent
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, latency_s: float, status: str, ok: bool, server_s: float | None = None) -> None:
        with self._lock:
            self.latencies_s.append(latency_s)
            if server_s is not None:
                self.server_s.append(server_s)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if not ok:
                self.errors += 1

    @property
    def requests(self) -> int:
        return len(self.latencies_s)

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile of the observed latencies (NaN when none)."""
        with self._lock:
            return _nearest_rank(self.latencies_s, q)

    def server_quantile(self, q: float) -> float:
        """The same over the server's own totals from Server-Timing (NaN when none came)."""
        with self._lock:
            return _nearest_rank(self.server_s, q)

    def summary(self) -> str:
        rps = self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0
        ms = {q: self.quantile(q) * 1000 for q in (0.5, 0.95, 0.99)}
        return (
            f"{self.requests} requests in {self.elapsed_s:.1f}s ({rps:.1f}/s), "
            f"errors {self.errors}, P50 {ms[0.5]:.1f} ms, P95 {ms[0.95]:.1f} ms, "
            f"P99 {ms[0.99]:.1f} ms, statuses {dict(sorted(self.statuses.items()))}"
        ) + self.server_summary()

    def server_summary(self) -> str:
        """``; server (Server-Timing) P50 .. P99 ..`` beside the client's, or "" without it."""
        if not self.server_s:
            return ""
        ms = {q: self.server_quantile(q) * 1000 for q in (0.5, 0.95, 0.99)}
        return (
            f"; server's own time (Server-Timing, {len(self.server_s)} responses): P50 {ms[0.5]:.1f} ms,"
            f" P95 {ms[0.95]:.1f} ms, P99 {ms[0.99]:.1f} ms"
        )


class _Client:
    """One keep-alive connection per worker, reopened after any failure."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s = timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> tuple[int, float | None]:
        """The status and the server's own total (Server-Timing), if it sent one."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            self.conn.request("POST", self.path, body, {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            resp.read()
            if resp.will_close:
                self.close()
            return resp.status, server_total_s(resp.getheader("Server-Timing"))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def run(
    url: str,
    *,
    duration_s: float,
    rps: float = 10.0,
    concurrency: int = 4,
    mode: str | Callable[[], str] = "normal",
    large_kb: int = 32,
    timeout_s: float = 10.0,
    stop: threading.Event | None = None,
    seed: int = 0,
) -> LoadResult:
    """Send ``{"text": ...}`` POSTs to ``url`` for ``duration_s`` (or until ``stop`` is set).

    ``mode`` is a name from ``MODES`` or a function returning the mode to use now (so a caller
    can shift the input while the load runs)."""
    if duration_s <= 0 or rps <= 0 or concurrency < 1:
        raise ValueError("duration_s and rps must be positive, concurrency at least 1")
    stop = stop or threading.Event()
    result = LoadResult()
    interval = concurrency / rps  # each worker's share of the target rate
    start = time.monotonic()
    end = start + duration_s

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        client = _Client(url, timeout_s)
        next_at = start + index * interval / concurrency  # spread the workers' phases
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= end:
                    break
                if next_at > now:
                    stop.wait(min(next_at - now, end - now))
                    continue
                next_at = max(next_at + interval, now - interval)  # catch up, but no burst
                current = mode() if callable(mode) else mode
                body = json.dumps({"text": make_text(current, rng, large_kb)}).encode()
                t0 = time.perf_counter()
                try:
                    status, server_s = client.post(body)
                    result.add(time.perf_counter() - t0, str(status), 200 <= status < 400, server_s)
                except (OSError, http.client.HTTPException) as exc:
                    result.add(time.perf_counter() - t0, type(exc).__name__, False)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True, name=f"load-{i}") for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, end - time.monotonic()) + timeout_s + 1)
    result.elapsed_s = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/predict")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--rps", type=float, default=20.0, help="target requests per second")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--large-kb", type=int, default=32)
    args = parser.parse_args(argv)
    result = run(
        args.url,
        duration_s=args.duration,
        rps=args.rps,
        concurrency=args.concurrency,
        mode=args.mode,
        large_kb=args.large_kb,
    )
    print(result.summary())
    return 0 if result.requests and result.errors < result.requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
