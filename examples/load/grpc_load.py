"""Load for the gRPC example (examples/grpc_server): KServe v2 ModelInfer calls for a bounded time.

    python examples/load/grpc_load.py --target 127.0.0.1:8001 --rps 20 --duration 30
    python examples/load/grpc_load.py --target ... --rps 0 --concurrency 8   # closed loop, flat out
    python examples/load/grpc_load.py --target ... --mode shift               # unseen words, long
    python examples/load/grpc_load.py --target ... --mode large --large-kb 64 # big payloads

``--rps N``: ``--concurrency`` workers each send one call at a time, paced so that together they
aim at N/s (a slow server gets fewer calls, never a pile-up). ``--rps 0``: each worker sends its
next call as soon as the last one returned. Texts come from http_load.make_text, so the input
modes match the HTTP load. Prints count, errors by status and P50/P95/P99 at the end; when the
server sends a ``server-timing`` trailer (an infersight-instrumented server does), its own
P50/P95/P99 beside the client's: the difference is the network and anything in front of the
server's handler.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [p for p in (str(HERE), str(HERE.parent / "grpc_server")) if p not in sys.path]

import grpc  # noqa: E402
from http_load import MODES, LoadResult, make_text, server_total_s  # noqa: E402

__all__ = ["build_request", "run"]


def _traceparent(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64) or 1:016x}-01"


def build_request(texts: list[str], model: str, raw: bool = False) -> Any:
    """A ModelInferRequest with a BYTES input ``text`` of shape [len(texts)]."""
    import grpc_predict_v2_pb2 as pb

    items = [t.encode() for t in texts]
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(items)])
    if raw:  # what Triton / KServe client libraries send
        request.raw_input_contents.append(b"".join(len(i).to_bytes(4, "little") + i for i in items))
    else:
        tensor.contents.bytes_contents.extend(items)
    return request


def run(
    target: str,
    *,
    duration_s: float,
    rps: float = 10.0,
    concurrency: int = 4,
    mode: str | Callable[[], str] = "normal",
    large_kb: int = 32,
    batch: int = 1,
    model: str = "tiny-sentiment",
    raw: bool = False,
    traceparent: bool = False,
    timeout_s: float = 10.0,
    stop: threading.Event | None = None,
    seed: int = 0,
) -> LoadResult:
    """Call ModelInfer on ``target`` (host:port) for ``duration_s`` (or until ``stop`` is set).

    ``rps`` 0 means closed loop without pacing. ``mode`` is a name from http_load.MODES or a
    function returning the mode to use now. ``traceparent`` sends a fresh sampled W3C trace
    context with each call, as an instrumented client would."""
    import grpc_predict_v2_pb2_grpc as pb_grpc

    if duration_s <= 0 or rps < 0 or concurrency < 1 or batch < 1:
        raise ValueError("duration_s must be positive, rps non-negative, concurrency and batch at least 1")
    stop = stop or threading.Event()
    result = LoadResult()
    interval = concurrency / rps if rps > 0 else 0.0  # each worker's share of the target rate
    start = time.monotonic()
    end = start + duration_s
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.GRPCInferenceServiceStub(channel)

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        next_at = start + index * interval / concurrency  # spread the workers' phases
        while not stop.is_set():
            now = time.monotonic()
            if now >= end:
                break
            if interval:
                if next_at > now:
                    stop.wait(min(next_at - now, end - now))
                    continue
                next_at = max(next_at + interval, now - interval)  # catch up, but no burst
            current = mode() if callable(mode) else mode
            request = build_request([make_text(current, rng, large_kb) for _ in range(batch)], model, raw)
            metadata = (("traceparent", _traceparent(rng)),) if traceparent else None
            t0 = time.perf_counter()
            try:
                _, call = stub.ModelInfer.with_call(request, timeout=timeout_s, metadata=metadata)
                elapsed = time.perf_counter() - t0
                trailer = dict(call.trailing_metadata() or ()).get("server-timing")
                result.add(elapsed, "OK", True, server_total_s(trailer if isinstance(trailer, str) else None))
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                result.add(time.perf_counter() - t0, code.name if code else type(exc).__name__, False)

    threads = [
        threading.Thread(target=worker, args=(i,), daemon=True, name=f"grpc-load-{i}") for i in range(concurrency)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, end - time.monotonic()) + timeout_s + 1)
    finally:
        stop.set()
        channel.close()
    result.elapsed_s = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:8001", help="host:port of the gRPC server")
    parser.add_argument("--model", default="tiny-sentiment", help="model_name in each request")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--rps", type=float, default=20.0, help="target calls per second (0: closed loop)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--mode", choices=MODES, default="normal")
    parser.add_argument("--large-kb", type=int, default=32, help="text size in --mode large")
    parser.add_argument("--batch", type=int, default=1, help="texts per call (tensor shape [N])")
    parser.add_argument("--raw", action="store_true", help="send raw_input_contents, as Triton clients do")
    parser.add_argument("--traceparent", action="store_true", help="start a trace per call on the client")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-call deadline, seconds")
    args = parser.parse_args(argv)
    result = run(
        args.target,
        duration_s=args.duration,
        rps=args.rps,
        concurrency=args.concurrency,
        mode=args.mode,
        large_kb=args.large_kb,
        batch=args.batch,
        model=args.model,
        raw=args.raw,
        traceparent=args.traceparent,
        timeout_s=args.timeout,
    )
    print(result.summary())
    return 0 if result.requests and result.errors < result.requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
