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
        ({"INFERSIGHT_SERVER_TIMING": "maybe"}, "server_timing", "INFERSIGHT_SERVER_TIMING"),
        ({"INFERSIGHT_FLUSH_INTERVAL": "nan"}, "flush_interval_s", "INFERSIGHT_FLUSH_INTERVAL"),
        ({"INFERSIGHT_FLUSH_INTERVAL": "-1"}, "flush_interval_s", "INFERSIGHT_FLUSH_INTERVAL"),
        ({"INFERSIGHT_MODELS": "{not json"}, "models", "INFERSIGHT_MODELS"),
        ({"INFERSIGHT_GPU": "sometimes"}, "gpu", "INFERSIGHT_GPU"),
        ({"INFERSIGHT_GIL_PROBE": "maybe"}, "gil_probe", "INFERSIGHT_GIL_PROBE"),
        ({"INFERSIGHT_STAGE_CPU_TIME": "2"}, "stage_cpu_time", "INFERSIGHT_STAGE_CPU_TIME"),
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
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "INFERSIGHT_METRICS_PORT",
                "INFERSIGHT_QUEUE_SIZE",
                "INFERSIGHT_FLUSH_INTERVAL",
                "INFERSIGHT_EXEMPLARS",
                "INFERSIGHT_MODELS",
                "OTEL_TRACES_EXPORTER",
                "INFERSIGHT_DRIFT_SAMPLE_RATE",
                "INFERSIGHT_MAX_LABEL_VALUES",
            ]
        ),
        st.text(max_size=30),
    )
)
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


# ---- every environment variable: a good value round-trips, a bad one names its variable -----

from hypothesis import example  # noqa: E402

from infersight.config import _ENV  # noqa: E402

TRACES_PROTOCOL_VAR = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"  # read besides _ENV: beats the generic one
METRICS_PROTOCOL_VAR = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"  # likewise, for pushed metrics
ALL_VARS = sorted({var for var, _ in _ENV.values()} | {TRACES_PROTOCOL_VAR, METRICS_PROTOCOL_VAR})


