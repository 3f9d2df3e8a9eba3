"""A plain Flask app plus the one import, served by gunicorn in tests."""

from flask import Flask

import infersight
import infersight.auto

app = Flask(__name__)


@app.get("/work")
def work() -> str:
    with infersight.model(model="mp"):
        pass
    return "ok"
