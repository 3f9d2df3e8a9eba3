"""Helpers shared by tests: dashboard queries and synthetic series. The stack launcher (Prometheus,
Alertmanager, the collector, webhooks) is tools/stack, shared with the demo."""
