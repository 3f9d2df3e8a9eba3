"""The OTel environment contract: exporter lists, resource attributes, errors naming the variable."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from infersight import _compat, _tracing
from infersight.config import Config, ConfigError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("otlp", ("otlp",)), ("console, OTLP", ("console", "otlp")), ("otlp,otlp", ("otlp",)), ("none", ())],
)
def test_exporter_lists(raw: str, expected: tuple[str, ...]) -> None:
    assert Config.from_env(environ={"OTEL_TRACES_EXPORTER": raw}).trace_exporters == expected


@pytest.mark.parametrize("raw", ["zipkin", "otlp,zipkin", "none,console", ","])
def test_an_exporter_list_infersight_cant_honour_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        Config.from_env(environ={"OTEL_TRACES_EXPORTER": raw})


def test_each_listed_exporter_gets_its_own_counted_batch_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "set_tracer_provider", lambda provider: None)  # keep the global as it is
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())
    results: list[tuple[int, bool]] = []
    config = Config.from_env(environ={"OTEL_TRACES_EXPORTER": "console,otlp"})
    provider, owned = _tracing.setup_tracer_provider(config, lambda n, ok: results.append((n, ok)))
    try:
        inner: list[Any] = [p.span_exporter.inner for p in _compat.span_processors(provider)]
        assert owned and [type(e).__name__ for e in inner] == ["ConsoleSpanExporter", "FastOTLPSpanExporter"]
        assert isinstance(inner[0], ConsoleSpanExporter)
    finally:
        provider.shutdown()


def test_sdk_disabled_is_read_and_checked() -> None:
    assert not Config.from_env(environ={"OTEL_SDK_DISABLED": "true"}).spans_on
    assert Config.from_env(environ={"OTEL_SDK_DISABLED": "false"}).spans_on
    with pytest.raises(ConfigError, match="OTEL_SDK_DISABLED"):
        Config.from_env(environ={"OTEL_SDK_DISABLED": "maybe"})


def test_resource_attributes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=ranking")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    resource = _tracing.make_resource(Config(service="api"))
    assert resource.attributes["deployment.environment"] == "prod"
    assert resource.attributes["team"] == "ranking"
    assert resource.attributes["service.name"] == "api"
