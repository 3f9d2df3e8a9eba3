"""A plain Flask app plus the one import, served by gunicorn in tests."""

import infersight.auto  # noqa: F401  (the one added line)
from flask import Flask

import infersight

app = Flask(__name__)


@app.get("/work")
def work() -> str:
    with infersight.model(model="mp"):
        pass
    return "ok"
