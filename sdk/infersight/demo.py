"""``make demo`` / ``python -m infersight.demo``: the whole loop on one machine, no Docker.

1. builds the tiny sentiment model if missing (examples/build_model.py);
2. starts the Flask example (examples/flask_sentiment/app.py, ``import infersight.auto``) on a
   loopback port, its P99 objective 100 ms;
3. starts a real Prometheus (scraping every second, the repo's rule files with their ``for:``
   windows shortened; the shipped files keep production values) and Alertmanager, plus a
   webhook receiver in this process that prints alerts as they arrive;
4. starts the OpenTelemetry collector if it was built (``make collector``); without it traces
   are off (OTEL_TRACES_EXPORTER=none) and exemplars still link metrics to trace ids;
5. sends load, shows ``infersight top`` live, and after ``--fault-at`` seconds turns on a
   fault (slow postprocess) so the latency alerts fire.

Ctrl-C (or ``--duration``) stops every child and removes the temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import top
from .conventions import METRIC

__all__ = ["add_arguments", "main", "run"]

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("slow_postprocess", "slow_preprocess", "slow_model", "cold_start")
SLO_P99_S = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=0,
                        help="stop after this many seconds in all (default 0: run until Ctrl-C)")  # fmt: skip
    parser.add_argument("--fault-at", type=float, default=60,
                        help="seconds of load before the fault is turned on (default 60)")  # fmt: skip
    parser.add_argument("--fault", choices=FAULTS, default="slow_postprocess")
    parser.add_argument("--fault-ms", type=float, default=200, help="delay of a slow_* fault (ms)")
    parser.add_argument("--no-fault", action="store_true", help="never inject a fault")
    parser.add_argument("--rps", type=float, default=15, help="target request rate")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--refresh", type=float, default=2, help="seconds between frames")
    parser.add_argument("--alert-for", default="10s",
                        help="'for:' window of the demo's copy of the alert rules (default 10s)")  # fmt: skip
    parser.add_argument("--model", default="", help="model dir or hub id (default: the tiny local model)")
    parser.add_argument("--no-tty", action="store_true",
                        help="print frames one after another instead of redrawing the screen")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout_s: float, alive: Callable[[], bool]) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if not alive():
            raise RuntimeError(f"process exited before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


def _duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].replace(".", "", 1).isdigit():
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(f"not a duration: {text!r}")


class Children:
    """Child processes, each logging to a file; stopped in reverse order, always."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        if shutil.which("setpriv"):
            # Die with the demo even if it is killed outright (SIGKILL, a closed terminal).
            cmd = ["setpriv", "--pdeathsig", "TERM", "--", *cmd]
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=ROOT)  # fmt: skip
        self.procs.append((name, proc, log))
        return proc

    def log_tail(self, name: str, lines: int = 25) -> str:
        for n, _, log in self.procs:
            if n == name and log.exists():
                return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def dead(self) -> list[str]:
        return [name for name, proc, _ in self.procs if proc.poll() is not None]

    def stop_all(self, timeout_s: float = 8.0) -> None:
        for _, proc, _ in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        end = time.monotonic() + timeout_s
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class Events:
    """What happened, with the demo clock; printed live and under the table."""

    def __init__(self, live_print: bool) -> None:
        self.t0 = time.monotonic()
        self.started = False
        self.lines: list[str] = []
        self.alerts: list[dict[str, Any]] = []
        self.seen: set[tuple[Any, ...]] = set()
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


def _webhook_server(events: Events) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.end_headers()
            try:
                payload = json.loads(body)
            except ValueError:
                return
            for alert in payload.get("alerts", []):
                labels = alert.get("labels", {})
                # Alertmanager re-sends a group's alerts with each change: print each once.
                key = (self.path, alert.get("fingerprint"), alert.get("status"), alert.get("startsAt"))
                if key in events.seen:
                    continue
                events.seen.add(key)
                events.alerts.append({"receiver": self.path, **alert})
                extra = " ".join(f"{k}={labels[k]}" for k in ("model", "severity") if k in labels)
                events.add(f"webhook {self.path}: {alert.get('status', '?').upper()} "
                           f"{labels.get('alertname', '?')} {extra}")  # fmt: skip

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-webhook", daemon=True).start()
    return server


