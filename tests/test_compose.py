"""docker-compose.yml: valid against the Compose Specification schema, pinned images, existing
mounts, a healthcheck per service, and wired consistently with the configs it mounts.

No Docker engine is needed: these are static checks of the files.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"

# Bind-mounted host paths that other parts of the project create (dashboards, examples).
# Keep this short: every other mounted path must exist in the repo.
ALLOWED_MISSING = {
    "grafana-dashboards/provisioning",  # Grafana datasources and dashboard providers
    "grafana-dashboards/dashboards",  # dashboard JSON
    "examples/flask_sentiment",  # the model server the Dockerfile runs
    "examples/load",  # the locustfile of the loadgen service
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    svcs: dict[str, Any] = compose["services"]
    return svcs


def _schema() -> dict[str, Any]:
    # The official compose-spec schema, as vendored (and kept current) by check-jsonschema.
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (dev dependency) is not installed")
    text = (resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_valid_against_compose_spec(compose: dict[str, Any]) -> None:
    import jsonschema  # type: ignore[import-untyped]

    schema = _schema()
    assert "services" in schema["properties"]
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_schema_catches_a_typo(compose: dict[str, Any]) -> None:
    """The schema check is real: an unknown service key fails it."""
    import jsonschema  # type: ignore[import-untyped]

    schema = _schema()
    broken = json.loads(json.dumps(compose))
    broken["services"]["prometheus"]["helthcheck"] = {"test": ["CMD", "true"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def _split_image(image: str) -> tuple[str, str | None]:
    """``name[:tag][@digest]`` -> (name, tag); the tag is after the last '/'."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        return image[: image.rindex(":")], last.split(":", 1)[1]
    return image, None


