"""The 1000-TPS scorer: the gRPC example under open-loop load, bare and with infersight.

    python benchmarks/scorer.py [--rate 1000] [--seconds 10] [--rounds 2] [--search-budget 240]
                                [--p99-ms 100] [--quick] [--json PATH]

A fraud scorer must answer every card payment quickly at the rate payments come in. What it is
judged on is the client's P99 at the rate it must carry (1000 req/s here), and the highest rate
it carries with P99 under 100 ms. The servers are examples/grpc_server/server.py as users run it
(the sync ``grpc.server`` with 8 threads, the examples' tiny sentiment model standing in for the
scorer's model). Both are started at once and pinned to CPU 0:
  bare        the same file, with its ``import infersight.auto`` line made a no-op
  infersight  as shipped; every span is exported over OTLP/gRPC to our built collector (shipped
              config on loopback, pinned to CPU 1), which samples them onward to a counting sink

Load comes from a grpc.aio client in its own process, pinned to CPU 1. It runs open loop: the
arrivals are drawn up front (Poisson, seeded, the same for both variants in a round), calls in
flight are not capped, and each call's latency runs from its scheduled arrival, not from when it
was sent. So time spent queueing, in the server or in a generator that fell behind, is counted
(no coordinated omission). The generator reports the rate it sent at and how late it sent. A row
is flagged "load side" when the generator fell behind (sent below 95% of the schedule's rate, P99
send lag over 10 ms, or its own CPU over 90%); then the generator, not the server, was the limit.
Server CPU is the server process's user+system time (/proc), from the start of a phase until the
server is idle again, divided by the calls sent.

The rate search runs per variant. Rates step up x1.5 from --search-start until a step fails (P99
≥ --p99-ms, or any error), then bisect to within 10%. The two variants alternate step by step,
and the whole search is bounded by --search-budget seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench_support import (
    LOOPBACK,
    ROOT,
    cpu_seconds,
    export_to_shipped_collector,
    free_port,
    percentile,
    pinned,
    raise_priority,
    scrape,
)

SERVER_CPUS, LOAD_CPUS = {0}, {1}
EXAMPLE = ROOT / "examples" / "grpc_server" / "server.py"
MODEL = "tiny-sentiment"  # the served name: the model directory's name
INFER = "/inference.GRPCInferenceService/ModelInfer"
VARIANTS = ("bare", "infersight")
LAG_LIMIT_MS = 10.0  # send lag above this is the generator's, not the server's, doing
GEN_RATE_FLOOR = 0.95
WARMUP_CALLS = 10  # before each phase, on a fresh or idle connection
GEN_CPU_CEILING = 0.9
SATURATED_CORES = 0.9  # the server used its core: it could not keep up, latency is queueing
IDLE_CORES = 0.1  # server CPU below this share of a core: its backlog is done
# Runs the example as `python server.py ...` does; "bare" first turns its one infersight line
# into a no-op (the parent package too, so nothing of infersight is imported).
LAUNCH = (
    "import runpy, sys, types\n"
    "if sys.argv[1] == 'bare':\n"
    "    sys.modules['infersight'] = types.ModuleType('infersight')\n"
    "    sys.modules['infersight.auto'] = types.ModuleType('infersight.auto')\n"
    "sys.argv = sys.argv[2:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


# ---- the load generator (its own process) --------------------------------------------------


def arrivals(rate: float, seconds: float, seed: int) -> list[float]:
    """Poisson arrival offsets in [0, seconds)."""
    rng = random.Random(seed)
    out: list[float] = []
    at = rng.expovariate(rate)
    while at < seconds:
        out.append(at)
        at += rng.expovariate(rate)
    return out


def payloads(count: int = 64, seed: int = 0) -> list[bytes]:
    """Serialized ModelInferRequests with one short text each, built once: the generator sends
    bytes and reads bytes, so protobuf work stays out of its loop."""
    sys.path[:0] = [str(ROOT / "examples" / "load"), str(EXAMPLE.parent)]
    from grpc_load import build_request
    from http_load import make_text

    rng = random.Random(seed)
    return [build_request([make_text("normal", rng)], MODEL).SerializeToString() for _ in range(count)]


async def _phase(channel: Any, bodies: list[bytes], offsets: list[float], deadline_s: float) -> dict[str, Any]:
    import grpc

    call = channel.unary_unary(INFER)  # no (de)serializers: bytes in, bytes out
    n = len(offsets)
    latency = [math.nan] * n
    lag = [math.nan] * n
    codes = [""] * n

    async def one(i: int, due: float) -> None:
        lag[i] = time.perf_counter() - due
        try:
            await call(bodies[i % len(bodies)], timeout=deadline_s)
            codes[i] = "OK"
        except grpc.aio.AioRpcError as exc:
            codes[i] = exc.code().name
        latency[i] = time.perf_counter() - due

    tasks = []
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.02
    i = 0
    while i < n:
        now = time.perf_counter()
        if t0 + offsets[i] > now:
            await asyncio.sleep(t0 + offsets[i] - now)
            continue
        while i < n and t0 + offsets[i] <= now:  # everything due now, however late
            tasks.append(asyncio.create_task(one(i, t0 + offsets[i])))
            i += 1
        await asyncio.sleep(0)  # let them start before looking at the clock again
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    last_sent = max((offsets[j] + lag[j] for j in range(n)), default=0.0)
    errors: dict[str, int] = {}
    for code in codes:
        if code != "OK":
            errors[code] = errors.get(code, 0) + 1
    ms = [x * 1e3 for x in latency]
    span = offsets[-1] if offsets else 0.0
    return {
        "scheduled": n,
        "sent": sum(1 for x in lag if not math.isnan(x)),
        "ok": codes.count("OK"),
        "errors": errors,
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
        "max_ms": max(ms, default=math.nan),
        "lag_p99_ms": percentile([x * 1e3 for x in lag], 0.99),
        "schedule_rate": n / span if span > 0 else 0.0,
        "send_rate": n / last_sent if last_sent > 0 else 0.0,
        "generator_cpu": (time.process_time() - cpu0) / wall if wall > 0 else 0.0,
        "wall_s": wall,
        "served_rate": codes.count("OK") / wall if wall > 0 else 0.0,
    }


def generator_main() -> int:
    """Commands, one JSON line each on stdin: prepare (connect, warm up, draw the arrivals), then
    go (run them); each is answered with one JSON line on stdout."""
    import grpc

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # grpc.aio channels bind to the loop current when made
    channels: dict[str, Any] = {}
    bodies = payloads()
    ready: tuple[Any, list[float], float] | None = None
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "prepare":
            target = cmd["target"]
            if target not in channels:
                channels[target] = grpc.aio.insecure_channel(target)
            channel = channels[target]

            async def warm(ch: Any = channel) -> None:
                await asyncio.wait_for(ch.channel_ready(), 60)
                for body in bodies[:WARMUP_CALLS]:
                    await ch.unary_unary(INFER)(body, timeout=30)

            try:
                loop.run_until_complete(warm())
            except (grpc.aio.AioRpcError, asyncio.TimeoutError) as exc:  # a server still behind
                reply: dict[str, Any] = {"ready": False, "error": type(exc).__name__ + ": " + str(exc)[:200]}
            else:
                ready = (channel, arrivals(cmd["rate"], cmd["seconds"], cmd["seed"]), cmd["deadline_s"])
                reply = {"ready": True}
        elif cmd["cmd"] == "go" and ready is not None:
            reply = loop.run_until_complete(_phase(ready[0], bodies, ready[1], ready[2]))
            ready = None
        else:
            break
        print(json.dumps(reply), flush=True)
    for channel in channels.values():
        loop.run_until_complete(channel.close())
    loop.close()
    return 0


class Generator:
    """The generator process, seen from the parent."""

    def __init__(self, cpus: set[int] | None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--generator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(cpus),
        )

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited ({self.proc.wait(10)}) on {cmd['cmd']}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# ---- the servers -------------------------------------------------------------------------


@dataclass
class Server:
    variant: str
    pid: int
    target: str
    metrics_url: str


def model_dir() -> Path:
    """The tests' tiny sentiment model (built once, cached outside the repo); its dir name is MODEL."""
    sys.path.insert(0, str(ROOT / "tools"))
    from stack import cache_dir

    path = cache_dir() / "models" / "tiny-sentiment-v4" / MODEL
    if not (path / "config.json").exists():
        code = "import sys; sys.path.insert(0, sys.argv[1]); from build_model import build; build(sys.argv[2])"
        subprocess.run([sys.executable, "-c", code, str(ROOT / "examples"), str(path)], check=True, timeout=600)
    return path


