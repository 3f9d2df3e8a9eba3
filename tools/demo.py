"""``make demo`` / ``python tools/demo.py``: the whole loop on one machine, no Docker.

1. builds the tiny sentiment model if missing (examples/build_model.py);
2. starts the Flask example (examples/flask_sentiment/app.py, ``import infersight.auto``), or with
   ``--server fastapi`` its FastAPI twin (examples/fastapi_sentiment/app.py, under uvicorn), on a
   loopback port, its P99 objective 100 ms;
3. starts a real Prometheus (scraping every second, the repo's rule files with their ``for:``
   windows shortened; the shipped files keep production values) and Alertmanager, plus a
   webhook receiver in this process that prints alerts as they arrive;
4. starts Jaeger (the trace backend, ``make jaeger``) and the OpenTelemetry collector
   (``make collector``), which sends the traces to Jaeger over OTLP; without the collector
   traces are off (OTEL_TRACES_EXPORTER=none) and exemplars still link metrics to trace ids;
5. sends load, shows ``infersight top`` live (P99 sparklines), and after ``--fault-at`` seconds
   turns on a fault (``--fault``, slow postprocess by default) so the latency alerts fire: a
   slow stage, a slow tokenizer on long inputs, a lock in postprocessing, a thread hogging the
   GIL, 4 KiB payloads, a load spike, or a cold start (the server process restarted); from then
   on the slowest recent request's trace, fetched from Jaeger, is drawn as a waterfall under
   the table.

It runs this checkout's SDK (sdk/) and starts the stack with tools/stack, as the tests do.
Ctrl-C (or ``--duration``) stops every child and removes the temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import stack

sys.path[:0] = [str(stack.ROOT / "sdk"), str(stack.ROOT / "examples"), str(stack.ROOT / "examples" / "load")]

import http_load  # noqa: E402  (examples/load/)

import faults  # noqa: E402  (examples/)
from build_model import build  # noqa: E402  (examples/)
from infersight import top, traceview  # noqa: E402
from infersight.conventions import COLD_START_PHASES, COLD_TOTAL, METRIC, SPAN  # noqa: E402
from webhook_receiver import AlertLog  # noqa: E402  (examples/)

FAULTS = (
    "slow_postprocess",
    "slow_preprocess",
    "slow_model",
    "cold_start",
    "slow_tokenizer",
    "lock_postprocess",
    "gil_hog",
    "payload_jump",
    "load_spike",
)
FAULT_ALIASES = {"large_payload": "payload_jump"}  # its earlier name
LARGE_KB = 4  # text size of the long inputs of slow_tokenizer and payload_jump
SPIKE_THREADS = 2  # load_spike: the FastAPI example's pool for its sync endpoint
SPIKE_MODEL_MS = 40  # load_spike: the model's time all along, so 2 threads serve ~45 req/s
SLO_P99_S = 0.1
APPS = {
    "flask": stack.ROOT / "examples" / "flask_sentiment" / "app.py",
    "fastapi": stack.ROOT / "examples" / "fastapi_sentiment" / "app.py",
}
SCRAPE_JOB = "model-server"  # the shipped job name for the model servers
TRACE_EVERY_S = 10  # how often (and how long after the fault first) the slowest trace is looked up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds in all (default 0: run until Ctrl-C)"
    )
    parser.add_argument(
        "--fault-at", type=float, default=60, help="seconds of load before the fault is turned on (default 60)"
    )
    parser.add_argument("--server", choices=sorted(APPS), default="flask", help="the example server (default flask)")
    parser.add_argument("--fault", choices=(*FAULTS, *FAULT_ALIASES), default="slow_postprocess")
    parser.add_argument(
        "--fault-ms",
        type=float,
        default=200,
        help="delay of a slow_* fault per request (ms); lock_postprocess holds its lock a quarter of it",
    )
    parser.add_argument("--no-fault", action="store_true", help="never inject a fault")
    parser.add_argument("--rps", type=float, default=15, help="target request rate")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--refresh", type=float, default=2, help="seconds between frames")
    parser.add_argument(
        "--alert-for", default="10s", help="'for:' window of the demo's copy of the alert rules (default 10s)"
    )
    parser.add_argument("--model", default="", help="model dir or hub id (default: the tiny local model)")
    parser.add_argument(
        "--no-tty", action="store_true", help="print frames one after another instead of redrawing the screen"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")


class Events:
    """What happened, with the demo clock; printed live and under the table."""

    def __init__(self, live_print: bool) -> None:
        self.t0 = time.monotonic()
        self.started = False
        self.lines: list[str] = []
        self.live_print = live_print
        self._lock = threading.Lock()

    def start_clock(self) -> None:
        self.t0 = time.monotonic()
        self.started = True

    def add(self, text: str) -> None:
        clock = f"t={time.monotonic() - self.t0:5.1f}s" if self.started else "setup"
        line = f"[{clock}] {text}"
        with self._lock:
            self.lines.append(line)
        if self.live_print or not self.started:  # set-up lines show before the first frame
            print(line, flush=True)

    def recent(self, n: int = 8) -> list[str]:
        with self._lock:
            return self.lines[-n:]


class Alerts:
    """The webhook's notifications as events, each alert once (Alertmanager re-sends a group's
    alerts with each change); read from the main loop, so no locking beyond the receiver's."""

    def __init__(self, receiver: stack.WebhookReceiver, events: Events) -> None:
        self.receiver = receiver
        self.events = events
        self.log = AlertLog()
        self.read = 0

    def drain(self) -> None:
        posts = self.receiver.snapshot()[self.read :]
        self.read += len(posts)
        for path, body in posts:
            if not isinstance(body, dict):
                continue
            before = len(self.log.received)
            self.log.record(path.strip("/") or "default", body)
            for alert in self.log.received[before:]:
                labels = alert.get("labels", {})
                extra = " ".join(f"{k}={labels[k]}" for k in ("model", "severity") if k in labels)
                status = alert.get("status", "?").upper()
                self.events.add(f"webhook /{alert['receiver']}: {status} {labels.get('alertname', '?')} {extra}")

    def firing(self) -> list[str]:
        return sorted(
            {a.get("labels", {}).get("alertname", "?") for a in self.log.received if a.get("status") == "firing"}
        )


