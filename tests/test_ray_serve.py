"""Ray Serve: ``import infersight.auto`` in the deployment's module instruments each replica,
and with ``INFERSIGHT_METRICS_EXPORTER=otlp`` every replica's metrics reach Prometheus through
the collector, with no port per replica: every request is counted once, by the replica that
served it.

Ray is heavy (~30 packages of its own), so it lives in its own env (tools/build-ray-env.sh,
cached by tools/setup.sh); a local Ray cluster is started from it in a subprocess
(tests/apps/ray_serve_driver.py). Skips, saying why, only when that env can't be built.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from infersight.conventions import METRIC
from stack import LOOPBACK, OtlpSink, ensure_collector, free_port, http_get, loopback_config, run_collector, wait_until

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "tools" / "build-ray-env.sh"
REQUESTS = 40
INGRESS_REQUESTS = 4  # as tests/apps/ray_serve_driver.py sends to the FastAPI ingress deployment
INGRESS_ROUTE = "/items/{item_id}"
DEPLOYMENT = "Classifier"  # the model label: the deployment's name (no stage names a model)


@pytest.fixture(scope="module")
def ray_python() -> str:
    try:
        out = subprocess.run(["bash", str(BUILD)], cwd=ROOT, capture_output=True, text=True, timeout=960)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{BUILD.name} did not build the Ray env within 16 min")
    if out.returncode != 0:
        pytest.skip(f"{BUILD.name} could not build the Ray env: {out.stderr.strip()[-1500:]}")
    return out.stdout.strip().splitlines()[-1]


def _counts(url: str, **labels: str) -> dict[str, float]:
    """Requests with ``labels`` counted at the collector's Prometheus exporter, by replica (``instance``)."""
    status, text = http_get(url, headers={"Accept": "application/openmetrics-text"})
    assert status == 200
    by_instance: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == f"{METRIC.REQUEST_DURATION.name}_count" and labels.items() <= s.labels.items():
                by_instance[s.labels["instance"]] = by_instance.get(s.labels["instance"], 0) + s.value
    return by_instance


@pytest.mark.timeout(240)
def test_two_replicas_count_every_request_once_through_the_collector(
    ray_python: str, sink: OtlpSink, tmp_path: Path
) -> None:
    shipped = yaml.safe_load((ROOT / "collector-config" / "otelcol.yaml").read_text())
    cfg, ports = loopback_config(shipped, tmp_path, f"{LOOPBACK}:{sink.port}")
    cfg_path = tmp_path / "otelcol.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), str(ROOT / "tests" / "apps")]),
        "INFERSIGHT_METRICS_EXPORTER": "otlp",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{LOOPBACK}:{ports['otlp_grpc']}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "ray-classify",
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_GIL_PROBE": "false",  # two cores: no probe thread per replica
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    url = f"http://{LOOPBACK}:{ports['prometheus']}/metrics"
    health = f"http://{LOOPBACK}:{ports['health_check']}/"
    log = tmp_path / "driver.log"
    collector = ensure_collector()
    with run_collector(collector, cfg_path, tmp_path / "collector.log", health_url=health), log.open("wb") as err:
        driver = subprocess.Popen(
            [ray_python, str(ROOT / "tests" / "apps" / "ray_serve_driver.py"), str(REQUESTS), str(free_port())],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        try:
            assert driver.stdout is not None and driver.stdin is not None
            line = driver.stdout.readline()  # bounded by the test's timeout
            assert line, f"the Ray driver ended early:\n{log.read_text(errors='replace')[-3000:]}"
            answered: dict[str, Any] = json.loads(line)
            assert answered["labels"] == {"positive": REQUESTS // 2, "negative": REQUESTS // 2}

            def all_counted() -> dict[str, float] | None:
                counts = _counts(url, model=DEPLOYMENT)
                return counts if sum(counts.values()) >= REQUESTS else None

            try:
                wait_until(all_counted, 30, f"{REQUESTS} requests at the collector", interval=0.5)
            except TimeoutError as exc:
                seen = [line for line in http_get(url)[1].splitlines() if "request_duration_seconds_count" in line]
                raise AssertionError(f"{exc}; the collector serves {seen or 'none'}") from None
            time.sleep(1.5)  # three more pushes of each replica: a request counted twice would show now
            counts = _counts(url, model=DEPLOYMENT)
            ingress = _counts(url, endpoint=INGRESS_ROUTE)
        finally:
            if driver.stdin is not None:
                driver.stdin.close()
            try:
                driver.wait(60)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait(10)

    assert sum(counts.values()) == REQUESTS, counts  # once each: no request counted twice
    served = {instance: n for instance, n in counts.items() if n > 0}
    assert len(served) == 2, f"expected both replicas to serve, by instance: {counts}"
    # The FastAPI ingress deployment: by route template, once each, by its one replica.
    assert list(ingress.values()) == [INGRESS_REQUESTS], ingress


def test_the_ray_internals_are_where_infersight_looks_in_the_ray_env(ray_python: str) -> None:
    """tests/test_compat.py skips these probes in the main env, which has no Ray."""
    code = (
        "from infersight import _compat\n"
        "print({n: p() for n, p in _compat.PROBES.items() if n.startswith('ray_serve.')})"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "sdk")}
    out = subprocess.run([ray_python, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    found = out.stdout.strip().splitlines()[-1:]
    assert found == [str({"ray_serve.http_entrypoint": True, "ray_serve.replica_config": True})], out.stderr[-2000:]