@contextlib.contextmanager
def servers(tmp: Path, cpus: set[int] | None) -> Iterator[dict[str, Server]]:
    """Both variants started at once (transformers loads in parallel), each waited for; stopped on exit."""
    import grpc

    model = model_dir()
    procs: dict[str, tuple[subprocess.Popen[bytes], int, int, IO[bytes]]] = {}
    try:
        for variant in VARIANTS:
            port, metrics_port = free_port(), free_port()
            env = dict(
                os.environ,
                MODEL=str(model),
                OTEL_SERVICE_NAME="fraud-scorer",
                INFERSIGHT_GPU="off",
                INFERSIGHT_METRICS_PORT=str(metrics_port),
                INFERSIGHT_METRICS_ADDR=LOOPBACK,
                OMP_NUM_THREADS="1",
                TOKENIZERS_PARALLELISM="false",
                HF_HUB_DISABLE_PROGRESS_BARS="1",
            )
            log = open(tmp / f"{variant}.log", "wb")  # noqa: SIM115  (closed below)
            argv = [sys.executable, "-c", LAUNCH, variant, str(EXAMPLE), "--host", LOOPBACK, "--port", str(port)]
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pinned(cpus)
            )
            procs[variant] = (proc, port, metrics_port, log)
        out = {}
        for variant, (proc, port, metrics_port, _) in procs.items():
            target = f"{LOOPBACK}:{port}"
            with grpc.insecure_channel(target) as channel:
                try:
                    grpc.channel_ready_future(channel).result(timeout=180)
                except grpc.FutureTimeoutError:
                    raise RuntimeError(
                        f"{variant} server not up: {(tmp / f'{variant}.log').read_text()[-2000:]}"
                    ) from None
            out[variant] = Server(variant, proc.pid, target, f"http://{LOOPBACK}:{metrics_port}/metrics")
        yield out
    finally:
        for proc, _, _, log in procs.values():
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            log.close()


