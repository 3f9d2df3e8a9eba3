"""A real Triton Inference Server on loopback (the ``tritonserver`` bundled in the PyTriton wheel,
run from its own env: tools/build-triton-env.sh), a PyTriton model whose callable runs in a
process that imported infersight, and a tritonclient app that imported infersight too:

* Prometheus, on the shipped config's ``triton`` and ``model-server`` jobs and the shipped
  rules, records Triton's metrics as infersight's per-model series, and the shipped SLO alert
  fires on them for the Triton model, whose objective comes from ``INFERSIGHT_MODELS``;
* ``infersight top`` shows the model with Triton's stages;
* one trace runs from the client's span through Triton's server spans to the model stage;
* the layered view: with a delay proxy (tests/support/netproxy.py) between the client and
  Triton switched on, the client's P99 grows, Triton's does not, and ``infersight top`` and
  the alert InferenceNetworkLatencyHigh say "network"; with the proxy off and the model slow
  instead, Triton's P99 grows with the client's, and they say "server" (Triton's model stage);
* tritonclient.http.aio and gRPC streams (``stream_infer``, sync and aio) are CLIENT calls
  whose trace Triton continues.

Skips, saying why, when the env can't be built (no Debian Python 3.11, no registry) or
Prometheus isn't installed.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.netproxy import DelayProxy

import stack
from infersight.conventions import METRIC, SPAN, TRITON
from infersight.top import PrometheusSource

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
MODEL = "double"
SLO_S = 0.001  # far below the model's latency: its P99 is over it, so the SLO alert fires
# The SLO alert wants >= 1 request/s over 5 m: 400 requests in the window (a count, not a
# duration: a loaded 2-core box serves fewer calls a second).
CLIENT_CALLS, CLIENT_RPS = 400, 40
SERVER = f'{TRITON.SERVER_LABEL}="{TRITON.SERVER_VALUE}"'

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def triton_python() -> str:
    if stack.find_binary("prometheus") is None:
        pytest.skip("prometheus not installed (tools/setup.sh installs it)")
    try:
        built = subprocess.run(
            ["bash", str(ROOT / "tools" / "build-triton-env.sh")], capture_output=True, text=True, timeout=1200
        )
    except subprocess.TimeoutExpired:
        pytest.skip("the PyTriton env took over 20 min to build")
    if built.returncode != 0:
        pytest.skip(f"the PyTriton env could not be built: {built.stderr.strip()[-400:]}")
    return built.stdout.strip().splitlines()[-1]


class OtlpHttpSink:
    """OTLP/HTTP on loopback: protobuf (the Python SDK) or JSON (Triton's C++ exporter), gzipped
    or not. Keeps ``(service, trace id, span id, parent id, name, kind)`` of every span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, str, str, int]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                json_body = "json" in self.headers.get("Content-Type", "")
                spans = sink.parse_json(body) if json_body else sink.parse_proto(body)
                with sink.lock:
                    sink.spans.extend(spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/json" if json_body else "application/x-protobuf")
                self.end_headers()
                self.wfile.write(b"{}" if json_body else b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((stack.LOOPBACK, 0), Handler)
        self.url = f"http://{stack.LOOPBACK}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def parse_proto(body: bytes) -> list[tuple[str, str, str, str, str, int]]:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        out = []
        for rs in request.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name", "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append((service, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name, s.kind))
        return out

    @staticmethod
    def parse_json(body: bytes) -> list[tuple[str, str, str, str, str, int]]:
        out = []
        for rs in json.loads(body).get("resourceSpans", []):
            attrs = rs.get("resource", {}).get("attributes", [])
            service = next((a["value"].get("stringValue", "") for a in attrs if a["key"] == "service.name"), "")
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    kind = s.get("kind", 0)
                    kind = int(kind) if str(kind).isdigit() else 0
                    ids = (s["traceId"].lower(), s["spanId"].lower(), s.get("parentSpanId", "").lower())
                    out.append((service, *ids, s["name"], kind))
        return out

    def traces(self) -> dict[str, list[tuple[str, str, str, str, str, int]]]:
        with self.lock:
            by_trace: dict[str, list[tuple[str, str, str, str, str, int]]] = {}
            for span in self.spans:
                by_trace.setdefault(span[1], []).append(span)
            return by_trace

    def stop(self) -> None:
        self.server.shutdown()


@contextlib.contextmanager
def triton_server(python: str, workdir: Path, trace_url: str) -> Iterator[dict[str, int]]:
    ports = {name: stack.free_port() for name in ("http", "grpc", "metrics", "infersight", "client")}
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "sdk"),
        "OTEL_SERVICE_NAME": "pytriton-app",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": trace_url.removesuffix("/v1/traces"),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "INFERSIGHT_METRICS_PORT": str(ports["infersight"]),
        "INFERSIGHT_METRICS_ADDR": stack.LOOPBACK,
        "INFERSIGHT_MODELS": json.dumps({MODEL: {"slo_p99_seconds": SLO_S}}),
        "INFERSIGHT_GPU": "off",
        "DOUBLE_SLOW_FILE": str(workdir / "slow"),
    }
    argv = [python, str(APPS / "triton_server.py"), *(str(ports[p]) for p in ("http", "grpc", "metrics")), trace_url]
    process = stack.spawn(argv, workdir / "triton.log", env=env, cwd=workdir)
    try:
        ready = f"http://{stack.LOOPBACK}:{ports['http']}/v2/models/{MODEL}/ready"
        try:
            stack.wait_answering(process, ready, 120, what="tritonserver")
        except (RuntimeError, TimeoutError) as exc:
            log = (workdir / "triton.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}\n{log}") from exc
        yield ports
    finally:
        stack.stop(process, timeout=20)