def test_every_image_is_pinned(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "image" in svc:
            _repo, tag = _split_image(svc["image"])
            assert tag, f"{name}: image {svc['image']} has no tag"
            assert tag != "latest" and "latest" not in tag.split("-"), f"{name}: {svc['image']}"
            assert "${" not in svc["image"], f"{name}: image tag from the environment"


def _bind_sources(svc: dict[str, Any]) -> list[str]:
    out = []
    for vol in svc.get("volumes") or []:
        if isinstance(vol, str):
            src = vol.split(":", 1)[0]
            if src.startswith((".", "/", "~")):
                out.append(src)
        elif vol.get("type") == "bind":
            out.append(vol["source"])
    return out


def test_bind_mounts_exist(services: dict[str, Any]) -> None:
    checked = 0
    for name, svc in services.items():
        for src in _bind_sources(svc):
            assert not src.startswith(("/", "~")), f"{name}: absolute host path {src}"
            rel = Path(src).as_posix().removeprefix("./")
            checked += 1
            if rel in ALLOWED_MISSING:
                continue
            assert (ROOT / rel).exists(), f"{name}: mounts {src}, which is not in the repo"
    assert checked >= 8


def test_build_contexts_exist(services: dict[str, Any]) -> None:
    builds = {n: s["build"] for n, s in services.items() if "build" in s}
    assert builds
    for name, build in builds.items():
        context = ROOT / build["context"]
        assert context.is_dir(), name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable"), f"{name}: no healthcheck"
        test = hc["test"]
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


def test_host_ports_are_loopback_and_unique(services: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            ip, host, _container = str(port).split(":")
            assert ip == "127.0.0.1", f"{name}: {port} is published on all interfaces"
            assert host not in seen, f"{name} and {seen.get(host)} both publish {host}"
            seen[host] = name


def _healthcheck_port(svc: dict[str, Any]) -> int:
    url = next(a for a in svc["healthcheck"]["test"] if "http://" in a)
    port = urlparse(re.search(r"http://[^'\" ]+", url).group(0)).port  # type: ignore[union-attr]
    assert port is not None
    return port


def test_collector_wiring(services: dict[str, Any]) -> None:
    col = services["otel-collector"]
    assert "./collector-config/otelcol.yaml:/etc/otelcol/config.yaml:ro" in col["volumes"]
    cfg = yaml.safe_load((ROOT / "collector-config" / "otelcol.yaml").read_text())
    # The healthcheck probes the health_check extension's port.
    assert cfg["extensions"]["health_check"]["endpoint"].endswith(f":{_healthcheck_port(col)}")
    # The persistent queue's directory is on a named volume.
    queue_dir = cfg["extensions"]["file_storage"]["directory"]
    assert any(isinstance(v, str) and queue_dir.startswith(v.split(":")[1]) for v in col["volumes"])
    # Traces go to the jaeger service on the port its OTLP gRPC receiver listens on, and the
    # collector's trace exporter reads that variable.
    host, port = col["environment"]["TRACES_ENDPOINT"].split(":")
    assert host == "jaeger" and host in services
    exporter = next(e for name, e in cfg["exporters"].items() if name.split("/")[0] == "otlp_grpc")
    assert exporter["endpoint"].startswith("${env:TRACES_ENDPOINT")
    jaeger = yaml.safe_load((ROOT / "jaeger" / "jaeger.yaml").read_text())
    grpc = jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc == f"0.0.0.0:{port}"
    # The image is built from the same manifest version the tests build.
    manifest = yaml.safe_load((ROOT / "collector-config" / "builder-config.yaml").read_text())
    version = manifest["dist"]["version"]
    assert _split_image(col["image"])[1] == version
    dockerfile = (ROOT / "collector-config" / "Dockerfile").read_text()
    assert f"ARG OCB_VERSION={version}" in dockerfile


def test_prometheus_flags_and_targets(services: dict[str, Any]) -> None:
    cmd = services["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in cmd
    assert "--config.file=/etc/prometheus/prometheus.yml" in cmd
    prom = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]] + [
        t for am in prom["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]
    ]
    assert targets
    for target in targets:
        host = target.split(":")[0]
        assert host == "localhost" or host in services, f"prometheus.yml targets {target}: no such service"


def test_jaeger_is_the_release_the_native_stack_builds(services: dict[str, Any]) -> None:
    """One trace backend: compose runs the Jaeger release that tools/build-jaeger.sh builds for
    the demo and the tests (module v1.X.0 is Jaeger v2.(X-63).0), its config mounted, its
    health check on the healthcheckv2 port, its UI/API published, and no Tempo left."""
    jaeger = services["jaeger"]
    repo, tag = _split_image(jaeger["image"])
    assert repo == "jaegertracing/jaeger" and tag
    pin = next(line for line in (ROOT / "tools" / "jaeger.pin").read_text().splitlines() if line.strip()[:1] not in "#")
    module, version = pin.split()
    assert module == "github.com/jaegertracing/jaeger"
    major, minor, patch = (int(x) for x in version.removeprefix("v").split("."))
    assert major == 1 and tag == f"2.{minor - 63}.{patch}", (version, tag)
    assert "./jaeger/jaeger.yaml:/etc/jaeger/config.yaml:ro" in jaeger["volumes"]
    assert jaeger["command"] == ["--config", "/etc/jaeger/config.yaml"]
    cfg = yaml.safe_load((ROOT / "jaeger" / "jaeger.yaml").read_text())
    assert cfg["extensions"]["healthcheckv2"]["http"]["endpoint"].endswith(f":{_healthcheck_port(jaeger)}")
    query_port = cfg["extensions"]["jaeger_query"]["http"]["endpoint"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{query_port}:{query_port}" in jaeger["ports"]
    assert "healthcheckv2" in cfg["service"]["extensions"]
    assert not any("tempo" in name or "tempo" in str(svc.get("image", "")) for name, svc in services.items())
    assert services["grafana"]["depends_on"]["jaeger"]["condition"] == "service_healthy"


def test_alertmanager_webhooks_reach_a_service(services: dict[str, Any]) -> None:
    am = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    urls = [w["url"] for r in am["receivers"] for w in r.get("webhook_configs", [])]
    assert urls
    for url in urls:
        parsed = urlparse(url)
        assert parsed.hostname in services, url
        assert parsed.port == _healthcheck_port(services[parsed.hostname]), url
