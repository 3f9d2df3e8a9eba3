"""A Ray Serve application instrumented by the one line: Ray imports this module in every
replica to build the deployment, so each replica process runs ``infersight.auto``."""

from __future__ import annotations

from typing import Any

from ray import serve
from starlette.requests import Request

import infersight
import infersight.auto


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0})
class Classifier:
    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        with infersight.model():
            label = "positive" if "good" in body["text"] else "negative"
        return {"label": label}


app = Classifier.bind()  # type: ignore[attr-defined]
