"""The W3C ``Server-Timing`` value: what the server spent, told to the client in the response.

The server writes it when the response headers go out (``value``): the request's finished stages
and its total so far. A client reads the total back (``total_seconds``) to split its own wait
into the server's part and the rest (network, queueing before the handler). Durations are in
milliseconds, as the W3C spec has them.
"""

from __future__ import annotations

from ._records import RequestRecord, now_ns
from .conventions import SERVER_TIMING_TOTAL

__all__ = ["total_seconds", "value"]

# A metric name is an RFC 9110 token: a stage named otherwise is written with "_" instead.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


_TOKENS: dict[str, str] = {}  # stage name -> its token: stage names are few, requests many
_MAX_TOKENS = 1024


def _token(name: str) -> str:
    token = _TOKENS.get(name)
    if token is None:
        if all(c in _TCHAR for c in name) and name:
            token = name
        else:
            token = "".join(c if c in _TCHAR else "_" for c in name) or "_"
        if len(_TOKENS) < _MAX_TOKENS:
            _TOKENS[name] = token
    return token


def value(rec: RequestRecord, at_ns: int = 0) -> str:
    """``preprocess;dur=0.41, model;dur=1.83, total;dur=2.61``: the stages finished so far (a
    stage run several times is summed), then the total from the request's start to ``at_ns``."""
    end = at_ns or now_ns()
    tokens = _TOKENS
    parts = []
    seen = set()
    for stage in rec.stages:
        if stage.end_ns:
            name = tokens.get(stage.name) or _token(stage.name)
            if name in seen or name == SERVER_TIMING_TOTAL:
                return _summed(rec, end)  # a stage run twice, or one named as the total: rare
            seen.add(name)
            ns = stage.end_ns - stage.start_ns
            if ns >= 0:  # on every response: _ms inlined, without a format spec (int's costs the most)
                hundredths = (ns + 5_000) // 10_000
                parts.append(f"{name};dur={hundredths // 100}.{_CENTS[hundredths % 100]}")
            else:
                parts.append(f"{name};dur={_ms(ns)}")
    parts.append(f"{SERVER_TIMING_TOTAL};dur={_ms(end - rec.start_ns)}")
    return ", ".join(parts)


def _summed(rec: RequestRecord, end: int) -> str:
    """``value`` when a metric name repeats: each name once, its stages' durations summed."""
    spent: dict[str, int] = {}
    for stage in rec.stages:
        if stage.end_ns:
            name = _TOKENS.get(stage.name) or _token(stage.name)
            spent[name] = spent.get(name, 0) + stage.end_ns - stage.start_ns
    spent.pop(SERVER_TIMING_TOTAL, None)  # a stage of that name: the total is the request's
    spent[SERVER_TIMING_TOTAL] = end - rec.start_ns
    return ", ".join(f"{name};dur={_ms(ns)}" for name, ns in spent.items())


_CENTS = tuple(f"{i:02d}" for i in range(100))


def _ms(ns: int) -> str:
    """Nanoseconds as milliseconds with two decimals, rounded half up: integer arithmetic, a
    fraction of a float's formatting on the request thread."""
    if ns < 0:
        return f"{ns / 1e6:.2f}"
    hundredths = (ns + 5_000) // 10_000
    return f"{hundredths // 100}.{_CENTS[hundredths % 100]}"


def total_seconds(header: str | None) -> float | None:
    """The ``total`` metric's duration in a Server-Timing value, in seconds; None without one."""
    if not header:
        return None
    try:
        for metric in header.split(","):
            name, _, params = metric.partition(";")
            if name.strip() != SERVER_TIMING_TOTAL:
                continue
            for param in params.split(";"):
                key, _, raw = param.partition("=")
                if key.strip().lower() == "dur":
                    ms = float(raw.strip().strip('"'))
                    return ms / 1e3 if ms >= 0 and ms == ms and ms != float("inf") else None
        return None
    except ValueError:
        return None
