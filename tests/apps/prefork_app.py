"""The Flask app of the prefork tests: each response says which process served it, under which
``service.instance.id`` and in which trace, so the test can match spans to workers."""

from flask import Flask

import infersight
import infersight.auto
from infersight.conventions import ATTR

app = Flask(__name__)


@app.get("/work")
def work() -> dict[str, object]:
    import os

    with infersight.model(model="mp"):
        pass
    rt = infersight.get_runtime()
    handle = infersight.current_request_handle()
    return {
        "pid": os.getpid(),
        "trace_id": f"{handle.trace_id:032x}" if handle is not None else "",
        "instance_id": str(rt.resource.attributes[ATTR.SERVICE_INSTANCE_ID]) if rt is not None else "",
    }