def counted(server: Server) -> float | None:
    """The calls the server's own metrics counted (None: no metrics served, as bare serves none)."""
    from infersight.conventions import METRIC

    try:
        return scrape(server.metrics_url).get(METRIC.REQUEST_DURATION.name + "_count")
    except OSError:
        return None


def wait_idle(pid: int, timeout_s: float = 60.0) -> float:
    """Until the server's backlog is done: its CPU falls below IDLE_CORES (bounded). Returns its
    CPU seconds when the idle half-second began, so the idle wait itself is not counted."""
    end = time.monotonic() + timeout_s
    before = cpu_seconds(pid)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before < IDLE_CORES * 0.5:
            return before
        before = now
    return before


def phase(gen: Generator, server: Server, rate: float, seconds: float, seed: int, deadline_s: float) -> dict[str, Any]:
    """One open-loop run at ``rate``; the generator's figures plus the server's CPU."""
    warm = gen.ask(cmd="prepare", target=server.target, rate=rate, seconds=seconds, seed=seed, deadline_s=deadline_s)
    if not warm["ready"]:
        raise NotWarm(f"{server.variant} did not answer its warm-up calls at {rate:.0f} req/s: {warm['error']}")
    wait_idle(server.pid)  # the warm-up calls' work is not this phase's
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    res = gen.ask(cmd="go")
    cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
    cpu2 = wait_idle(server.pid)
    res |= {
        "rate": rate,
        "server_cpu_ms_per_request": (cpu2 - cpu0) / max(1, res["sent"]) * 1e3,
        "server_cores": (cpu1 - cpu0) / (t1 - t0),
        "load_side_limit": load_side_limited(res),
    }
    return res


class NotWarm(RuntimeError):
    """The server did not answer the warm-up calls before a phase (still working off a backlog)."""


def load_side_limited(res: dict[str, Any]) -> bool:
    """The generator, not the server, set the pace: it sent late or slow, or ran out of CPU."""
    return bool(
        res["send_rate"] < GEN_RATE_FLOOR * res["schedule_rate"]
        or res["lag_p99_ms"] > LAG_LIMIT_MS
        or res["generator_cpu"] > GEN_CPU_CEILING
    )


# ---- the rate search ---------------------------------------------------------------------


@dataclass
class RateSearch:
    """Highest passing rate: step up by ``factor`` until a step fails, then bisect (geometric)
    until highest pass and lowest fail are within ``tolerance``."""

    start: float
    factor: float = 1.5
    tolerance: float = 1.1
    ceiling: float = 20000.0
    floor: float = 1.0
    passed: float | None = None  # highest rate that passed
    failed: float | None = None  # lowest rate that failed
    steps: list[dict[str, Any]] = field(default_factory=list)

    def next_rate(self) -> float | None:
        """The next rate to try, or None when done."""
        lo, hi = self.passed, self.failed
        if hi is None:
            rate = self.start if lo is None else lo * self.factor
            return rate if rate <= self.ceiling else None
        if lo is None:
            rate = hi / self.factor**2
            return rate if rate >= self.floor else None
        if hi / lo <= self.tolerance:
            return None
        return math.sqrt(lo * hi)

    def record(self, rate: float, ok: bool, details: dict[str, Any] | None = None) -> None:
        self.steps.append({**(details or {}), "rate": rate, "pass": ok})
        if ok:
            self.passed = rate if self.passed is None else max(self.passed, rate)
        else:
            self.failed = rate if self.failed is None else min(self.failed, rate)