def _collector_config(workdir: Path, otlp_port: int, health_port: int, jaeger: str | None) -> Path:
    """Traces only: to Jaeger over OTLP when it runs, else printed one line a batch."""
    exporters: dict[str, Any] = {"debug": {"verbosity": "basic"}}
    if jaeger:
        exporters = {"otlp_grpc/jaeger": {"endpoint": jaeger, "tls": {"insecure": True}}}
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"{stack.LOOPBACK}:{otlp_port}"}}}},
        "processors": {"batch": {"timeout": "500ms"}},
        "exporters": exporters,
        "extensions": {"health_check": {"endpoint": f"{stack.LOOPBACK}:{health_port}"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": list(exporters)}},
            "telemetry": {"metrics": {"level": "none"}},
        },
    }
    out = workdir / "otelcol.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def _start_jaeger(exits: contextlib.ExitStack, workdir: Path, events: Events) -> stack.Jaeger | None:
    """Jaeger, the trace backend, if it was built (`make jaeger`); None without it."""
    binary = stack.jaeger_binary()
    if not os.access(binary, os.X_OK):
        events.add("Jaeger not built (`make jaeger`): traces are not stored")
        return None
    try:
        jaeger = exits.enter_context(stack.run_jaeger(workdir / "jaeger", binary))
    except (RuntimeError, TimeoutError) as exc:
        events.add(f"Jaeger did not start ({exc}); traces are not stored")
        return None
    events.add(f"Jaeger (trace backend) on {jaeger.url}, OTLP in on {jaeger.otlp_endpoint}")
    return jaeger


