"""The loopback stack for the demo and the tests: Prometheus, Alertmanager, our collector,
Jaeger (the trace backend) and an in-process webhook receiver, each on a free 127.0.0.1 port,
on fast copies of the shipped configs, with bounded readiness waits, and always stopped
(context managers).

A repo tool, not part of the package: it reads the checkout (rule files, configs, the collector
manifest). tools/demo.py imports it, and the tests, which put tools/ on ``sys.path``.
"""

from .alertmanager import alertmanager, alertmanager_config, get_alerts, post_alerts
from .collector import (
    OtlpSink,
    collector_binary,
    ensure_collector,
    loopback_config,
    manifest_modules,
    run_collector,
    running_sink,
)
from .jaeger import Jaeger, ensure_jaeger, jaeger_binary, jaeger_config, run_jaeger
from .paths import ROOT, cache_dir
from .processes import (
    LOOPBACK,
    Service,
    find_binary,
    free_port,
    http_get,
    http_post_json,
    require,
    run_binary,
    run_service,
    run_tool,
    spawn,
    stop,
    wait_answering,
    wait_until,
)
from .prometheus import duration_s, prometheus, prometheus_config, rules_copy
from .webhook import WebhookReceiver, serving, webhook_receiver

__all__ = [
    "LOOPBACK",
    "ROOT",
    "Jaeger",
    "OtlpSink",
    "Service",
    "WebhookReceiver",
    "alertmanager",
    "alertmanager_config",
    "cache_dir",
    "collector_binary",
    "duration_s",
    "ensure_collector",
    "ensure_jaeger",
    "find_binary",
    "free_port",
    "get_alerts",
    "http_get",
    "http_post_json",
    "jaeger_binary",
    "jaeger_config",
    "loopback_config",
    "manifest_modules",
    "post_alerts",
    "prometheus",
    "prometheus_config",
    "require",
    "rules_copy",
    "run_binary",
    "run_collector",
    "run_jaeger",
    "run_service",
    "run_tool",
    "running_sink",
    "serving",
    "spawn",
    "stop",
    "wait_answering",
    "wait_until",
    "webhook_receiver",
]
