"""One running infersight stack for the end-to-end tests, all real processes on loopback.

* the Flask sentiment example (``import infersight.auto``; drift on when the drift module is
  there) and the multi-model example (batcher, queue wait, batch size), both sending traces
  to
* our built collector, run on a loopback copy of collector-config/otelcol.yaml whose trace
  exporter points at a real Jaeger v2 (tools/build-jaeger.sh, memory storage; ``LiveStack.sink``)
  and whose span metrics flush every second;
* Prometheus on a test copy of prometheus/prometheus.yml: 1 s scrape and evaluation, the
  shipped jobs with loopback targets, the shipped rule files with ``for:`` capped at
  ``ALERT_FOR`` (the shipped files keep their production values). Before it starts, its data
  dir gets a "same time yesterday" baseline (see ``backfill_yesterday``);
* Alertmanager on a copy of alertmanager/alertmanager.yml (receivers point at an in-process
  webhook, group waits of 1 s).

The processes, configs and waits come from the loopback stack the demo also uses (tools/stack);
this module adds the example servers and yesterday's baseline.

``live_stack()`` is a context manager: every process and server it started is stopped on exit
(an ExitStack, so also when start-up fails half-way; every child additionally dies with the
test process via ``setpriv --pdeathsig``), and every wait is bounded in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.utils import floatToGoString
from tests.support.netproxy import DelayProxy

import stack
from infersight.conventions import LATENCY_BUCKETS, METRIC
from stack import LOOPBACK, ensure_collector, ensure_jaeger, loopback_config, run_collector, run_jaeger

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PYTHON = sys.executable

SENTIMENT_SLO_S = 0.5  # the Flask example's P99 objective here: well above a loaded 2-core box's P99
ALERT_FOR = "3s"  # every rule's for: is capped at this in the test copy (production: 10m-6h)
# ... except where one evaluation is not enough evidence: DriftDetected's 30m spans several
# drift runs so that one noisy window (a statistical test's false positive on 40 samples)
# does not alert; the test copy keeps that idea with 3 runs of the 4 s drift interval.
ALERT_FOR_OVERRIDES = {"DriftDetected": "10s"}
SCRAPE_JOB = "model-server"  # the shipped job name for the model servers
# The fault matrix's server (matrix_app.py): one model label per fault, SLO P99 0.5 s each.
MATRIX_LABELS = ("fault-tokenizer", "fault-lock", "fault-model", "fault-gil", "fault-network", "fault-payload")
# The load spike's server: the FastAPI example with a bounded pool of threads for its sync
# endpoint, so that more requests than threads queue for one (Werkzeug's thread per request
# does not queue); the model label is its own.
SPIKE_LABEL, SPIKE_THREADS = "fault-spike", 2
SPIKE_MODEL_MS = 100  # the spike server's model, all along: 2 threads serve about 20 req/s
# ... and its steady traffic from the stack's start (below the alert's 1 req/s): the traffic
# note's baseline, which takes 5 m rates only once the series is 5 m old.
SPIKE_BASELINE_RPS = 0.5
DAY_S = 86_400
DRIFT_AVAILABLE = (ROOT / "sdk" / "infersight" / "drift" / "__init__.py").exists()
DRIFT_ENV = {  # small and fast, so a shift shows within seconds
    "INFERSIGHT_DRIFT": "true",
    "INFERSIGHT_DRIFT_INTERVAL": "4",
    "INFERSIGHT_DRIFT_REFERENCE_SIZE": "40",
    "INFERSIGHT_DRIFT_WINDOW": "40",
}
# Yesterday's baseline of the sentiment model: a steady rate, every observation this long.
BASELINE_RPS = 8.0
# Generous (a loaded 2-core machine is noisy): the stage alert needs 1.5x these to fire.
BASELINE_STAGE_S = {"preprocess": 0.05, "model": 0.1, "postprocess": 0.05}
BASELINE_REQUEST_S = 0.1


class Server(stack.Service):
    """An example server subprocess (its log in the work dir)."""

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        status, body = stack.http_post_json(f"{self.url}/admin/faults", faults)
        assert status == 200, f"{self.name}: POST /admin/faults -> {status} {body!r}"
        state: dict[str, Any] = json.loads(body)
        return state


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    """The test process's environment without its own infersight/OTel settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERSIGHT_", "OTEL_"))}
    env.update(
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        INFERSIGHT_GPU="auto",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    env.update(extra)
    return env


# ---- yesterday's baseline ------------------------------------------------------------------


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _histogram_lines(
    name: str, labels: dict[str, str], at: list[float], rps: float, value: float
) -> Iterator[tuple[float, str]]:
    """Samples of a cumulative histogram that observes ``value`` ``rps`` times a second."""
    for i, ts in enumerate(at):
        count = rps * 15 * (i + 1)
        for le in (*LATENCY_BUCKETS, float("inf")):
            bucket = {**labels, "le": floatToGoString(le)}  # type: ignore[no-untyped-call]
            yield ts, f"{name}_bucket{_labels(bucket)} {count if value <= le else 0} {ts:.3f}"
        yield ts, f"{name}_count{_labels(labels)} {count} {ts:.3f}"
        yield ts, f"{name}_sum{_labels(labels)} {count * value} {ts:.3f}"


def yesterday_openmetrics(model: str, version: str, instance: str, now: float, span_s: float = 1800) -> str:
    """OpenMetrics text for the sentiment model's stage and request histograms, one sample
    every 15 s over ``now - 1 d +- span_s``, with exactly the labels the live series get:
    the scrape adds job/instance, the SDK adds model/stage (and version/endpoint/outcome)."""
    at = [now - DAY_S - span_s + 15 * i for i in range(int(2 * span_s / 15))]
    target = {"job": SCRAPE_JOB, "instance": instance}
    out: list[str] = []
    stage = METRIC.STAGE_DURATION.name
    out += [f"# HELP {stage} {METRIC.STAGE_DURATION.help}", f"# TYPE {stage} histogram"]
    lines = []
    for name, seconds in BASELINE_STAGE_S.items():
        lines += list(_histogram_lines(stage, {**target, "model": model, "stage": name}, at, BASELINE_RPS, seconds))
    out += [line for _, line in sorted(lines, key=lambda x: x[0])]
    request = METRIC.REQUEST_DURATION.name
    out += [f"# HELP {request} {METRIC.REQUEST_DURATION.help}", f"# TYPE {request} histogram"]
    labels = {**target, "endpoint": "/predict", "model": model, "outcome": "success", "version": version}
    out += [line for _, line in _histogram_lines(request, labels, at, BASELINE_RPS, BASELINE_REQUEST_S)]
    out.append("# EOF")
    return "\n".join(out) + "\n"


def backfill_yesterday(
    data_dir: Path, workdir: Path, model: str, version: str, instance: str, now: float
) -> dict[str, Any]:
    """Give Prometheus a 'same time yesterday' before it starts.

    1. raw histograms for yesterday -> ``promtool tsdb create-blocks-from openmetrics``;
    2. the regression alerts read *recording rules* offset 1d
       (model_stage:infersight_stage_duration_seconds:p99_5m, ..._count:rate5m), which
       Prometheus never evaluates for the past, so a throw-away Prometheus serves the raw
       blocks and ``promtool tsdb create-blocks-from rules`` evaluates the shipped
       latency.rules.yaml over yesterday's window into more blocks, one pass per dependency
       level (a quantile rule reads a bucket-rate rule).
    """
    promtool = stack.find_binary("promtool")
    assert promtool, "promtool not found (tools/setup.sh installs the prometheus package)"
    data_dir.mkdir(parents=True, exist_ok=True)
    om = workdir / "yesterday.om"
    om.write_text(yesterday_openmetrics(model, version, instance, now))
    res = stack.run_tool([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om), str(data_dir)])
    assert res.returncode == 0, res.stdout + res.stderr

    empty = workdir / "prometheus-backfill.yml"
    empty.write_text(yaml.safe_dump({"global": {"scrape_interval": "1m"}}))
    start, end = int(now - DAY_S - 1500), int(now - DAY_S + 1500)
    # The throw-away Prometheus gets a copy of the raw blocks (stack.prometheus() uses
    # <workdir>/prometheus-data), so the real data dir is not touched by it.
    scratch = workdir / "backfill-prom"
    shutil.copytree(data_dir, scratch / "prometheus-data")
    blocks = 0
    # promtool cannot backfill a rule that reads another recording rule in the same run, so
    # one pass per level: each pass's blocks go to the scratch Prometheus for the next one.
    for level, rule_file in enumerate(_rule_levels(ROOT / "prometheus-rules" / "latency.rules.yaml", workdir)):
        out_dir = workdir / f"rule-blocks-{level}"
        with stack.prometheus(empty, scratch) as prom:
            res = stack.run_tool(
                [
                    promtool,
                    "tsdb",
                    "create-blocks-from",
                    "rules",
                    f"--url={prom.url}",
                    f"--start={start}",
                    f"--end={end}",
                    "--eval-interval=15s",
                    f"--output-dir={out_dir}",
                    str(rule_file),
                ],
                timeout=120,
            )
        assert res.returncode == 0, res.stdout + res.stderr
        made = [p for p in out_dir.iterdir() if p.is_dir()]
        assert made, f"promtool wrote no blocks for {rule_file}: {res.stdout} {res.stderr}"
        for block in made:
            shutil.copytree(block, scratch / "prometheus-data" / block.name)
            shutil.move(str(block), data_dir / block.name)
        blocks += len(made)
    return {"blocks": blocks, "start": start, "end": end}


