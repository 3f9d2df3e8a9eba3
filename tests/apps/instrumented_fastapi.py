"""A FastAPI app with no instrumentation code, for ``opentelemetry-instrument python this.py``:
three requests through httpx's ASGI transport, then a clean exit (spans go to the console)."""

import asyncio

import httpx
from fastapi import FastAPI

import infersight

app = FastAPI()


@app.post("/predict")
async def predict() -> str:
    with infersight.model("m"):
        pass
    return "ok"


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(3):
            assert (await client.post("/predict")).status_code == 200


asyncio.run(main())
