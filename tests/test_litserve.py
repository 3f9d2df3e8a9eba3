"""LitServe, started for real (its own env, tools/build-framework-env.sh): the API server's request
span is the parent of the preprocess, model and postprocess spans its inference worker (another
process) records; every request is counted once, every stage once, and batches give the queue
wait and batch size."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from tests.support.frameworks import ROOT, framework_python, free_port, samples, server, total, wait_for

APP = """
import os

import infersight.auto  # noqa: F401  (the only line for infersight)
import litserve as ls


class Double(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return request["x"]

    def predict(self, xs):
        return [2 * x for x in xs]

    def encode_response(self, y):
        return {"y": y}


if __name__ == "__main__":
    api = Double(max_batch_size=4, batch_timeout=0.5)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(os.environ["PORT"]), generate_client_file=False)
"""

# The async loop, and infersight started only in the main process: the spawned worker doesn't
# run the import again, infersight starts there as the worker receives its request queue.
ASYNC_APP = """
import os

import litserve as ls


class Double(ls.LitAPI):
    def setup(self, device):
        pass

    async def decode_request(self, request):
        return request["x"]

    async def predict(self, x):
        return 2 * x

    async def encode_response(self, y):
        return {"y": y}


if __name__ == "__main__":
    import infersight.auto  # noqa: F401

    server = ls.LitServer(Double(enable_async=True), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=int(os.environ["PORT"]), generate_client_file=False)
"""

N = 12
STAGES = ("preprocess", "model", "postprocess")


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "async-auto-in-main"])
def test_litserve_stages_join_the_request_trace_across_processes(tmp_path: Path, sink, batched: bool) -> None:  # type: ignore[no-untyped-def]
    python = framework_python("litserve")
    (tmp_path / "app.py").write_text(APP if batched else ASYNC_APP)
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        **sink.env(),
        "PORT": str(port),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), str(tmp_path)]),
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
        "INFERSIGHT_METRICS_PORT": "0",
        "INFERSIGHT_GPU": "off",
        "INFERSIGHT_FLUSH_INTERVAL": "0.1",
        "INFERSIGHT_MODELS": '{"doubler": {"endpoints": ["/predict"]}}',
        "OTEL_SERVICE_NAME": "litserve-test",
    }
    url = f"http://127.0.0.1:{port}"
    with server([python, "app.py"], tmp_path, env):
        assert wait_for(lambda: requests.get(f"{url}/health", timeout=2).status_code == 200, 60), "no LitServe"
        trace_ids = [f"{i + 1:032x}" for i in range(N)]

        def call(i: int) -> int:
            headers = {"traceparent": f"00-{trace_ids[i]}-{i + 1:016x}-01"}
            answer = requests.post(f"{url}/predict", json={"x": i}, headers=headers, timeout=30)
            assert answer.json() == {"y": 2 * i}, answer.text
            return answer.status_code

        with ThreadPoolExecutor(N) as pool:  # at once: the worker batches them
            assert list(pool.map(call, range(N))) == [200] * N

        def traced() -> bool:
            traces = sink.traces()
            return all(len(traces.get(t, ())) >= 1 + len(STAGES) for t in trace_ids)

        assert wait_for(traced, 20), {t: len(v) for t, v in sink.traces().items()}
        batch_sizes = []
        for i, trace_id in enumerate(trace_ids):
            spans = {span.name: span for _, span in sink.traces()[trace_id]}
            request = spans["POST /predict"]
            assert request.parent_span_id.hex() == f"{i + 1:016x}"  # the client's traceparent
            for stage in STAGES:
                assert spans[stage].parent_span_id == request.span_id, stage  # across the process hop
            attrs = {a.key: a.value for a in spans["preprocess"].attributes}
            assert attrs["infersight.queue.wait_s"].double_value >= 0
            model_attrs = {a.key: a.value for a in spans["model"].attributes}
            if batched:
                batch_sizes.append(model_attrs["infersight.batch.size"].int_value)
            else:
                assert "infersight.batch.size" not in model_attrs
        if batched:
            assert max(batch_sizes) > 1, batch_sizes  # 12 requests at once, up to 4 per batch

        def counted() -> bool:
            found = samples(f"{url}/metrics")
            return total(found, "infersight_request_duration_seconds_count", endpoint="/predict") == N and all(
                total(found, "infersight_stage_duration_seconds_count", stage=s, model="doubler") == N for s in STAGES
            )

        assert wait_for(counted, 10), [
            (s.name, s.labels, s.value) for s in samples(f"{url}/metrics") if s.name.endswith("_count")
        ]
        found = samples(f"{url}/metrics")
        assert total(found, "infersight_request_duration_seconds_count", model="doubler") == N  # once each
        assert total(found, "infersight_queue_wait_seconds_count", model="doubler") == N
        if batched:
            assert total(found, "infersight_batch_size_sum", model="doubler") == N  # each request in one batch
            assert total(found, "infersight_batch_size_count", model="doubler") < N  # fewer batches than requests
        else:
            assert total(found, "infersight_batch_size_count", model="doubler") == 0
