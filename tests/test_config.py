"""Config: env defaults, overrides, and errors that name the setting."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infersight.config import Config, ConfigError, ModelConfig


def test_defaults_come_from_the_environment() -> None:
    env = {
        "OTEL_SERVICE_NAME": "sentiment",
        "INFERSIGHT_MODELS": json.dumps({"sst2": {"version": "3", "slo_p99_seconds": 0.1}}),
        "INFERSIGHT_METRICS_PORT": "9999",
        "INFERSIGHT_EXEMPLARS": "false",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    cfg = Config.from_env(env)
    assert cfg.service == "sentiment"
    assert cfg.models["sst2"] == ModelConfig(version="3", slo_p99_seconds=0.1)
    assert cfg.metrics_port == 9999
    assert cfg.exemplars is False
    assert cfg.otlp_protocol == "http/protobuf"


def test_keyword_arguments_win_over_env() -> None:
    cfg = Config.from_env({"INFERSIGHT_METRICS_PORT": "9999"}, metrics_port=1234)
    assert cfg.metrics_port == 1234


def test_traces_protocol_variable_beats_the_generic_one() -> None:
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert Config.from_env(env).otlp_protocol == "http/protobuf"


@pytest.mark.parametrize(
    ("env", "setting", "var"),
    [
        ({"INFERSIGHT_METRICS_PORT": "abc"}, "metrics_port", "INFERSIGHT_METRICS_PORT"),
        ({"INFERSIGHT_METRICS_PORT": "70000"}, "metrics_port", "INFERSIGHT_METRICS_PORT"),
        ({"OTEL_TRACES_EXPORTER": "zipkin2"}, "traces_exporter", "OTEL_TRACES_EXPORTER"),
        ({"INFERSIGHT_EXEMPLARS": "maybe"}, "exemplars", "INFERSIGHT_EXEMPLARS"),
        ({"INFERSIGHT_FLUSH_INTERVAL": "nan"}, "flush_interval_s", "INFERSIGHT_FLUSH_INTERVAL"),
        ({"INFERSIGHT_FLUSH_INTERVAL": "-1"}, "flush_interval_s", "INFERSIGHT_FLUSH_INTERVAL"),
        ({"INFERSIGHT_MODELS": "{not json"}, "models", "INFERSIGHT_MODELS"),
        ({"INFERSIGHT_GPU": "sometimes"}, "gpu", "INFERSIGHT_GPU"),
    ],
)
def test_bad_env_names_setting_and_variable(env: dict[str, str], setting: str, var: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_env(env)
    assert info.value.setting == setting
    assert var in str(info.value)


def test_negative_slo_names_the_model() -> None:
    with pytest.raises(ConfigError, match=r"models\.sst2\.slo_p99_seconds"):
        Config.from_env({}, models={"sst2": {"slo_p99_seconds": -0.1}})


def test_unknown_setting_and_unknown_model_key() -> None:
    with pytest.raises(ConfigError, match="metrics_prot"):
        Config.from_env({}, metrics_prot=1)
    with pytest.raises(ConfigError, match=r"slo_p99"):
        Config.from_env({}, models={"m": {"slo_p99": 1}})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(
    st.sampled_from(["INFERSIGHT_METRICS_PORT", "INFERSIGHT_QUEUE_SIZE", "INFERSIGHT_FLUSH_INTERVAL",
                     "INFERSIGHT_EXEMPLARS", "INFERSIGHT_MODELS", "OTEL_TRACES_EXPORTER",
                     "INFERSIGHT_DRIFT_SAMPLE_RATE", "INFERSIGHT_MAX_LABEL_VALUES"]),
    st.text(max_size=30),
))  # fmt: skip
def test_any_env_either_parses_or_raises_config_error(env: dict[str, str]) -> None:
    """Property: no input makes parsing crash with anything but ConfigError."""
    try:
        cfg = Config.from_env(env)
    except ConfigError as exc:
        assert exc.setting
    else:
        assert 0 <= cfg.metrics_port <= 65535
        assert cfg.queue_size >= 1
        assert math.isfinite(cfg.flush_interval_s) and cfg.flush_interval_s > 0


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=5)))
def test_slo_values(slo: object) -> None:
    ok = isinstance(slo, (int, float)) and not isinstance(slo, bool) and math.isfinite(slo) and slo > 0
    if ok:
        assert ModelConfig(slo_p99_seconds=slo).slo_p99_seconds == slo  # type: ignore[arg-type]
    else:
        with pytest.raises(ConfigError):
            ModelConfig(slo_p99_seconds=slo)  # type: ignore[arg-type]