def _start_collector(
    exits: contextlib.ExitStack, workdir: Path, events: Events, jaeger: stack.Jaeger | None
) -> dict[str, str]:
    """The collector if it was built, else traces off; the server's OTel settings either way."""
    binary = stack.collector_binary()
    if not os.access(binary, os.X_OK):
        events.add("collector not built (`make collector`): traces off, exemplars still carry trace ids")
        return {"OTEL_TRACES_EXPORTER": "none"}
    otlp_port, health_port = stack.free_port(), stack.free_port()
    config = _collector_config(workdir, otlp_port, health_port, jaeger.otlp_endpoint if jaeger else None)
    health = f"http://{stack.LOOPBACK}:{health_port}/"
    try:
        exits.enter_context(stack.run_collector(binary, config, workdir / "otelcol.log", health_url=health))
    except (RuntimeError, TimeoutError) as exc:
        events.add(f"collector did not start ({exc}); traces off")
        return {"OTEL_TRACES_EXPORTER": "none"}
    events.add(
        f"collector {binary.name} on {stack.LOOPBACK}:{otlp_port} (traces on" + (", to Jaeger)" if jaeger else ")")
    )
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{stack.LOOPBACK}:{otlp_port}",
    }


def _model_dir(requested: str) -> str:
    if requested:
        return requested
    target = stack.cache_dir() / "models" / "tiny-sentiment"
    if not (target / "config.json").exists():
        print(f"building the tiny sentiment model in {target} (a few seconds) ...", flush=True)
    return str(build(target))


def _remaining(deadline: float, limit: float) -> float:
    """A readiness wait's limit: ``limit``, or less when ``--duration`` ends sooner."""
    return min(limit, max(1.0, deadline - time.monotonic()))


@dataclass
class Outcome:
    """What the summary under the last frame reports."""

    alerts: Alerts | None = None
    load: Any = None  # http_load.LoadResult


