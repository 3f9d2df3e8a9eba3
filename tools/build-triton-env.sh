#!/usr/bin/env bash
# A Python env with PyTriton, whose wheel bundles a CPU-capable `tritonserver` binary, for the
# Triton tests (tests/e2e/test_triton_live.py) and docs/triton.md. Its own env because its pins
# (numpy<2) clash with the main venv's. It must be a venv of the Debian system Python 3.11: the
# Python backend's stub needs that interpreter's shared libpython and standard library.
# Cached OUTSIDE the repo, keyed by the hash of this script and pyproject.toml:
#   ${INFERSIGHT_CACHE:-$HOME/.cache/infersight}/triton/<key>/bin/python
# Prints the env's python on the last line; exits non-zero, with the reason on stderr, when the
# env can't be built (no /usr/bin/python3.11, no venv module, no registry reachable, too slow).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${INFERSIGHT_CACHE:-$HOME/.cache/infersight}"
PYTHON="${INFERSIGHT_TRITON_PYTHON:-/usr/bin/python3.11}"
BUDGET_S="${INFERSIGHT_TRITON_BUILD_TIMEOUT:-900}"
PACKAGES=("nvidia-pytriton==0.7.0" "tritonclient[http,grpc]")
KEY=$( (cat "$0" pyproject.toml) | sha256sum | cut -c1-16)
ENV="$CACHE/triton/$KEY"

if [ ! -f "$ENV/.done" ]; then
  if [ ! -x "$PYTHON" ]; then
    echo "build-triton-env: $PYTHON not found (apt-get install python3.11 python3.11-venv)" >&2
    exit 1
  fi
  if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive timeout 300 $SUDO apt-get install -y -q python3.11-venv >&2 || {
      echo "build-triton-env: python3.11-venv could not be installed" >&2; exit 1; }
  fi
  mkdir -p "$CACHE/triton"
  rm -rf "$ENV"
  echo "build-triton-env: building $ENV with ${PACKAGES[*]} and infersight" >&2
  "$PYTHON" -m venv "$ENV" >&2
  # infersight with its dependencies (the PyTriton test imports it there), beside PyTriton's pins.
  if ! timeout "$BUDGET_S" "$ENV/bin/pip" install -q --disable-pip-version-check "${PACKAGES[@]}" . >&2; then
    rm -rf "$ENV"
    echo "build-triton-env: pip could not install ${PACKAGES[*]} within ${BUDGET_S}s" >&2
    exit 1
  fi
  server=$(ls "$ENV"/lib/python3.11/site-packages/pytriton/tritonserver/bin/tritonserver 2>/dev/null || true)
  if [ -z "$server" ]; then
    rm -rf "$ENV"
    echo "build-triton-env: the PyTriton wheel has no tritonserver binary" >&2
    exit 1
  fi
  "$ENV/bin/pip" freeze --disable-pip-version-check > "$ENV/versions.txt"
  touch "$ENV/.done"
  # Older keys' envs: keep only this one.
  find "$CACHE/triton" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" -exec rm -rf {} + 2>/dev/null || true
fi
echo "$ENV/bin/python"
