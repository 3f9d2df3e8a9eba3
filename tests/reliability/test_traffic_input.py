"""Property: whatever trace headers and body sizes traffic sends, the request succeeds and its
telemetry is well formed (a bad traceparent starts a new trace)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import infersight
from infersight.instrumentation import instrument_all, uninstrument_all
from infersight.testing import capture

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
header_text = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            VALID,
            VALID.upper(),
            "ff-" + VALID[3:],
            VALID + "-extra",
            "00-" + "0" * 32 + "-" + "0" * 16 + "-01",
            VALID.replace("-01", "-zz"),
            "00--b7ad6b7169203331-01",
            "\x00" * 55,
        ]
    ),
)


def _sendable(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeError:
        return False
    return "\r" not in value and "\n" not in value


def make_app():  # type: ignore[no-untyped-def]
    from flask import Flask

    app = Flask("props")

    @app.post("/p")
    def p() -> str:
        with infersight.model(model="m"):
            return "ok"

    return app


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(traceparent=header_text, tracestate=st.text(max_size=300), body=st.binary(max_size=2048))
def test_any_trace_header_and_body(traceparent: str, tracestate: str, body: bytes) -> None:
    with capture() as t:
        instrument_all(["flask"])
        try:
            client = make_app().test_client()
            headers = {"traceparent": traceparent, "tracestate": tracestate}
            if not all(_sendable(v) for v in headers.values()):
                headers = {}  # not a header any HTTP client could send
            response = client.post("/p", data=body, headers=headers)
        finally:
            uninstrument_all()
        assert response.status_code == 200
        spans = t.spans()
        server = next(s for s in spans if s.name == "POST /p")
        model = next(s for s in spans if s.name == "model")
        assert server.context.trace_id != 0 and model.parent.span_id == server.context.span_id
        if headers and traceparent == VALID:
            assert f"{server.context.trace_id:032x}" == VALID.split("-")[1]
        assert server.attributes.get("http.request.body.size", 0) == len(body)


INT64_MAX = 2**63 - 1  # the largest integer an OTLP attribute carries
content_length = st.one_of(
    st.none(),  # absent
    st.integers(0, INT64_MAX).map(str),
    st.integers(INT64_MAX + 1, 10**40).map(str),  # huge
    st.integers(-(10**6), -1).map(str),
    st.text(max_size=20),  # garbage
    st.sampled_from(["", " 7 ", "1_0", "0x10", "1e3", "+5", "7.0", "\u0663", "00012"]),
)


def _expected_size(value: str | None) -> int | None:
    """RFC 9110: Content-Length = 1*DIGIT (surrounding whitespace is the parser's to drop)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit() and int(value) <= INT64_MAX:
        return int(value)
    return None


@settings(max_examples=200, deadline=None)
@given(length=content_length, body=st.binary(max_size=64))
def test_any_content_length(length: str | None, body: bytes) -> None:
    """Absent, garbage, negative or huge: the request succeeds, the span keeps its HTTP attributes,
    the body size is recorded only when it is a number OTLP can carry, and no SDK error."""
    from werkzeug.test import EnvironBuilder

    from infersight import _errors

    environ = EnvironBuilder(path="/p", method="POST", data=body).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    before = _errors.counts()
    with capture() as t:
        instrument_all(["flask"])
        try:
            statuses: list[str] = []
            result = make_app()(environ, lambda status, headers, *_: statuses.append(status))
            assert b"".join(result) == b"ok"
        finally:
            uninstrument_all()
        server = t.spans("POST /p")[0]
    assert statuses == ["200 OK"]
    attrs = server.attributes or {}
    assert attrs["http.route"] == "/p" and attrs["http.response.status_code"] == 200
    assert attrs.get("http.request.body.size") == _expected_size(length)
    assert _errors.counts() == before
