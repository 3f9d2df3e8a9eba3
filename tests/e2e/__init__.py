"""End-to-end tests: the examples, the collector, Prometheus and Alertmanager as real processes."""