def passes(res: dict[str, Any], p99_ms: float) -> bool:
    return bool(res["p99_ms"] < p99_ms and not res["errors"] and res["ok"] == res["scheduled"])


# ---- the report ----------------------------------------------------------------------------


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)


def report(
    args: argparse.Namespace,
    export: str,
    niced: bool,
    main_rows: dict[str, list[dict[str, Any]]],
    searches: dict[str, RateSearch],
    search_s: float,
) -> list[str]:
    nice = ", all at nice -10" if niced else ""
    out = [
        f"### The 1000-TPS scorer: the gRPC example at {args.rate:g} req/s, open loop",
        "",
        f"Server: examples/grpc_server/server.py (sync grpc.server, 8 threads, tiny sentiment model), one "
        f"process per variant pinned to CPU 0. Export: {export}. Load: a grpc.aio client in its own "
        f"process pinned to CPU 1{nice}, Poisson arrivals at {args.rate:g} req/s, latency from each call's "
        f"scheduled arrival, deadline {args.deadline:g} s. Rounds: {args.rounds} x {args.seconds:g} s, "
        "variants interleaved, the same arrivals for both in a round; medians over rounds.",
        "",
        "| variant | sent | OK | errors | served req/s | P50 ms | P99 ms | server CPU ms/request | server CPU cores "
        "| generator sent req/s | send lag P99 ms | generator CPU | limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, rows in main_rows.items():
        errors = sum(sum(r["errors"].values()) for r in rows)
        limit = verdict(median(rows, "server_cores"), any(r["load_side_limit"] for r in rows))
        out.append(
            f"| {name} | {sum(r['sent'] for r in rows)} | {sum(r['ok'] for r in rows)} | {errors} | "
            f"{median(rows, 'served_rate'):.0f} | {median(rows, 'p50_ms'):.2f} | {median(rows, 'p99_ms'):.2f} | "
            f"{median(rows, 'server_cpu_ms_per_request'):.3f} | {median(rows, 'server_cores'):.2f} | "
            f"{median(rows, 'send_rate'):.0f} | {median(rows, 'lag_p99_ms'):.2f} | "
            f"{median(rows, 'generator_cpu'):.2f} | {limit} |"
        )
    out.append("")
    bare, inst = main_rows["bare"], main_rows["infersight"]
    for key, label in (("p50_ms", "P50"), ("p99_ms", "P99"), ("server_cpu_ms_per_request", "server CPU per request")):
        by_round = " ".join(f"{i[key] / b[key]:.2f}" for b, i in zip(bare, inst, strict=True))
        out.append(
            f"- {label}, infersight / bare at {args.rate:g} req/s: **{median(inst, key) / median(bare, key):.2f}** "
            f"(by round: {by_round})"
        )
    out.append(
        f"- served: OK calls over the time from the first arrival to the last answer. Limit: `server` when "
        f"the server used ≥ {SATURATED_CORES} of its core (it could not keep up: latency is queueing), "
        "`load side` when the generator fell behind its schedule (sent below 95% of it, P99 send lag over "
        f"{LAG_LIMIT_MS:g} ms or its CPU over 90%: the row then measures the generator too)"
    )
    out += [
        "",
        f"### Highest rate with P99 < {args.p99_ms:g} ms",
        "",
        f"Steps of {args.search_seconds:g} s (deadline {args.search_deadline:g} s), x1.5 up from "
        f"{args.search_start:g} req/s until a step fails (P99 ≥ {args.p99_ms:g} ms or any error), then "
        f"bisected to within 10%; variants alternate step by step; {search_s:.0f} s in all "
        f"(budget {args.search_budget:g} s). A step marked * had the generator behind its schedule.",
        "",
        "| variant | highest pass req/s | lowest fail req/s | P99 at highest pass ms | server CPU ms/request there "
        "| server CPU cores there | steps (req/s: P99 ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, search in searches.items():
        best = next((s for s in search.steps if s["pass"] and s["rate"] == search.passed), {})
        there = [best.get(k, math.nan) for k in ("p99_ms", "server_cpu_ms_per_request", "server_cores")]
        steps = " ".join(
            f"{s['rate']:.0f}{'✓' if s['pass'] else '✗'}{'*' if s['load_side_limit'] else ''}:{s['p99_ms']:.0f}"
            for s in search.steps
        )
        out.append(
            f"| {name} | {fmt(search.passed)} | {fmt(search.failed)} | "
            f"{there[0]:.2f} | {there[1]:.3f} | {there[2]:.2f} | {steps} |"
        )
    out.append("")
    b, i = searches["bare"].passed, searches["infersight"].passed
    ratio = f"**{i / b:.2f}**" if b and i else "not measured (a variant passed no step)"
    out.append(f"- highest rate with P99 < {args.p99_ms:g} ms, infersight / bare: {ratio}")
    for name, search in searches.items():
        if search.next_rate() is not None:
            out.append(f"- {name}: search cut short (time budget or step limit); its highest pass is a lower bound")
    return out


def verdict(server_cores: float, load_side: bool) -> str:
    """What set the pace: the server's core, the generator, or neither."""
    if server_cores >= SATURATED_CORES:
        return "server; generator also behind" if load_side else "server"
    return "load side" if load_side else "none"


def fmt(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="the comparison's rate, req/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each comparison run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=30.0, help="per-call deadline in the comparison, s")
    parser.add_argument("--p99-ms", type=float, default=100.0)
    parser.add_argument("--search-start", type=float, default=100.0)
    parser.add_argument("--search-seconds", type=float, default=4.0)
    parser.add_argument("--search-deadline", type=float, default=2.0)
    parser.add_argument("--search-budget", type=float, default=240.0, help="seconds for the whole rate search")
    parser.add_argument("--search-steps", type=int, default=40, help="most steps per variant")
    parser.add_argument("--quick", action="store_true", help="smoke run: low rate, 1 round of 1 s, 2 search steps")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        return generator_main()
    if args.quick:
        args.rate, args.seconds, args.rounds = 30.0, 1.0, 1
        args.search_start, args.search_seconds, args.search_steps, args.search_budget = 20.0, 1.0, 2, 30.0
    two_cores = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2
    server_cpus, load_cpus = (SERVER_CPUS, LOAD_CPUS) if two_cores else (None, None)
    main_rows: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    searches = {v: RateSearch(args.search_start) for v in VARIANTS}
    niced = raise_priority()  # inherited by the servers, the generator and the collector
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="infersight-scorer-")))
        export = export_to_shipped_collector(stack, tmp, cpus=load_cpus or set())
        up = stack.enter_context(servers(tmp, server_cpus))
        gen = Generator(load_cpus)
        stack.callback(gen.close)
        for r in range(args.rounds):
            order = VARIANTS[r % 2 :] + VARIANTS[: r % 2]  # neither variant always goes first
            for name in order:
                main_rows[name].append(phase(gen, up[name], args.rate, args.seconds, r, args.deadline))
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.search_budget:
            todo = [
                (v, rate)
                for v, s in searches.items()
                if len(s.steps) < args.search_steps and (rate := s.next_rate()) is not None
            ]
            if not todo:
                break
            for name, rate in todo:
                try:
                    step = len(searches[name].steps)
                    res = phase(gen, up[name], rate, args.search_seconds, step, args.search_deadline)
                except NotWarm as exc:  # counted as a failed step, after the backlog is worked off
                    print(exc, file=sys.stderr)
                    wait_idle(up[name].pid, timeout_s=120.0)
                    failed = {"not_warm": str(exc), "sent": 0, "p99_ms": math.inf, "load_side_limit": False}
                    searches[name].record(rate, False, failed)
                    continue
                searches[name].record(rate, passes(res, args.p99_ms), res)
        search_s = time.monotonic() - t0
        # Every call, warm-ups included, as the instrumented server counted it: a check that the
        # variant really ran instrumented, and that no call went uncounted.
        seen = {v: counted(up[v]) for v in VARIANTS}
    calls = {v: sum(r["sent"] for r in main_rows[v]) + sum(s["sent"] for s in searches[v].steps) for v in VARIANTS}
    warmups = {v: WARMUP_CALLS * (len(main_rows[v]) + len(searches[v].steps)) for v in VARIANTS}
    lines = report(args, export, niced, main_rows, searches, search_s)
    lines.append(
        f"- calls infersight's metrics counted: {fmt(seen['infersight'])} of {calls['infersight']} sent "
        f"+ {warmups['infersight']} warm-up calls; the bare server serves no metrics "
        f"({'none found' if seen['bare'] is None else 'found some'})"
    )
    print("\n".join(lines))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rate": args.rate,
                    "export": export,
                    "comparison": main_rows,
                    "calls": calls,
                    "warmup_calls": warmups,
                    "counted_by_server": seen,
                    "search": {
                        v: {"passed": s.passed, "failed": s.failed, "steps": s.steps} for v, s in searches.items()
                    },
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
