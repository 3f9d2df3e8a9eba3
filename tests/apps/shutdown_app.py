"""Plain servers with the one import and no signal handler of their own, stopped with SIGTERM by
tests/test_shutdown.py: ``python shutdown_app.py flask|grpc|uvicorn PORT``, and ``wsgi`` for
gunicorn. Every request makes four spans (the request and three stages)."""

import infersight.auto  # noqa: I001

import sys
from collections.abc import Awaitable, Callable
from typing import Any

from flask import Flask

import infersight

SPANS_PER_REQUEST = 4
GRPC_METHOD = "/scorer.Scorer/Score"

wsgi = Flask(__name__)


def _stages() -> None:
    with infersight.preprocess(model="m"):
        pass
    with infersight.model():
        pass
    with infersight.postprocess():
        pass


@wsgi.get("/work")
def work() -> str:
    _stages()
    return "ok"


async def asgi(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """A bare ASGI app using the explicit API: one request and its stages."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    with infersight.request(model="m", endpoint="/work"):
        _stages()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def serve_flask(port: int) -> None:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, wsgi, threaded=True)
    print("ready", flush=True)
    server.serve_forever()


def serve_grpc(port: int) -> None:
    from concurrent import futures

    import grpc

    def score(request: bytes, context: object) -> bytes:
        with infersight.preprocess():
            pass
        with infersight.model():
            pass
        with infersight.postprocess():
            return request

    service, method = GRPC_METHOD.lstrip("/").split("/")
    handler = grpc.method_handlers_generic_handler(service, {method: grpc.unary_unary_rpc_method_handler(score)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def serve_uvicorn(port: int) -> None:
    import uvicorn

    print("ready", flush=True)
    uvicorn.run(asgi, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    {"flask": serve_flask, "grpc": serve_grpc, "uvicorn": serve_uvicorn}[sys.argv[1]](int(sys.argv[2]))