def _rule_levels(path: Path, workdir: Path) -> list[Path]:
    """The recording rules of ``path`` split into files by dependency level: level 0 reads only
    scraped series, level n reads rules of lower levels."""
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "record" in r]
    level: dict[str, int] = {}
    for _ in range(len(rules)):  # bounded fixpoint
        for rule in rules:
            deps = [level.get(r["record"], -1) for r in rules if r["record"] in rule["expr"] and r is not rule]
            level[rule["record"]] = 1 + max(deps, default=-1) if all(d >= 0 for d in deps) else -1
    assert all(v >= 0 for v in level.values()), f"cyclic recording rules in {path}"
    files = []
    for n in range(max(level.values()) + 1):
        group = {"name": f"backfill-level-{n}", "rules": [r for r in rules if level[r["record"]] == n]}
        out = workdir / f"backfill-rules-{n}.yaml"
        out.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
        files.append(out)
    return files


# ---- the stack ---------------------------------------------------------------------------------


@dataclass
class LiveStack:
    workdir: Path
    sink: stack.Jaeger  # the trace backend: what the collector exported, read back by its query API
    sentiment: Server
    multi: Server
    prometheus: stack.Service
    alertmanager: stack.Service
    webhook: stack.WebhookReceiver
    collector_ports: dict[str, int]
    collector_config: dict[str, Any]
    model: str  # the sentiment server's model label
    started_at: float
    drift: bool
    notes: dict[str, Any] = field(default_factory=dict)
    matrix: Server | None = None
    network_proxy: DelayProxy | None = None  # between the matrix server's relay and itself; no delay until set
    spike: Server | None = None  # the FastAPI example with SPIKE_THREADS threads, model SPIKE_LABEL
    spike_baseline_since: float = 0.0  # time.monotonic() when its steady traffic began

    # ---- Prometheus API helpers
    def api(self, path: str, **params: Any) -> Any:
        url = f"{self.prometheus.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        status, body = stack.http_get(url, timeout=10)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise AssertionError(f"GET {url} -> {status}: {answer}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of ``expr`` now (None when empty)."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_query(
        self, expr: str, timeout: float, what: str = "", predicate: Callable[[list[dict[str, Any]]], bool] = bool
    ) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            result = self.query(expr)
            return result if predicate(result) else None

        found: list[dict[str, Any]] = stack.wait_until(check, timeout, interval=0.5, what=what or expr)
        return found

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        """Prometheus's own view of an alert (GET /api/v1/alerts)."""
        return [a for a in self.api("alerts")["alerts"] if a["labels"].get("alertname") == name and a["state"] == state]

    def load(self, url: str, duration_s: float, **kwargs: Any) -> Any:
        """examples/load/http_load.py against ``url`` (bounded by ``duration_s``)."""
        return _load(url, duration_s, **kwargs)

    @contextlib.contextmanager
    def background_load(self, url: str, max_s: float, **kwargs: Any) -> Iterator[list[Any]]:
        """Load in a thread while the body runs (at most ``max_s``); yields [LoadResult] after."""
        stop = threading.Event()
        out: list[Any] = []
        thread = threading.Thread(
            target=lambda: out.append(_load(url, max_s, stop=stop, **kwargs)), name="e2e-load", daemon=True
        )
        thread.start()
        try:
            yield out
        finally:
            stop.set()
            thread.join(timeout=30)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log(2000)}" for s in (self.sentiment, self.multi))


