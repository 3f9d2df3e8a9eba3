"""Property: whatever invocation metadata (trace context, arbitrary and binary keys) and payload
size a gRPC client sends, the call ends with the servicer's own status, the servicer sees its
metadata untouched, the spans close with the right status, and no SDK error is counted.

One instrumented thread-pool server (tests/test_grpc.py's ``sync_server``) for the module.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import StatusCode
from tests.test_grpc import SERVICE, pb, pb_grpc, sync_server

import infersight
from infersight import _errors
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import Captured, capture

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
METHOD = f"{SERVICE}/ModelInfer"
PAYLOAD = "infersight_payload_size_bytes_sum"
# What the servicer does, chosen by the request id; the status the client must then get.
OUTCOMES = {
    "ok": grpc.StatusCode.OK,
    "abort": grpc.StatusCode.NOT_FOUND,  # context.abort
    "set_code": grpc.StatusCode.UNAVAILABLE,  # context.set_code, then return
    "raise": grpc.StatusCode.UNKNOWN,  # an exception from the servicer
}
SERVER_ERRORS = {"set_code", "raise"}  # OTel semconv: the server's fault, an ERROR span


class Servicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.seen = [(m.key, m.value) for m in context.invocation_metadata()]
        with infersight.model(model="m"):
            if request.id == "abort":
                context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
            if request.id == "raise":
                raise ValueError("servicer bug")
            if request.id == "set_code":
                context.set_code(grpc.StatusCode.UNAVAILABLE)
            size = sum(len(c) for c in request.raw_input_contents)
            return pb.ModelInferResponse(model_name="m", id=str(size))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Any, Servicer, Captured]]:
    servicer = Servicer()
    with capture(metrics_port=0) as t:
        instrument_all(["grpc"])
        try:
            with sync_server(servicer) as channel:
                yield pb_grpc.GRPCInferenceServiceStub(channel), servicer, t
        finally:
            uninstrument_all()


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
trace_header = st.one_of(
    printable,
    st.sampled_from(
        [
            VALID,
            VALID.upper(),
            "ff-" + VALID[3:],
            VALID + "-extra",
            VALID.replace("-01", "-zz"),
            "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
            "00--b7ad6b7169203331-01",
        ]
    ),
)
# Keys a client may send: lowercase, not grpc-reserved; "-bin" ones carry bytes.
key = st.text(string.ascii_lowercase + string.digits + "-_.", min_size=1, max_size=20).filter(
    lambda k: not k.startswith("grpc-") and k not in {"te", "content-type", "user-agent", "host"} and k[0] != "."
)
key = st.one_of(key, key.map(lambda k: k + "-bin"), st.sampled_from(["traceparent-bin", "tracestate-bin", "baggage"]))
entry = key.flatmap(lambda k: st.tuples(st.just(k), st.binary(max_size=64) if k.endswith("-bin") else printable))
sizes = st.one_of(st.integers(0, 4096), st.sampled_from([64 * 1024, 1024 * 1024, 4 * 1024 * 1024 - 4096]))


def by_key(pairs: list[tuple[str, Any]], sent: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    keys = {k for k, _ in sent}
    grouped: dict[str, list[Any]] = {}
    for k, v in pairs:
        if k in keys:
            grouped.setdefault(k, []).append(v)
    return grouped


@settings(max_examples=150, deadline=None)
@given(
    traceparent=st.one_of(st.none(), trace_header),
    tracestate=st.one_of(st.none(), printable),
    extra=st.lists(entry, max_size=6),
    size=sizes,
    outcome=st.sampled_from(sorted(OUTCOMES)),
)
def test_any_metadata_and_payload(
    served: tuple[Any, Servicer, Captured],
    traceparent: str | None,
    tracestate: str | None,
    extra: list[tuple[str, Any]],
    size: int,
    outcome: str,
) -> None:
    stub, servicer, t = served
    metadata = list(extra)
    if traceparent is not None:
        metadata.append(("traceparent", traceparent))
    if tracestate is not None:
        metadata.append(("tracestate", tracestate))
    request = pb.ModelInferRequest(model_name="m", id=outcome, raw_input_contents=[b"\x00" * size])
    t.flush()
    t.exporter.clear()
    errors_before = _errors.counts()
    payload_before = t.value(PAYLOAD, model="m", direction="request") or 0.0

    try:
        response = stub.ModelInfer(request, metadata=metadata, timeout=30)
        code = grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code = exc.code()
    assert code == OUTCOMES[outcome]
    if code == grpc.StatusCode.OK:
        assert response.id == str(size)
    # The servicer saw what the client sent: each key's values, in order (grpc adds user-agent
    # and the like, and may group keys differently).
    assert by_key(servicer.seen, metadata) == by_key(metadata, metadata)

    server = t.spans(METHOD)
    stage = t.spans("model")
    assert len(server) == 1 and len(stage) == 1, [s.name for s in t.spans()]
    span = server[0]
    assert span.end_time is not None and stage[0].end_time is not None
    assert stage[0].parent is not None and stage[0].parent.span_id == span.context.span_id
    assert (span.attributes or {})["rpc.grpc.status_code"] == OUTCOMES[outcome].value[0]
    assert (span.status.status_code is StatusCode.ERROR) == (outcome in SERVER_ERRORS)
    if traceparent == VALID:
        assert f"{span.context.trace_id:032x}" == VALID.split("-")[1]
        assert span.parent is not None and span.parent.is_remote
    assert span.context.trace_id != 0
    assert t.value(PAYLOAD, model="m", direction="request") == payload_before + request.ByteSize()
    assert _errors.counts() == errors_before