def _prometheus_config(workdir: Path, server_port: int, am_port: int, alert_for: str) -> Path:
    """A demo copy of prometheus/prometheus.yml and the rule files: fast scrape and evaluation,
    loopback targets, ``for:`` windows no longer than ``alert_for``."""
    import yaml

    limit = _duration_s(alert_for)
    rules_dir = workdir / "rules"
    rules_dir.mkdir()
    for path in sorted((ROOT / "prometheus-rules").glob("*.rules.yaml")):
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups", []):
            group.pop("interval", None)
            for rule in group.get("rules", []):
                if "for" in rule and _duration_s(str(rule["for"])) > limit:
                    rule["for"] = alert_for
        (rules_dir / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    shipped = ROOT / "prometheus" / "prometheus.yml"
    config: dict[str, Any] = yaml.safe_load(shipped.read_text()) if shipped.exists() else {}
    config["global"] = {**config.get("global", {}), "scrape_interval": "1s", "scrape_timeout": "1s",
                        "evaluation_interval": "1s"}  # fmt: skip
    config["rule_files"] = [str(rules_dir / "*.rules.yaml")]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]}
    config["scrape_configs"] = [{"job_name": "model-server", "metrics_path": "/metrics",
                                 "static_configs": [{"targets": [f"127.0.0.1:{server_port}"]}]}]  # fmt: skip
    out = workdir / "prometheus.yml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def _alertmanager_config(workdir: Path, webhook_port: int) -> Path:
    """A demo copy of alertmanager/alertmanager.yml: webhooks on loopback, no waiting."""
    import yaml

    shipped = ROOT / "alertmanager" / "alertmanager.yml"
    config: dict[str, Any] = yaml.safe_load(shipped.read_text()) if shipped.exists() else {}
    route = config.setdefault("route", {"receiver": "demo"})
    route.update(group_wait="1s", group_interval="5s", repeat_interval="1h")
    receivers = config.setdefault("receivers", [])
    if not receivers:
        receivers.append({"name": route["receiver"], "webhook_configs": [{"url": "http://x/alerts"}]})
    for receiver in receivers:
        for hook in receiver.get("webhook_configs", []):
            path = urllib.parse.urlsplit(hook["url"]).path or "/"
            hook["url"] = f"http://127.0.0.1:{webhook_port}{path}"
    out = workdir / "alertmanager.yml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def _collector_binary() -> Path | None:
    """The collector tools/build-collector.sh built for the current manifest, if it did."""
    manifest = ROOT / "collector-config" / "builder-config.yaml"
    if not manifest.exists():
        return None
    key = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("INFERSIGHT_CACHE", Path.home() / ".cache" / "infersight"))
    binary = cache / "otelcol" / key / "otelcol-infersight"
    return binary if os.access(binary, os.X_OK) else None


def _collector_config(workdir: Path, otlp_port: int, health_port: int) -> Path:
    import yaml

    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{otlp_port}"}}}},
        "processors": {"batch": {}},
        "exporters": {"debug": {"verbosity": "basic"}},
        "extensions": {"health_check": {"endpoint": f"127.0.0.1:{health_port}"}},
        "service": {
            "extensions": ["health_check"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["debug"]}},
            "telemetry": {"metrics": {"level": "none"}},
        },
    }
    out = workdir / "otelcol.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def _wait_all(ready: Sequence[tuple[str, subprocess.Popen[bytes], str, float]], children: Children,
              deadline: float) -> bool:  # fmt: skip
    for name, proc, url, limit in ready:
        try:
            _wait_http(url, min(limit, max(1.0, deadline - time.monotonic())), lambda p=proc: p.poll() is None)  # type: ignore[misc]
        except (RuntimeError, TimeoutError) as exc:
            print(f"demo: {name} failed: {exc}\n--- {name} log ---\n{children.log_tail(name)}", file=sys.stderr)
            return False
    return True


