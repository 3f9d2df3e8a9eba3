"""gunicorn.conf.py of the prefork tests: infersight's child_exit, plus the master's own
``service.instance.id`` written where the test can read it (under --preload the master has one)."""

import json
import os

from infersight.multiprocess import child_exit  # noqa: F401


def when_ready(server: object) -> None:
    import infersight
    from infersight.conventions import ATTR

    rt = infersight.get_runtime()  # None unless --preload imported the app here
    instance_id = str(rt.resource.attributes[ATTR.SERVICE_INSTANCE_ID]) if rt is not None else ""
    with open(os.environ["PREFORK_MASTER_FILE"], "w") as f:
        json.dump({"pid": os.getpid(), "instance_id": instance_id}, f)
