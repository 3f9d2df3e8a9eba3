"""Helpers shared by tests: stack processes (Prometheus, Alertmanager, webhooks)."""