def _model_dir(requested: str) -> str:
    if requested:
        return requested
    sys.path.insert(0, str(ROOT / "examples"))
    from build_model import build  # type: ignore[import-not-found]

    cache = Path(os.environ.get("INFERSIGHT_CACHE", Path.home() / ".cache" / "infersight"))
    target = cache / "models" / "tiny-sentiment"
    if not (target / "config.json").exists():
        print(f"building the tiny sentiment model in {target} (a few seconds) ...", flush=True)
    return str(build(target))


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = started + args.duration if args.duration > 0 else float("inf")
    tty = sys.stdout.isatty() and not args.no_tty
    app = ROOT / "examples" / "flask_sentiment" / "app.py"
    if not app.exists():
        print(f"demo: {app} not found; run the demo from a checkout of the repository", file=sys.stderr)
        return 2
    missing = [b for b in ("prometheus", "prometheus-alertmanager") if shutil.which(b) is None]
    if missing:
        print(f"demo: {', '.join(missing)} not found; run `make setup` (tools/setup.sh installs the "
              "Debian packages prometheus and prometheus-alertmanager)", file=sys.stderr)  # fmt: skip
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C (even where a shell started us with SIGINT ignored), SIGTERM, and SIGHUP from a
    # closed terminal all stop the demo the same way, children and temp dir included.
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    workdir = Path(tempfile.mkdtemp(prefix="infersight-demo-"))
    children = Children(workdir)
    events = Events(live_print=not tty)
    webhook: ThreadingHTTPServer | None = None
    stop_load = threading.Event()
    load_thread: threading.Thread | None = None
    load_result: list[Any] = []
    try:
        model = _model_dir(args.model)
        label = os.path.basename(model.rstrip("/")) if os.path.isdir(model) else model
        port, prom_port, am_port = _free_port(), _free_port(), _free_port()
        webhook = _webhook_server(events)
        fault_file = workdir / "faults.json"
        sys.path.insert(0, str(ROOT / "examples"))
        sys.path.insert(0, str(ROOT / "examples" / "load"))
        import http_load  # type: ignore[import-not-found]

        import faults  # type: ignore[import-not-found]

        faults.write(fault_file)  # all off
        env = dict(os.environ, MODEL=model, INFERSIGHT_DEMO_FAULTS=str(fault_file),
                   INFERSIGHT_MODELS=json.dumps({label: {"version": "1", "slo_p99_seconds": SLO_P99_S}}),
                   OTEL_SERVICE_NAME="sentiment-demo", TOKENIZERS_PARALLELISM="false",
                   # One torch thread per request: 4 clients on a small machine, no oversubscription.
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                   HF_HUB_DISABLE_PROGRESS_BARS="1")  # fmt: skip
        collector = _collector_binary()
        if collector is not None:
            otlp_port, health_port = _free_port(), _free_port()
            proc = children.start("otelcol", [str(collector), "--config",
                                              str(_collector_config(workdir, otlp_port, health_port))])  # fmt: skip
            try:
                _wait_http(f"http://127.0.0.1:{health_port}/", 20, lambda: proc.poll() is None)
                env.update(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                           OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}")  # fmt: skip
                events.add(f"collector {collector.name} on 127.0.0.1:{otlp_port} (traces on)")
            except (RuntimeError, TimeoutError) as exc:
                events.add(f"collector did not start ({exc}); traces off\n{children.log_tail('otelcol', 5)}")
                env["OTEL_TRACES_EXPORTER"] = "none"
        else:
            env["OTEL_TRACES_EXPORTER"] = "none"
            events.add("collector not built (`make collector`): traces off, exemplars still carry trace ids")

        events.add(f"starting the example server ({label}) on 127.0.0.1:{port}, Alertmanager and Prometheus ...")
        server = children.start("server", [sys.executable, str(app), "--port", str(port), "--model", model], env)
        am = children.start("alertmanager", [
            "prometheus-alertmanager", f"--config.file={_alertmanager_config(workdir, webhook.server_port)}",
            f"--storage.path={workdir / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=", "--log.level=warn"])  # fmt: skip
        ready = [("alertmanager", am, f"http://127.0.0.1:{am_port}/-/ready", 30),
                 ("server", server, f"http://127.0.0.1:{port}/healthz", 120)]  # fmt: skip
        if not _wait_all(ready, children, deadline):
            return 1
        # Prometheus last, once the server answers: no "target down" from the start-up.
        prom = children.start("prometheus", [
            "prometheus", f"--config.file={_prometheus_config(workdir, port, am_port, args.alert_for)}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
            "--enable-feature=exemplar-storage", "--log.level=warn"])  # fmt: skip
        if not _wait_all([("prometheus", prom, f"http://127.0.0.1:{prom_port}/-/ready", 30)], children, deadline):
            return 1
        warm = http_load.run(f"http://127.0.0.1:{port}/predict", duration_s=2, rps=10, concurrency=1)
        if not warm.requests or warm.errors:
            print(f"demo: the server fails requests ({warm.summary()})\n{children.log_tail('server')}",
                  file=sys.stderr)  # fmt: skip
            return 1
        events.start_clock()
        events.add(f"server http://127.0.0.1:{port}  prometheus http://127.0.0.1:{prom_port}  "
                   f"alertmanager http://127.0.0.1:{am_port}  (logs: {workdir})")  # fmt: skip
        p99 = f"histogram_quantile(0.99, sum by (le) (rate({METRIC.REQUEST_DURATION.name}_bucket[1m])))"
        query = urllib.parse.urlencode({"g0.expr": p99, "g0.tab": "0", "g0.show_exemplars": "1"})
        events.add(f"P99 with exemplars (dots = trace ids): http://127.0.0.1:{prom_port}/graph?{query}")
        events.add(f"load: {args.rps:g} req/s from {args.concurrency} clients; P99 objective "
                   f"{SLO_P99_S * 1000:.0f} ms for model {label}")  # fmt: skip

        def load() -> None:
            load_result.append(http_load.run(f"http://127.0.0.1:{port}/predict", duration_s=10**9,
                                             rps=args.rps, concurrency=args.concurrency, stop=stop_load))  # fmt: skip

        load_thread = threading.Thread(target=load, name="demo-load", daemon=True)
        load_thread.start()
        if args.no_fault:
            events.add("no fault will be injected (--no-fault)")
        else:
            events.add(f"will inject {args.fault} at t={args.fault_at:g}s")
        source = top.PrometheusSource(f"http://127.0.0.1:{prom_port}", window="30s")
        fault_on = args.no_fault
        while time.monotonic() < deadline:
            t = time.monotonic() - events.t0
            if not fault_on and t >= args.fault_at:
                fault_on = True
                if args.fault == "cold_start":
                    faults.write(fault_file, cold_start=True)
                    events.add("injecting cold start: the model reloads on the next request "
                               "(see infersight_model_load_duration_seconds)")  # fmt: skip
                else:
                    faults.write(fault_file, **{f"{args.fault}_ms": args.fault_ms})
                    stage = args.fault.removeprefix("slow_")
                    events.add(
                        f"injecting slow {stage} (+{args.fault_ms:g} ms per request) at t={t:.0f}s; "
                        f"expect InferenceP99AboveSLO within ~1 min (demo rules: for {args.alert_for})"
                    )
            dead = [n for n in children.dead() if n != "otelcol"]
            if dead:
                print(f"demo: {dead[0]} exited\n{children.log_tail(dead[0])}", file=sys.stderr)
                return 1
            frame = top.render(source.snapshot(), color=tty)
            if tty:
                lines = [frame, "", "EVENTS", *events.recent(8), "", "(Ctrl-C to stop)"]
                sys.stdout.write(top.CLEAR + "\n".join(lines) + "\n")
            else:
                sys.stdout.write(f"--- frame t={t:.0f}s ---\n{frame}\n")
            sys.stdout.flush()
            time.sleep(max(0.0, min(args.refresh, deadline - time.monotonic())))
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        stop_load.set()
        if load_thread is not None:
            load_thread.join(15)
        children.stop_all()
        if webhook is not None:
            webhook.shutdown()
            webhook.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if load_result:
        print(f"load: {load_result[0].summary()}")
    firing = sorted({a["labels"].get("alertname", "?") for a in events.alerts if a.get("status") == "firing"})
    print(f"alerts received by the webhook: {', '.join(firing) if firing else 'none'}")
    print(f"demo finished after {time.monotonic() - started:.0f}s; all processes stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infersight.demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