def _load(url: str, duration_s: float, **kwargs: Any) -> Any:
    sys.path.insert(0, str(EXAMPLES / "load"))
    import http_load  # type: ignore[import-not-found]

    return http_load.run(url, duration_s=duration_s, **kwargs)


def _start_server(
    name: str, app: Path, model_dir: Path, workdir: Path, env: dict[str, str], extra: tuple[str, ...] = ()
) -> Server:
    port = stack.free_port()
    log = workdir / f"{name}.log"
    argv = [PYTHON, str(app), "--port", str(port), "--model", str(model_dir), *extra]
    return Server(name, port, stack.spawn(argv, log, _child_env(env), cwd=ROOT), log)


def _wait_server(server: Server, timeout: float = 120) -> None:
    try:
        url = f"{server.url}/healthz"
        stack.wait_answering(server.process, url, timeout, what=server.name, accept=lambda body: "loading" not in body)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}:\n{server.log()}") from exc


@contextlib.contextmanager
def live_stack(workdir: Path, model_dir: Path) -> Iterator[LiveStack]:
    """Start everything (about 15-25 s on 2 cores), yield it, always stop everything."""
    started = time.monotonic()
    with contextlib.ExitStack() as exits:
        sink = exits.enter_context(run_jaeger(workdir / "jaeger", ensure_jaeger()))

        shipped = yaml.safe_load((ROOT / "collector-config" / "otelcol.yaml").read_text())
        cfg, ports = loopback_config(shipped, workdir / "otelcol", sink.otlp_endpoint)
        cfg_path = workdir / "otelcol-test.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        exits.enter_context(
            run_collector(
                ensure_collector(),
                cfg_path,
                workdir / "otelcol.log",
                health_url=f"http://{LOOPBACK}:{ports['health_check']}/",
            )
        )
        otlp = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK}:{ports['otlp_grpc']}",
        }

        model = model_dir.name
        models = {model: {"version": "1", "slo_p99_seconds": SENTIMENT_SLO_S}}
        sentiment_env = {**otlp, "OTEL_SERVICE_NAME": "sentiment-e2e", "INFERSIGHT_MODELS": json.dumps(models)}
        if DRIFT_AVAILABLE:
            sentiment_env.update(DRIFT_ENV, INFERSIGHT_DRIFT_DIR=str(workdir / "drift"))
        sentiment = _start_server(
            "sentiment", EXAMPLES / "flask_sentiment" / "app.py", model_dir, workdir, sentiment_env
        )
        exits.callback(sentiment.stop)
        multi = _start_server(
            "multi-model",
            EXAMPLES / "multi_model" / "app.py",
            model_dir,
            workdir,
            {**otlp, "OTEL_SERVICE_NAME": "multi-model-e2e"},
        )
        exits.callback(multi.stop)
        (workdir / "matrix-models").mkdir()
        proxy = DelayProxy((LOOPBACK, 0)).start()  # its upstream is set once the matrix server has a port
        exits.callback(proxy.stop)
        relay = f"http://{LOOPBACK}:{proxy.port}"
        matrix_models = {label: {"version": "1", "slo_p99_seconds": SENTIMENT_SLO_S} for label in MATRIX_LABELS}
        matrix = _start_server(
            "matrix",
            Path(__file__).with_name("matrix_app.py"),
            model_dir,
            workdir,
            {**otlp, "OTEL_SERVICE_NAME": "matrix-e2e", "INFERSIGHT_MODELS": json.dumps(matrix_models)},
            ("--labels", ",".join(MATRIX_LABELS), "--workdir", str(workdir / "matrix-models"), "--relay-to", relay),
        )
        proxy.upstream = (LOOPBACK, matrix.port)
        exits.callback(matrix.stop)
        spike_model = workdir / "matrix-models" / SPIKE_LABEL  # the model label is the directory's name
        os.symlink(model_dir, spike_model)
        spike = _start_server(
            "spike",
            EXAMPLES / "fastapi_sentiment" / "app.py",
            spike_model,
            workdir,
            {
                **otlp,
                "OTEL_SERVICE_NAME": "spike-e2e",
                "INFERSIGHT_MODELS": json.dumps({SPIKE_LABEL: {"version": "1", "slo_p99_seconds": SENTIMENT_SLO_S}}),
            },
            ("--threads", str(SPIKE_THREADS)),
        )
        exits.callback(spike.stop)

        webhook = exits.enter_context(stack.webhook_receiver())
        am_config = stack.alertmanager_config(workdir / "alertmanager.yml", webhook.url)
        am = exits.enter_context(stack.alertmanager(am_config, workdir))

        # While the servers load their models: yesterday's baseline, then Prometheus.
        data_dir = workdir / "prometheus-data"
        now = time.time()
        backfill = backfill_yesterday(data_dir, workdir, model, "1", sentiment.instance, now)
        rules = stack.rules_copy(workdir / "rules", ALERT_FOR, ALERT_FOR_OVERRIDES)
        prom_cfg = stack.prometheus_config(
            workdir / "prometheus.yml",
            rules,
            {
                SCRAPE_JOB: [sentiment.instance, multi.instance, matrix.instance, spike.instance],
                "otel-collector": [f"{LOOPBACK}:{ports['prometheus']}"],
                "otel-collector-internal": [f"{LOOPBACK}:{ports['telemetry']}"],
                "alertmanager": [am.url.removeprefix("http://")],
            },
            am.url.removeprefix("http://"),
        )
        for server in (sentiment, multi, matrix, spike):
            _wait_server(server)
        # Warm up before Prometheus scrapes: first requests are slow and not what we test.
        for path in ("/predict", "/predict/realtime", "/predict/batch"):
            server = sentiment if path == "/predict" else multi
            warm = _load(f"{server.url}{path}", duration_s=1.5, rps=10, concurrency=2)
            assert warm.requests and not warm.errors, f"{path}: {warm.summary()}\n{server.log()}"
        prom = exits.enter_context(stack.prometheus(prom_cfg, workdir, timeout=60))
        spike.set_faults(slow_model_ms=SPIKE_MODEL_MS)
        stop_baseline = threading.Event()
        baseline = threading.Thread(
            target=_load,
            args=(f"{spike.url}/predict", 4 * 3600),
            kwargs={"rps": SPIKE_BASELINE_RPS, "concurrency": 1, "stop": stop_baseline, "seed": 12},
            name="e2e-spike-baseline",
            daemon=True,
        )
        baseline.start()
        exits.callback(baseline.join, 30)
        exits.callback(stop_baseline.set)
        spike_since = time.monotonic()
        live = LiveStack(
            workdir,
            sink,
            sentiment,
            multi,
            prom,
            am,
            webhook,
            ports,
            cfg,
            model,
            time.time(),
            DRIFT_AVAILABLE,
            {"backfill": backfill},
            matrix,
            proxy,
            spike,
            spike_since,
        )
        live.notes["startup_s"] = round(time.monotonic() - started, 1)
        print(f"\ne2e stack up in {live.notes['startup_s']} s (work dir {workdir})", flush=True)
        yield live