def _spaced(s: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Surrounding whitespace, as shells and YAML leave it, is ignored."""
    return st.tuples(st.sampled_from(["", " ", "\t", "  \n"]), s, st.sampled_from(["", " ", "\n"])).map("".join)


def _ints(low: int, high: int) -> st.SearchStrategy[tuple[str, object]]:
    return st.integers(low, high).flatmap(lambda i: _spaced(st.just(str(i))).map(lambda raw: (raw, i)))


def _floats(low: float | None, high: float | None, positive: bool = False) -> st.SearchStrategy[tuple[str, object]]:
    values = st.floats(low, high, allow_nan=False, allow_infinity=False).filter(lambda x: x > 0 or not positive)
    return values.flatmap(lambda x: _spaced(st.sampled_from([repr(x), f"{x:.17g}"])).map(lambda raw: (raw, x)))


def _choices(*values: str, fold_case: bool = True) -> st.SearchStrategy[tuple[str, object]]:
    def variants(value: str) -> st.SearchStrategy[tuple[str, object]]:
        spellings = [value, value.upper(), value.capitalize()] if fold_case else [value]
        return _spaced(st.sampled_from(spellings)).map(lambda raw: (raw, value))

    return st.sampled_from(values).flatmap(variants)


_BOOLS = st.sampled_from(
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ]
).flatmap(lambda pair: _spaced(st.sampled_from([pair[0], pair[0].upper()])).map(lambda raw: (raw, pair[1])))
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).map(str.strip).filter(bool)
_MODEL = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.none(), _TEXT, st.integers(0, 99)),
        "slo_p99_seconds": st.floats(1e-6, 1e3),
        "endpoints": st.lists(_TEXT.filter(lambda s: s.lstrip("/")), max_size=3),
    },
)


def _endpoints_unique(models: dict[str, dict[str, object]]) -> bool:
    """An endpoint maps to one model (a second is a ConfigError, tested on its own)."""
    keys = [e.strip().lstrip("/") for m in models.values() for e in m.get("endpoints", ())]  # type: ignore[attr-defined]
    return len(keys) == len(set(keys))


def _expected_models(models: dict[str, dict[str, object]]) -> dict[str, ModelConfig]:
    """JSON null or no version: no version; numbers are kept as text."""
    return {
        name: ModelConfig(
            version="" if m.get("version") is None else str(m["version"]),
            slo_p99_seconds=m.get("slo_p99_seconds"),  # type: ignore[arg-type]
            endpoints=tuple(m.get("endpoints", ())),  # type: ignore[call-overload]
        )
        for name, m in models.items()
    }


_MODELS = (
    st.dictionaries(_TEXT, _MODEL, max_size=4)
    .filter(_endpoints_unique)
    .map(lambda m: (json.dumps(m), _expected_models(m)))
)

# setting -> strategy of (what the variable says, what the setting must then be)
VALID: dict[str, st.SearchStrategy[tuple[str, object]]] = {
    "service": _TEXT.map(lambda s: (s, s)),
    "traces_exporter": _choices("otlp", "console", "none"),
    "sdk_disabled": _BOOLS,
    "otlp_protocol": _choices("grpc", "http/protobuf", fold_case=False),
    "otlp_encoder": _choices("fast", "stock"),
    "models": _MODELS,
    "traces": _BOOLS,
    "traces_keep_ratio": _floats(0, 1),
    "traces_keep_slower_than_s": _floats(0, 1e6, positive=True),
    "overhead_budget": _floats(0, 1),
    "metrics": _BOOLS,
    "metrics_exporter": _choices("prometheus", "otlp", "prometheus,otlp"),
    "metrics_export_interval_s": _floats(1e-300, 1e9, positive=True).map(lambda pair: (pair[0], float(pair[1]) / 1000)),  # type: ignore[arg-type]
    "otlp_metrics_protocol": _choices("grpc", "http/protobuf", fold_case=False),
    "metrics_port": _ints(0, 65535),
    "metrics_addr": _TEXT.map(lambda s: (s, s)),
    "metrics_path": st.one_of(_TEXT.map(lambda s: "/" + s).map(lambda s: (s, s)), st.just(("", ""))),
    "exemplars": _BOOLS,
    "server_timing": _BOOLS,
    "max_label_values": _ints(1, 100_000),
    "queue_size": _ints(1, 10_000_000),
    "flush_interval_s": _floats(0, 1e6, positive=True),
    "shutdown_timeout_s": _floats(0, 300),
    "stage_cpu_time": _BOOLS,
    "gil_probe": _BOOLS,
    "gpu": _choices("auto", "on", "off"),
    "gpu_interval_s": _floats(0, 1e6, positive=True),
    "gpu_slow_interval_s": _floats(0, 1e6, positive=True),
    "gpu_span_snapshots": _BOOLS,
    "gpu_hourly_cost": st.one_of(
        _floats(0, 1e6).map(lambda pair: (pair[0], {"*": pair[1]})),
        st.dictionaries(
            st.text("ABCDHXGa0123456789 -*", min_size=1, max_size=12).map(str.strip).filter(bool),
            st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
            min_size=1,
            max_size=4,
        ).map(lambda d: (",".join(f"{k}={v!r}" for k, v in d.items()), d)),
    ),
    "cuda_events": _BOOLS,
    "nvtx": _BOOLS,
    "drift": _BOOLS,
    "drift_interval_s": _floats(0, 1e6, positive=True),
    "drift_window": _ints(2, 10_000_000),
    "drift_sample_rate": _floats(0, 1),
    "drift_reference_size": _ints(2, 10_000_000),
    "drift_dir": _TEXT.map(lambda s: (s, s)),
    "drift_threshold": _floats(0, 1),
}

# Values that are wrong for a kind of setting, beyond random text.
_BAD_NUMBERS = ["abc", "1.5.2", "nan", "inf", "-inf", "1e999", "-1", "0x10", "", "--1", "1 2", "true"]
_BAD_MODELS = [
    '{"m": {"slo_p99_seconds": -1}}',
    '{"m": {"slo_p99_seconds": "fast"}}',
    '{"m": 3}',
    '{"m": {"slo": 1}}',
    '{"m": {"endpoints": "/a"}}',
    '{"m": {"endpoints": ["/a"]}, "n": {"endpoints": ["a"]}}',
    '{"": {}}',
    "[]",
    '"m"',
    "{not json",
    "[" * 5_000,
]


def test_every_variable_has_a_valid_value_strategy() -> None:
    assert set(_ENV) <= set(VALID), f"add a strategy to VALID for {sorted(set(_ENV) - set(VALID))}"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_good_value_in_any_variable_round_trips(data: st.DataObject) -> None:
    setting = data.draw(st.sampled_from(sorted(_ENV)), label="setting")
    var = _ENV[setting][0]
    raw, expected = data.draw(VALID[setting], label="value")
    cfg = Config.from_env({var: raw})
    assert getattr(cfg, setting) == expected


def test_an_interval_too_small_for_seconds_names_its_variable() -> None:
    """5e-324 ms is positive, but 0.0 as seconds: the error says why, not "got 0.0"."""
    with pytest.raises(ConfigError, match=r"OTEL_METRIC_EXPORT_INTERVAL.*too small"):
        Config.from_env({"OTEL_METRIC_EXPORT_INTERVAL": "5e-324"})


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_the_traces_protocol_variable_round_trips(data: st.DataObject) -> None:
    raw, expected = data.draw(VALID["otlp_protocol"])
    assert Config.from_env({TRACES_PROTOCOL_VAR: raw, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}).otlp_protocol == expected


@settings(max_examples=200, deadline=None)
@given(var=st.sampled_from(ALL_VARS), raw=st.one_of(st.text(max_size=30), st.sampled_from(_BAD_NUMBERS + _BAD_MODELS)))
@example(var="INFERSIGHT_MODELS", raw='{"m": {"slo_p99_seconds": -1}}')
@example(var="INFERSIGHT_MODELS", raw='{"m": 3}')
@example(var="INFERSIGHT_MODELS", raw="[" * 5_000)
@example(var=TRACES_PROTOCOL_VAR, raw="http/json")
@example(var=METRICS_PROTOCOL_VAR, raw="http/json")
@example(var="INFERSIGHT_METRICS_EXPORTER", raw=" , ")
def test_a_bad_value_in_any_variable_names_it(var: str, raw: str) -> None:
    """Whatever a variable holds, parsing gives a config or a ConfigError naming that variable;
    the other variables are set to good values, so they can't be the ones blamed."""
    try:
        Config.from_env({var: raw})
    except ConfigError as exc:
        assert exc.source == var, (str(exc), exc.source)
        assert f"${var}" in str(exc)


def test_metrics_exporter_and_its_protocol() -> None:
    assert Config.from_env({}).metrics_exporter == "prometheus"
    cfg = Config.from_env({"INFERSIGHT_METRICS_EXPORTER": "OTLP, prometheus"})
    assert cfg.metrics_exporter == "otlp,prometheus" and cfg.pushes_metrics and cfg.serves_metrics
    cfg = Config.from_env({"INFERSIGHT_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "500"})
    assert (cfg.pushes_metrics, cfg.serves_metrics, cfg.metrics_export_interval_s) == (True, False, 0.5)
    assert not Config.from_env({"INFERSIGHT_METRICS_EXPORTER": "otlp", "INFERSIGHT_METRICS": "false"}).pushes_metrics
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", METRICS_PROTOCOL_VAR: "http/protobuf"}
    assert (Config.from_env(env).otlp_protocol, Config.from_env(env).otlp_metrics_protocol) == ("grpc", "http/protobuf")
    assert Config.from_env({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}).otlp_metrics_protocol == "http/protobuf"
    with pytest.raises(ConfigError, match=r"metrics_exporter \(from \$INFERSIGHT_METRICS_EXPORTER\).*statsd"):
        Config.from_env({"INFERSIGHT_METRICS_EXPORTER": "statsd"})


def test_the_metrics_exporters_tls_files_are_checked_only_when_metrics_are_pushed() -> None:
    env = {"OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE": "/no/such/ca.pem"}
    assert Config.from_env(env).metrics_exporter == "prometheus"  # not pushed: not the SDK's business
    with pytest.raises(ConfigError) as info:
        Config.from_env({**env, "INFERSIGHT_METRICS_EXPORTER": "otlp"})
    assert info.value.source == "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE"


def test_gpu_hourly_cost_is_a_price_or_prices_by_gpu_name() -> None:
    var = "INFERSIGHT_GPU_HOURLY_COST"
    assert Config.from_env({var: "2.5"}).gpu_hourly_cost == {"*": 2.5}
    assert Config.from_env({var: "H100=4.1, A10G = 1.2,*=2"}).gpu_hourly_cost == {"H100": 4.1, "A10G": 1.2, "*": 2.0}
    assert Config(gpu_hourly_cost=3).gpu_hourly_cost == {"*": 3.0}
    assert Config().gpu_hourly_cost == {}
    for bad in ("H100=-1", "H100=", "=2", "H100=4,oops", "-3", "nan"):
        with pytest.raises(ConfigError, match=var):
            Config.from_env({var: bad})
    with pytest.raises(ConfigError, match="gpu_hourly_cost"):
        Config(gpu_hourly_cost={"H100": "cheap"})
