"""A Flask app with no instrumentation code, for ``opentelemetry-instrument python this.py``:
three requests through the test client, then a clean exit (spans go to the console)."""

from flask import Flask

import infersight

app = Flask("plain")


@app.post("/predict")
def predict() -> str:
    with infersight.model("m"):
        pass
    return "ok"


client = app.test_client()
for _ in range(3):
    assert client.post("/predict").status_code == 200