def _serve(
    args: argparse.Namespace, exits: contextlib.ExitStack, workdir: Path, events: Events, deadline: float, out: Outcome
) -> int:
    """Start everything on ``exits`` (stopped when it closes), then load, frames and the fault until ``deadline``."""
    tty = not events.live_print
    model = _model_dir(args.model)
    label = os.path.basename(model.rstrip("/")) if os.path.isdir(model) else model
    receiver = exits.enter_context(stack.webhook_receiver())
    alerts = out.alerts = Alerts(receiver, events)
    exits.callback(alerts.drain)  # what arrived while the stack stops, before the receiver goes
    fault_file = workdir / "faults.json"
    server_name, server_args, from_start = server_setup(args, fault_file)
    pythonpath = os.pathsep.join(filter(None, [str(stack.ROOT / "sdk"), os.environ.get("PYTHONPATH")]))
    env = dict(
        os.environ,
        MODEL=model,
        PYTHONPATH=pythonpath,
        INFERSIGHT_DEMO_FAULTS=str(fault_file),
        INFERSIGHT_MODELS=json.dumps({label: {"version": "1", "slo_p99_seconds": SLO_P99_S}}),
        OTEL_SERVICE_NAME="sentiment-demo",
        TOKENIZERS_PARALLELISM="false",
        # One torch thread per request: 4 clients on a small machine, no oversubscription.
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    jaeger = _start_jaeger(exits, workdir, events)
    env.update(_start_collector(exits, workdir, events, jaeger))

    port = stack.free_port()
    events.add(
        f"starting the {server_name} example server ({label}) on {stack.LOOPBACK}:{port},"
        " Alertmanager and Prometheus ..."
    )
    if from_start:
        events.add(from_start)
    argv = [sys.executable, str(APPS[server_name]), "--port", str(port), "--model", model, *server_args]
    log = workdir / "server.log"
    server = stack.Service("server", port, stack.spawn(argv, log, env, cwd=stack.ROOT), log)
    servers = [server]  # the current one last: --fault cold_start starts a new process
    exits.callback(lambda: servers[-1].stop())
    am_config = stack.alertmanager_config(workdir / "alertmanager.yml", receiver.url, group_interval="5s")
    am = exits.enter_context(
        stack.alertmanager(am_config, workdir, ("--log.level=warn",), timeout=_remaining(deadline, 30))
    )
    try:
        stack.wait_answering(server.process, f"{server.url}/healthz", _remaining(deadline, 120), what="server")
    except (RuntimeError, TimeoutError) as exc:
        print(f"demo: server failed: {exc}\n--- server log ---\n{server.log(3000)}", file=sys.stderr)
        return 1
    # Prometheus last, once the server answers: no "target down" from the start-up.
    rules = stack.rules_copy(workdir / "rules", args.alert_for)
    targets = {SCRAPE_JOB: [server.instance]}
    prom_config = stack.prometheus_config(workdir / "prometheus.yml", rules, targets, am.instance)
    prom = exits.enter_context(
        stack.prometheus(prom_config, workdir, ("--log.level=warn",), timeout=_remaining(deadline, 30))
    )
    warm = http_load.run(f"{server.url}/predict", duration_s=2, rps=10, concurrency=1)
    if not warm.requests or warm.errors:
        print(f"demo: the server fails requests ({warm.summary()})\n{server.log(3000)}", file=sys.stderr)
        return 1
    events.start_clock()
    events.add(f"server {server.url}  prometheus {prom.url}  alertmanager {am.url}  (logs: {workdir})")
    p99 = f"histogram_quantile(0.99, sum by (le) (rate({METRIC.REQUEST_DURATION.name}_bucket[1m])))"
    query = urllib.parse.urlencode({"g0.expr": p99, "g0.tab": "0", "g0.show_exemplars": "1"})
    events.add(f"P99 with exemplars (dots = trace ids): {prom.url}/graph?{query}")
    if jaeger:
        events.add(
            f"slowest recent trace as a waterfall: infersight trace --prometheus {prom.url} --jaeger {jaeger.url}"
        )
    events.add(
        f"load: {args.rps:g} req/s from {args.concurrency} clients; P99 objective "
        f"{SLO_P99_S * 1000:.0f} ms for model {label}"
    )

    stop_load = threading.Event()
    load_mode = ["normal"]  # the faults with long inputs switch it to "large"

    def load() -> None:
        out.load = http_load.run(
            f"{server.url}/predict",
            duration_s=10**9,
            rps=args.rps,
            concurrency=args.concurrency,
            stop=stop_load,
            mode=lambda: load_mode[0],
            large_kb=LARGE_KB,
        )

    load_thread = threading.Thread(target=load, name="demo-load", daemon=True)
    load_thread.start()
    exits.callback(load_thread.join, 15)
    exits.callback(stop_load.set)  # first: the load stops before the server does
    if args.no_fault:
        events.add("no fault will be injected (--no-fault)")
    else:
        events.add(f"will inject {args.fault} at t={args.fault_at:g}s")
    source = top.PrometheusSource(prom.url, window="30s")
    history = top.History()
    fault_on = args.no_fault
    cold_start_pending = False
    waterfall, waterfall_at = "", 0.0
    while time.monotonic() < deadline:
        t = time.monotonic() - events.t0
        if not fault_on and t >= args.fault_at:
            fault_on = True
            waterfall_at = time.monotonic()  # the first look once slow requests were scraped
            if args.fault == "cold_start":
                events.add("injecting a cold start: the server process is restarted (as a new pod or Lambda would be)")
                servers[-1].stop()
                restarted = workdir / f"server-{len(servers)}.log"
                server = stack.Service("server", port, stack.spawn(argv, restarted, env, cwd=stack.ROOT), restarted)
                servers.append(server)
                stack.wait_answering(server.process, f"{server.url}/healthz", _remaining(deadline, 120), what="server")
                cold_start_pending = True
            elif args.fault in ("slow_tokenizer", "payload_jump", "lock_postprocess", "gil_hog", "load_spike"):
                _inject_other(args, fault_file, load_mode, server.url, stop_load, exits, events)
            else:
                faults.write(fault_file, **{f"{args.fault}_ms": args.fault_ms})
                stage = args.fault.removeprefix("slow_")
                events.add(
                    f"injecting slow {stage} (+{args.fault_ms:g} ms per request) at t={t:.0f}s; "
                    f"expect InferenceSLOBreachByStage naming {stage} within ~1 min (demo rules: for {args.alert_for})"
                )
        if cold_start_pending and (line := _cold_start_line(server.url)):
            cold_start_pending = False
            events.add(line)
            events.add(f"the cold start as a trace: the span named {SPAN.COLD_START} (service sentiment-demo)")
        dead = [s for s in (server, am, prom) if s.process.poll() is not None]
        if dead:
            print(f"demo: {dead[0].name} exited\n{dead[0].log(3000)}", file=sys.stderr)
            return 1
        alerts.drain()
        snap = source.snapshot()
        history.add(snap)
        frame = top.render(snap, color=tty, history=history)
        if jaeger and fault_on and time.monotonic() - waterfall_at >= TRACE_EVERY_S:
            waterfall_at = time.monotonic()
            waterfall = _slowest_trace(prom.url, jaeger.url, tty) or waterfall
        shown = ["", waterfall] if waterfall else []
        if tty:
            lines = [frame, *shown, "", "EVENTS", *events.recent(8), "", "(Ctrl-C to stop)"]
            sys.stdout.write(top.CLEAR + "\n".join(lines) + "\n")
        else:
            sys.stdout.write(f"--- frame t={t:.0f}s ---\n{frame}\n" + "\n".join(shown[1:]) + ("\n" if shown else ""))
        sys.stdout.flush()
        time.sleep(max(0.0, min(args.refresh, deadline - time.monotonic())))
    return 0


def _inject_other(
    args: argparse.Namespace,
    fault_file: Path,
    load_mode: list[str],
    url: str,
    stop_load: threading.Event,
    exits: contextlib.ExitStack,
    events: Events,
) -> None:
    """The faults besides a slow stage and a cold start, and what the view should then say."""
    expect = "expect InferenceSLOBreachByStage naming"
    if args.fault == "slow_tokenizer":
        faults.write(fault_file, slow_tokenizer_ms_per_kb=args.fault_ms / LARGE_KB)
        load_mode[0] = "large"
        events.add(f"injecting a tokenizer slow on long inputs, and {LARGE_KB} KiB inputs; {expect} preprocess")
    elif args.fault == "payload_jump":
        load_mode[0] = "large"
        events.add(f"injecting {LARGE_KB} KiB inputs (payload jump); {expect} preprocess, 'payload xN'")
    elif args.fault == "lock_postprocess":
        faults.write(fault_file, lock_postprocess_ms=args.fault_ms / 4)
        events.add(f"injecting a lock in postprocess; {expect} postprocess, 'waiting' (CPU time did not grow)")
    elif args.fault == "gil_hog":
        faults.write(fault_file, gil_hog=True)
        events.add("injecting a background thread that hogs the GIL; top and the alert say 'GIL contention'")
    else:  # load_spike: four times the clients and the rate, on top of the steady load

        def spike() -> None:
            http_load.run(
                f"{url}/predict",
                duration_s=10**9,
                rps=args.rps * 4,
                concurrency=args.concurrency * 4,
                stop=stop_load,
                seed=1,
            )

        thread = threading.Thread(target=spike, name="demo-spike", daemon=True)
        thread.start()
        exits.callback(thread.join, 15)
        events.add(f"injecting a load spike ({args.rps * 5:g} req/s); {expect} outside_stages, 'traffic xN'")


def _cold_start_line(url: str) -> str:
    """The server's last cold start by phase (``infersight_cold_start_seconds``), "" before its first request."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            samples = top.parse_metrics(resp.read().decode())
    except OSError:
        return ""
    phases = {
        dict(labels)["phase"]: value for (name, labels), value in samples.items() if name == METRIC.COLD_START.name
    }
    if COLD_TOTAL not in phases:
        return ""
    order = [p for p in COLD_START_PHASES if p in phases and p != COLD_TOTAL]
    parts = ", ".join(f"{p} {phases[p]:.2f}s" for p in order)
    return f"cold start {phases[COLD_TOTAL]:.2f}s: {parts} (model_load includes read_weights, to_device, warm_up)"


def _slowest_trace(prometheus_url: str, jaeger_url: str, color: bool) -> str:
    """The slowest request of the last minute that Jaeger holds, as a waterfall ("" if none yet)."""
    try:
        found = traceview.slowest_stored_trace(prometheus_url, jaeger_url, window_s=60)
    except (OSError, RuntimeError, ValueError):
        return ""
    if found is None:
        return ""
    exemplar, trace = found
    return traceview.render_waterfall(
        trace, color=color, title=f"slowest recent request ({exemplar.value * 1000:.0f} ms)"
    )


def server_setup(args: argparse.Namespace, fault_file: Path) -> tuple[str, list[str], str]:
    """The server, its extra arguments and its fault switches from the start, for ``args.fault``;
    plus a line saying what is on from the start ("" when nothing is). The fault itself comes
    later (``_inject_other``): the payload jump and the load spike are the client's doing, on a
    server that was like this all along."""
    fault = "" if args.no_fault else FAULT_ALIASES.get(args.fault, args.fault)
    if fault == "payload_jump":
        per_kb = args.fault_ms / LARGE_KB
        faults.write(fault_file, slow_tokenizer_ms_per_kb=per_kb)
        return args.server, [], f"the tokenizer costs {per_kb:g} ms per KiB of input all along (a few words: ~1 ms)"
    if fault == "load_spike":
        faults.write(fault_file, slow_model_ms=SPIKE_MODEL_MS)
        line = (
            f"load_spike runs the FastAPI example with {SPIKE_THREADS} threads for its endpoint (Flask's"
            f" server starts a thread per request: nothing would queue); its model takes {SPIKE_MODEL_MS} ms"
        )
        return "fastapi", ["--threads", str(SPIKE_THREADS)], line
    faults.write(fault_file)  # all off
    return args.server, [], ""


def run(args: argparse.Namespace) -> int:
    args.fault = FAULT_ALIASES.get(args.fault, args.fault)
    started = time.monotonic()
    deadline = started + args.duration if args.duration > 0 else float("inf")
    missing = [name for name in ("prometheus", "alertmanager") if stack.find_binary(name) is None]
    if missing:
        print(
            f"demo: {', '.join(missing)} not found; run `make setup` (tools/setup.sh installs the "
            "Debian packages prometheus and prometheus-alertmanager)",
            file=sys.stderr,
        )
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C (even where a shell started us with SIGINT ignored), SIGTERM, and SIGHUP from a
    # closed terminal all stop the demo the same way, children and temp dir included.
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    workdir = Path(tempfile.mkdtemp(prefix="infersight-demo-"))
    events = Events(live_print=not (sys.stdout.isatty() and not args.no_tty))
    out = Outcome()
    code = 0
    try:
        with contextlib.ExitStack() as exits:
            code = _serve(args, exits, workdir, events, deadline, out)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:  # a part of the stack did not start
        print(f"demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if out.load is not None:
        print(f"load: {out.load.summary()}")
    firing = out.alerts.firing() if out.alerts else []
    print(f"alerts received by the webhook: {', '.join(firing) if firing else 'none'}")
    print(f"demo finished after {time.monotonic() - started:.0f}s; all processes stopped")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/demo.py", description=(__doc__ or "").splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
