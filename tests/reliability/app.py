"""A plain Flask server with the one import, for fault tests (run as a subprocess)."""

import infersight.auto  # noqa: I001

import sys

from flask import Flask
from werkzeug.serving import make_server

import infersight

app = Flask(__name__)


@app.get("/work")
def work() -> str:
    with infersight.preprocess(model="m"):
        pass
    with infersight.model():
        pass
    with infersight.postprocess():
        return "ok"


@app.get("/unavailable")
def unavailable() -> tuple[str, int]:
    """A 503: its trace is an error trace, which the collector's tail sampling always keeps."""
    with infersight.preprocess(model="m"):
        pass
    with infersight.model():
        pass
    with infersight.postprocess():
        return "busy", 503


if __name__ == "__main__":
    server = make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # atexit runs infersight.shutdown()
    print("ready", flush=True)
    server.serve_forever()