def run_client(python: str, ports: dict[str, int], trace_url: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "sdk"),
        "OTEL_SERVICE_NAME": "triton-client",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": trace_url.removesuffix("/v1/traces"),
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "INFERSIGHT_METRICS_PORT": "0",
        "INFERSIGHT_GPU": "off",
    }
    argv = [python, str(APPS / "triton_client.py"), str(ports["http"]), str(ports["grpc"])]
    # Its /metrics stays up 2.5 s after the load: Prometheus (1 s scrapes) reads the last calls.
    load = [str(CLIENT_CALLS), str(CLIENT_RPS), str(ports["client"]), "2.5"]
    done = subprocess.run([*argv, *load], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def running(triton_python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("triton")
    sink = OtlpHttpSink()
    try:
        with triton_server(triton_python, workdir, f"{sink.url}/v1/traces") as ports:
            rules = stack.rules_copy(workdir / "rules", "3s")
            targets = {
                TRITON.JOB: [f"{stack.LOOPBACK}:{ports['metrics']}"],
                # The PyTriton process (its stages, the SLO gauge) and the client (its calls).
                "model-server": [f"{stack.LOOPBACK}:{ports[p]}" for p in ("infersight", "client")],
            }
            config = stack.prometheus_config(workdir / "prometheus.yml", rules, targets, "127.0.0.1:1")
            with stack.prometheus(config, workdir) as prom:
                # Scraped once before the load, so that the rates see all of it.
                up = f"{prom.url}/api/v1/query?query=up%7Bjob%3D%22{TRITON.JOB}%22%7D%3D%3D1"
                stack.wait_until(lambda: json.loads(stack.http_get(up)[1])["data"]["result"], 15, "the first scrape")
                client = run_client(triton_python, ports, f"{sink.url}/v1/traces")
                yield {
                    "sink": sink,
                    "ports": ports,
                    "prometheus": prom.url,
                    "client": client,
                    "python": triton_python,
                    "workdir": workdir,
                }
    finally:
        sink.stop()


def stages_p99(found: list[tuple[dict[str, str], float]]) -> list[tuple[str, float]]:
    return [(labels["stage"], value) for labels, value in found]


def _query(url: str, expr: str) -> list[tuple[dict[str, str], float]]:
    return PrometheusSource(url).query(expr)


def test_triton_metrics_become_infersight_series_and_the_slo_alert_fires(running: dict[str, Any]) -> None:
    url = running["prometheus"]
    sel = f'{{model="{MODEL}",{SERVER}}}'
    p99 = stack.wait_until(
        lambda: _query(url, f"model:{METRIC.REQUEST_DURATION.name}:p99_5m{sel}"), 30, "Triton's P99 recorded"
    )
    stages = stack.wait_until(
        lambda: (
            {
                labels["stage"]: value
                for labels, value in _query(url, f"model_stage:{METRIC.STAGE_DURATION.name}:p99_5m{sel}")
                if value > 0
            }.keys()
            >= set(TRITON.STAGE_DURATION_US)
            and _query(url, f"model_stage:{METRIC.STAGE_DURATION.name}:p99_5m{sel}")
        ),
        30,
        "Triton's stages recorded",
    )
    batch = _query(url, f"model:{METRIC.BATCH_SIZE.name}:mean_5m{sel}")
    means = _query(url, f"model_stage:{METRIC.STAGE_DURATION.name}:mean_5m{sel}")
    rate = _query(url, f"model:{METRIC.REQUEST_DURATION.name}_count:rate5m{sel}")
    client = METRIC.CLIENT_REQUEST_DURATION.name
    mine = f'instance="{stack.LOOPBACK}:{running["ports"]["client"]}"'
    client_p99 = _query(url, f"histogram_quantile(0.99, sum by (target, le) (rate({client}_bucket{{{mine}}}[5m])))")
    stage = METRIC.STAGE_DURATION.name
    callable_p99 = _query(
        url, f'histogram_quantile(0.99, sum by (le) (rate({stage}_bucket{{model="{MODEL}",stage="model"}}[5m])))'
    )
    # The layers, top down, for docs/triton.md.
    protocol = {f"{stack.LOOPBACK}:{running['ports'][p]}": p for p in ("http", "grpc")}
    ms = lambda v: f"{v * 1e3:.2f} ms"  # noqa: E731
    lines = [f"client P99 over {protocol.get(lb['target'], lb['target'])}: {ms(v)}" for lb, v in client_p99]
    lines.append(f"Triton request P99: {ms(p99[0][1])}")
    mean_by = {labels["stage"]: value for labels, value in means}
    lines += [f"Triton {name} P99: {ms(v)} (mean {ms(mean_by[name])})" for name, v in sorted(stages_p99(stages))]
    lines.append(f"PyTriton callable, infersight's model stage P99: {ms(callable_p99[0][1])}")
    lines.append(f"batch size: {batch[0][1]:.2f}; rate: {rate[0][1]:.2f}/s (5m); client: {running['client']}")
    print("\n" + "\n".join(lines))
    # The client's side of the same calls, for the layered view (docs/triton.md).
    assert {labels["target"] for labels, _ in client_p99} == set(protocol)
    assert 0 < p99[0][1] < 5
    assert batch and batch[0][1] >= 1
    assert rate and rate[0][1] > 0
    # The model stage is where the callable's sleep is: it outweighs the input and output copies.
    by_stage = {labels["stage"]: value for labels, value in means}
    assert by_stage["model"] > by_stage["input"] and by_stage["model"] > by_stage["output"]

    def firing(name: str) -> list[Any]:
        _, body = stack.http_get(f"{url}/api/v1/alerts")
        return [
            a
            for a in json.loads(body)["data"]["alerts"]
            if a["labels"]["alertname"] == name
            and a["labels"].get("model") == MODEL
            and a["labels"].get(TRITON.SERVER_LABEL) == TRITON.SERVER_VALUE
            and a["state"] == "firing"
        ]

    # The shipped alerts, no rule of Triton's own: the SLO alert, and the attribution alert
    # naming Triton's model stage (its compute, with PyTriton's hand-over: the largest P99 by far).
    stack.wait_until(lambda: firing("InferenceP99AboveSLO"), 30, "InferenceP99AboveSLO firing for the Triton model")
    breach = stack.wait_until(lambda: firing("InferenceSLOBreachByStage"), 30, "InferenceSLOBreachByStage firing")
    assert breach[0]["labels"]["stage"] == "model", breach


def test_infersight_top_shows_tritons_stages(running: dict[str, Any]) -> None:
    snap = PrometheusSource(running["prometheus"], window="1m").snapshot()
    assert MODEL in snap.models, snap
    row = snap.models[MODEL]
    assert row.p99 > 0 and row.rps > 0
    stages = {stage for model, stage in snap.stages if model == MODEL}
    assert set(TRITON.STAGE_DURATION_US) <= stages, snap.stages
    assert snap.stages[(MODEL, "queue")].p99 > 0


def test_pytriton_callable_gets_stage_metrics(running: dict[str, Any]) -> None:
    _, text = stack.http_get(f"http://{stack.LOOPBACK}:{running['ports']['infersight']}/metrics")
    stage = f'{METRIC.STAGE_DURATION.name}_count{{model="{MODEL}",stage="{SPAN.MODEL}"}}'
    counts = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(stage)]
    assert counts and counts[0] >= running["client"]["calls"] / 8, text[-2000:]  # at most 8 a batch
    assert f'{METRIC.MODEL_SLO_P99.name}{{model="{MODEL}"}} {SLO_S}' in text


def test_one_trace_runs_from_the_client_through_triton_to_the_model_stage(running: dict[str, Any]) -> None:
    sink: OtlpHttpSink = running["sink"]

    def joined() -> list[tuple[str, list[tuple[str, str, str, str, str, int]]]]:
        found = []
        for trace_id, spans in sink.traces().items():
            by_id = {s[2]: s for s in spans}
            clients = [s for s in spans if s[0] == "triton-client" and s[5] == 3]  # SPAN_KIND_CLIENT
            stages = [s for s in spans if s[4] == SPAN.MODEL]
            for stage_span in stages:
                chain, span = [], stage_span
                while span is not None and len(chain) < 20:
                    chain.append(span)
                    span = by_id.get(span[3])
                if clients and chain[-1] in clients and any(s[0] == "triton" and s[5] == 2 for s in chain):
                    found.append((trace_id, chain))
        return found

    traces = stack.wait_until(joined, 20, "a trace from the client span through Triton's to the model stage")
    _, chain = traces[0]
    print("\n" + " <- ".join(f"{s[0]}:{s[4]}" for s in chain))
    # Both clients: tritonclient's HTTP client (patched) and its gRPC client (a patched channel).
    names = {chain[-1][4] for _, chain in traces}
    assert "POST" in names and any("ModelInfer" in n for n in names), names


def test_tritonclient_internals_are_where_compat_looks(running: dict[str, Any]) -> None:
    code = (
        "from infersight import _compat; "
        "raise SystemExit(0 if all(probe() for name, probe in _compat.PROBES.items()"
        " if name.startswith('tritonclient.')) else 1)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sdk")}
    done = subprocess.run([running["python"], "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


# ---- The layered view: network or server --------------------------------------------------

NETWORK_ALERT = "InferenceNetworkLatencyHigh"
DELAY_S, JITTER_S = 0.05, 0.01  # per crossing of the proxy: a call's round trip gains >= 100 ms
# >= 1 call/s over 5 m on each protocol (the alert's floor): 360 calls each.
LOAD_CALLS, LOAD_THREADS = 720, 8
SLOW_S = 0.15  # the slow model's compute per batch
SLOW_CALLS = 60  # one thread: no queue in Triton, the time is the model's
SLOW_MODEL = "double_slow"  # its own 5 m window: only slow calls in it
SLOW_INFER = f"/v2/models/{SLOW_MODEL}/infer"
INFER = f"/v2/models/{MODEL}/infer"
GRPC_INFER = f"{TRITON.GRPC_INFER_METHODS[0]}/{MODEL}"


def run_load(
    running: dict[str, Any], http: int, grpc: int, calls: int, threads: int, model: str = MODEL
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sdk"), "INFERSIGHT_GPU": "off", "OTEL_TRACES_EXPORTER": "none"}
    argv = [running["python"], str(APPS / "triton_load.py"), str(http), str(grpc), str(calls), str(threads)]
    # The client's port Prometheus scrapes; it stays 2.5 s after the load for a last scrape.
    argv += [str(running["ports"]["client"]), "2.5", model]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=150, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _alerts(url: str, target: str, endpoint: str) -> list[dict[str, Any]]:
    _, body = stack.http_get(f"{url}/api/v1/alerts")
    return [
        a
        for a in json.loads(body)["data"]["alerts"]
        if a["labels"]["alertname"] == NETWORK_ALERT
        and a["labels"].get("target") == target
        and a["labels"].get("endpoint") == endpoint
    ]


def _one(url: str, expr: str) -> float | None:
    found = _query(url, expr)
    return found[0][1] if found else None


def _layers(url: str, target: str, endpoint: str, model: str = MODEL) -> dict[str, float | None]:
    where = f'{{target="{target}",endpoint="{endpoint}"}}'
    return {
        "client_p99": _one(url, f"target_endpoint:{METRIC.CLIENT_REQUEST_DURATION.name}:p99_5m{where}"),
        "network_p99": _one(url, f"target_endpoint:{METRIC.CLIENT_NETWORK.name}:p99_5m{where}"),
        "triton_p99": _one(url, f'model:{METRIC.REQUEST_DURATION.name}:p99_5m{{model="{model}",{SERVER}}}'),
    }


@pytest.fixture(scope="module")
def proxies(running: dict[str, Any]) -> Iterator[dict[str, DelayProxy]]:
    """A delay proxy in front of each of Triton's ports; no delay until a test sets one."""
    ports = running["ports"]
    with DelayProxy((stack.LOOPBACK, ports["http"])) as http, DelayProxy((stack.LOOPBACK, ports["grpc"])) as grpc:
        yield {"http": http, "grpc": grpc}


def test_a_delay_on_the_path_is_named_network_and_tritons_p99_stays(
    running: dict[str, Any], proxies: dict[str, DelayProxy]
) -> None:
    url = running["prometheus"]
    http, grpc = proxies["http"], proxies["grpc"]
    targets = {f"{stack.LOOPBACK}:{http.port}": INFER, f"{stack.LOOPBACK}:{grpc.port}": GRPC_INFER}
    http.set_delay(DELAY_S, JITTER_S)
    grpc.set_delay(DELAY_S, JITTER_S)
    try:
        load = run_load(running, http.port, grpc.port, LOAD_CALLS, LOAD_THREADS)
    finally:  # the proxy off again: the next test's calls go through it undelayed
        http.set_delay(0.0)
        grpc.set_delay(0.0)
    fired = {
        target: stack.wait_until(
            lambda t=target, e=endpoint: [a for a in _alerts(url, t, e) if a["state"] == "firing"],
            60,
            f"{NETWORK_ALERT} for {target}{endpoint}",
        )
        for target, endpoint in targets.items()
    }
    snap = PrometheusSource(url, window="1m").snapshot()
    figures = {target: _layers(url, target, endpoint) for target, endpoint in targets.items()}
    print(f"\nproxy on ({DELAY_S * 1e3:.0f} ms a crossing): load {load}; layers {figures}")
    for target, endpoint in targets.items():
        alert = fired[target][0]
        assert alert["labels"]["layer"] == "network" and alert["labels"]["endpoint"] == endpoint, alert
        call = snap.calls[(target, endpoint)]
        print(f"top: {target}{endpoint} P99 {call.p99:.3f} s, network {call.network_p99:.3f} s: {call.layer}")
        assert call.layer == "network", call
        layers = figures[target]
        assert layers["network_p99"] is not None and layers["network_p99"] >= 2 * DELAY_S * 0.9, layers
    # Triton's own P99 did not take the delay: it is the server's time, under one crossing's.
    triton_p99 = figures[next(iter(targets))]["triton_p99"]
    assert triton_p99 is not None and triton_p99 < DELAY_S, figures


def test_a_slow_model_behind_the_proxy_switched_off_is_not_network(
    running: dict[str, Any], proxies: dict[str, DelayProxy]
) -> None:
    url, switch = running["prometheus"], running["workdir"] / "slow"
    http = proxies["http"]  # switched off at the end of the test before
    assert http.delay_s == 0.0
    # A target of its own (Triton's gRPC port, no proxy): no delayed calls in its 5 m window.
    target = f"{stack.LOOPBACK}:{running['ports']['grpc']}"
    endpoint = f"{TRITON.GRPC_INFER_METHODS[0]}/{SLOW_MODEL}"
    switch.write_text(str(SLOW_S))
    try:
        load = run_load(running, http.port, running["ports"]["grpc"], SLOW_CALLS, 1, SLOW_MODEL)
    finally:
        switch.unlink()
    targets = {f"{stack.LOOPBACK}:{http.port}": SLOW_INFER, target: endpoint}

    def settled() -> dict[str, dict[str, float | None]] | None:
        found = {t: _layers(url, t, e, SLOW_MODEL) for t, e in targets.items()}
        for layers in found.values():
            if layers["triton_p99"] is None or layers["triton_p99"] < SLOW_S * 0.8 or layers["network_p99"] is None:
                return None
        return found

    stack.wait_until(settled, 30, "Triton's P99 and the network's share recorded for the slow model")
    time.sleep(6)  # the alert's for: (cut to 3 s) passes twice: it would be pending or firing by now
    figures = {t: _layers(url, t, e, SLOW_MODEL) for t, e in targets.items()}
    snap = PrometheusSource(url, window="1m").snapshot()
    stages = {stage: row.p99 for (model, stage), row in snap.stages.items() if model == SLOW_MODEL}
    print(f"\nslow model ({SLOW_S * 1e3:.0f} ms), proxy off: load {load}; layers {figures}; stages {stages}")
    for where, endpoint_of in targets.items():
        layers, call = figures[where], snap.calls[(where, endpoint_of)]
        print(f"top: {where}{endpoint_of} P99 {call.p99:.3f} s, network {call.network_p99:.3f} s: {call.layer}")
        # The client's P99 grew with Triton's: the server's time, not the path's.
        assert layers["client_p99"] is not None and layers["client_p99"] >= SLOW_S, layers
        assert layers["network_p99"] is not None and layers["network_p99"] < 0.05, layers
        assert call.layer == "server", call
        assert not _alerts(url, where, endpoint_of), _alerts(url, where, endpoint_of)
    # Inside Triton: the model's compute, not its queue (one caller: nothing waits).
    assert stages["model"] >= SLOW_S * 0.8 and stages["model"] > stages["queue"], stages


# ---- The other clients: asyncio HTTP, gRPC streams ------------------------------------------


def test_aio_http_and_grpc_streams_are_client_calls_triton_continues(running: dict[str, Any]) -> None:
    sink: OtlpHttpSink = running["sink"]
    ports = running["ports"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "sdk"),
        "OTEL_SERVICE_NAME": "triton-clients",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "INFERSIGHT_GPU": "off",
    }
    argv = [running["python"], str(APPS / "triton_clients.py"), str(ports["http"]), str(ports["grpc"])]
    done = subprocess.run([*argv, str(stack.free_port())], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{result}")
    assert result["ok"] == {"http_aio": 3, "grpc_stream": 3, "grpc_aio_stream": 3}, result
    # The exposition's labels, in its (alphabetical) order.
    http = f'endpoint="{INFER}",outcome="success",target="{stack.LOOPBACK}:{ports["http"]}"'
    stream = (
        f'endpoint="{TRITON.GRPC_INFER_METHODS[1]}/{MODEL}",outcome="success",target="{stack.LOOPBACK}:{ports["grpc"]}"'
    )
    assert result["counts"].get(http) == 3, result
    assert result["counts"].get(stream) == 2, result  # the sync stream and the aio one

    def joined() -> dict[str, int] | None:
        names: dict[str, int] = {}
        for spans in sink.traces().values():
            clients = [s for s in spans if s[0] == "triton-clients" and s[5] == 3]  # SPAN_KIND_CLIENT
            for client in clients:
                if any(s[0] == "triton" and s[3] == client[2] for s in spans):  # Triton's span, its child
                    names[client[4]] = names.get(client[4], 0) + 1
        streamed = names.get(TRITON.GRPC_INFER_METHODS[1], 0)
        return names if names.get("POST", 0) >= 3 and streamed >= 1 else None

    names = stack.wait_until(joined, 20, "the aio and stream CLIENT spans, each with Triton's span as a child")
    print(names)
