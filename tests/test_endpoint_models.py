"""A server without a pipeline: a custom gRPC servicer names no model, so ``INFERSIGHT_MODELS``
maps its endpoints to one (exact names, or a prefix with a trailing ``*``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

import infersight
from infersight.config import Config, ConfigError
from infersight.conventions import ATTR, METRIC
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture
from stack import LOOPBACK

METHOD = "/scorer.Scorer/Score"
MODELS = {"fraud": {"version": "7", "endpoints": [METHOD], "slo_p99_seconds": 0.05}}


@pytest.fixture
def scorer() -> Iterator[tuple[Captured, grpc.Channel]]:
    with capture(metrics_port=0, models=MODELS) as telemetry:
        instrument_all(["grpc"])
        server = None
        try:

            def score(request: bytes, context: object) -> bytes:
                with infersight.model():  # a stage that names no model either
                    return request

            handler = grpc.method_handlers_generic_handler(
                "scorer.Scorer", {"Score": grpc.unary_unary_rpc_method_handler(score)}
            )
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
            server.add_generic_rpc_handlers((handler,))
            port = server.add_insecure_port(f"{LOOPBACK}:0")
            server.start()
            with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
                yield telemetry, channel
        finally:
            if server is not None:
                server.stop(None)
            uninstrument_all()


def test_a_grpc_scorer_gets_the_model_its_endpoint_is_mapped_to(scorer: tuple[Captured, grpc.Channel]) -> None:
    telemetry, channel = scorer
    assert channel.unary_unary(METHOD)(b"x", timeout=10) == b"x"
    telemetry.flush()
    count = f"{METRIC.REQUEST_DURATION.name}_count"
    labels = {"model": "fraud", "version": "7", "endpoint": METHOD.lstrip("/"), "outcome": "success"}
    assert telemetry.value(count, **labels) == 1
    assert telemetry.value(count, **{**labels, "model": "unknown", "version": "unknown"}) is None
    spans = telemetry.spans()
    assert spans and {s.attributes[ATTR.MODEL_NAME] for s in spans} == {"fraud"}


def test_endpoint_lookup_exact_and_prefix() -> None:
    cfg = Config.from_env(
        {},
        models={
            "fraud": {"endpoints": ["/scorer.Scorer/Score"]},
            "ranker": {"endpoints": ["/ranker.Ranker/*"]},
            "default": {"endpoints": ["*"]},
        },
    )
    assert cfg.model_for_endpoint("scorer.Scorer/Score") == "fraud"
    assert cfg.model_for_endpoint("/scorer.Scorer/Score") == "fraud"
    assert cfg.model_for_endpoint("ranker.Ranker/Rank") == "ranker"  # the longer prefix wins
    assert cfg.model_for_endpoint("/other") == "default"
    assert Config.from_env({}).model_for_endpoint("/other") is None


@pytest.mark.parametrize(
    ("models", "field"),
    [
        ({"m": {"endpoints": "/a"}}, "models.m.endpoints"),
        ({"m": {"endpoints": [3]}}, "models.m.endpoints"),
        ({"m": {"endpoints": ["/"]}}, "models.m.endpoints"),
        ({"a": {"endpoints": ["/x"]}, "b": {"endpoints": ["x"]}}, "models.b.endpoints"),
    ],
)
def test_a_bad_endpoints_value_names_the_field(models: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_env({"INFERSIGHT_MODELS": json.dumps(models)})
    assert err.value.setting == field and "$INFERSIGHT_MODELS" in str(err.value)
