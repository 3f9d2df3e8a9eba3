"""BentoML 1.4 under ``bentoml serve``, started for real (its own env,
tools/build-framework-env.sh): one server span per request, whether BentoML's own tracing is off
(its default: infersight's span is the server span) or exporting (BentoML's span is, and
infersight's stages are its children); the preprocess, model and postprocess stages of each API
call; BentoML's /metrics still BentoML's."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests
from tests.support.frameworks import ROOT, framework_python, free_port, samples, server, total, wait_for

SERVICE = """
import json
import os

import infersight.auto  # noqa: F401  (the only line for infersight)
import bentoml

tracing = json.loads(os.environ.get("TEST_BENTOML_TRACING") or "null")


@bentoml.service(**({"tracing": tracing} if tracing else {}))
class Doubler:
    @bentoml.api
    def double(self, x: int) -> dict:
        return {"y": 2 * x}
"""

N = 5
STAGES = ("preprocess", "model", "postprocess")


@pytest.mark.parametrize("bentoml_tracing", [False, True], ids=["bentoml-tracing-off", "bentoml-tracing-on"])
def test_bentoml_requests_have_one_server_span_and_their_stages(tmp_path: Path, sink, bentoml_tracing: bool) -> None:  # type: ignore[no-untyped-def]
    python = framework_python("bentoml")
    (tmp_path / "service.py").write_text(SERVICE)
    port, metrics_port = free_port(), free_port()
    tracing = {
        "sample_rate": 1.0,
        "exporter_type": "otlp",
        "otlp": {"protocol": "grpc", "endpoint": f"http://127.0.0.1:{sink.port}", "grpc": {"insecure": True}},
    }
    env = {
        **os.environ,
        **sink.env(),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), str(tmp_path)]),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "TEST_BENTOML_TRACING": json.dumps(tracing) if bentoml_tracing else "",
        "INFERSIGHT_METRICS_PORT": str(metrics_port),
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_FLUSH_INTERVAL": "0.1",
        "OTEL_SERVICE_NAME": "bentoml-test",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # bentoml serve sets its own
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(python).parent / "bentoml"), "serve", "service:Doubler", "--host", "127.0.0.1", "--port", str(port)]
    with server(cmd, tmp_path, env):
        assert wait_for(lambda: requests.get(f"{url}/healthz", timeout=2).status_code == 200, 60), "no BentoML"
        trace_ids = [f"{i + 1:032x}" for i in range(N)]
        for i in range(N):
            headers = {"traceparent": f"00-{trace_ids[i]}-{i + 1:016x}-01"}
            answer = requests.post(f"{url}/double", json={"x": i}, headers=headers, timeout=30)
            assert answer.json() == {"y": 2 * i}, answer.text

        def traced() -> bool:
            traces = sink.traces()
            names = [{span.name for _, span in traces.get(t, ())} for t in trace_ids]
            return all(set(STAGES) <= found and any(n.startswith("POST") for n in found) for found in names)

        assert wait_for(traced, 20), {
            t: [(r.get("service.name"), s.name, s.kind) for r, s in v] for t, v in sink.traces().items()
        }
        for i, trace_id in enumerate(trace_ids):
            spans = sink.traces()[trace_id]
            servers = [(resource, span) for resource, span in spans if span.kind == 2]  # SPAN_KIND_SERVER
            assert len(servers) == 1, [(r.get("service.name"), s.name) for r, s in servers]
            _, request = servers[0]
            keys = {a.key for a in request.attributes}
            # Whose server span: contrib's ASGI middleware (BentoML's) writes the older HTTP
            # conventions (http.target), infersight the current ones (url.path).
            assert ("http.target" in keys) == bentoml_tracing, keys
            assert ("url.path" in keys) != bentoml_tracing, keys
            assert request.parent_span_id.hex() == f"{i + 1:016x}"  # the client's traceparent
            by_name = {span.name: span for _, span in spans}
            for stage in STAGES:
                assert by_name[stage].parent_span_id == request.span_id, stage

        found = samples(f"http://127.0.0.1:{metrics_port}/metrics")
        assert total(found, "infersight_request_duration_seconds_count", endpoint="/double") == N
        for stage in STAGES:
            assert total(found, "infersight_stage_duration_seconds_count", stage=stage) == N, stage
        theirs = samples(f"{url}/metrics")  # BentoML's own route, still answering with its metrics
        assert total(theirs, "bentoml_service_request_total", endpoint="/double") == N
        # bentoml serve runs prometheus_client in multiprocess mode: infersight's are there too.
        assert total(theirs, "infersight_request_duration_seconds_count", endpoint="/double") == N
