"""A Ray Serve application instrumented by the one line. Ray ships the deployment's class to
its replicas by value (this module is not imported there); the class carries ``infersight.auto``
along, so each replica process runs it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
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


api = FastAPI()


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Items:
    """A FastAPI ingress deployment: observed as a FastAPI app, by route template."""

    @api.get("/items/{item_id}")
    async def item(self, item_id: int) -> dict[str, int]:
        return {"item": item_id}


ingress_app = Items.bind()  # type: ignore[attr-defined]
