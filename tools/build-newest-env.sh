#!/usr/bin/env bash
# A second, small Python env with the NEWEST released OpenTelemetry SDK, instrumentations and
# prometheus_client (no torch, no extras beyond Flask, FastAPI and gRPC), so tests/test_newest_versions.py
# can run the compat and coexistence tests against what users will install next.
# Cached OUTSIDE the repo, keyed by the hash of this script, pyproject.toml and the ISO week:
# a new week (or a new pin) builds a fresh env with whatever is newest then.
#   ${INFERSIGHT_CACHE:-$HOME/.cache/infersight}/newest/<key>/bin/python
# Prints the env's python on the last line; exits non-zero, with the reason on stderr, when the
# env can't be built (no registry reachable, no python3 -m venv).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${INFERSIGHT_CACHE:-$HOME/.cache/infersight}"
PYTHON="${INFERSIGHT_NEWEST_PYTHON:-python3}"
PACKAGES=(
  opentelemetry-api opentelemetry-sdk
  opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http
  # The instrumentations are only released as betas (0.xxbN): a beta lower bound lets pip take one.
  "opentelemetry-instrumentation>=0.61b0" "opentelemetry-instrumentation-flask>=0.61b0"
  "opentelemetry-instrumentation-grpc>=0.61b0"
  "opentelemetry-instrumentation-asgi>=0.61b0" "opentelemetry-instrumentation-fastapi>=0.61b0"
  prometheus-client wrapt flask grpcio protobuf fastapi starlette uvicorn httpx
  pytest pytest-timeout pyyaml requests
)
KEY=$( (cat "$0" pyproject.toml; date -u +%G-%V) | sha256sum | cut -c1-16)
ENV="$CACHE/newest/$KEY"

if [ ! -f "$ENV/.done" ]; then
  mkdir -p "$CACHE/newest"
  rm -rf "$ENV"
  echo "build-newest-env: building $ENV with the newest ${PACKAGES[*]}" >&2
  "$PYTHON" -m venv "$ENV" >&2
  if ! "$ENV/bin/pip" install -q --disable-pip-version-check --upgrade "${PACKAGES[@]}" >&2; then
    rm -rf "$ENV"
    echo "build-newest-env: pip could not install the newest versions" >&2
    exit 1
  fi
  # infersight itself, for its entry points (opentelemetry-instrument finds its instrumentor
  # there); the tests put the checkout's sdk/ first on PYTHONPATH, so its code is what runs.
  if ! "$ENV/bin/pip" install -q --disable-pip-version-check --no-deps . >&2; then
    rm -rf "$ENV"
    echo "build-newest-env: pip could not install infersight's metadata" >&2
    exit 1
  fi
  "$ENV/bin/pip" freeze --disable-pip-version-check > "$ENV/versions.txt"
  touch "$ENV/.done"
  # Older weeks' envs: keep only this one.
  find "$CACHE/newest" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" -exec rm -rf {} + 2>/dev/null || true
fi
echo "$ENV/bin/python"
