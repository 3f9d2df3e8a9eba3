#!/usr/bin/env bash
# A separate Python env with Ray Serve for tests/test_ray_serve.py, which starts a local Ray
# cluster from it in a subprocess. Ray brings ~30 packages of its own (aiohttp, opencensus,
# py-spy, ...): kept out of the main env, as the heavy stacks are.
# Cached OUTSIDE the repo, keyed by the hash of this script, pyproject.toml and constraints.txt
# (infersight's own dependencies are installed at the pins CI tests):
#   ${INFERSIGHT_CACHE:-$HOME/.cache/infersight}/ray/<key>/bin/python
# Prints the env's python on the last line; exits non-zero, with the reason on stderr, when the
# env can't be built (no registry reachable, no python3 -m venv, over the time limit).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${INFERSIGHT_CACHE:-$HOME/.cache/infersight}"
PYTHON="${INFERSIGHT_RAY_PYTHON:-python3}"
LIMIT_S="${INFERSIGHT_RAY_ENV_TIMEOUT:-900}"
RAY_PIN="ray[serve]==2.60.0"
KEY=$( (cat "$0" pyproject.toml constraints.txt) | sha256sum | cut -c1-16)
ENV="$CACHE/ray/$KEY"

if [ ! -f "$ENV/.done" ]; then
  mkdir -p "$CACHE/ray"
  rm -rf "$ENV"
  echo "build-ray-env: building $ENV with $RAY_PIN" >&2
  "$PYTHON" -m venv "$ENV" >&2
  # infersight (not editable: the test puts the checkout's sdk/ first on PYTHONPATH) and its
  # dependencies at CI's pins; Ray's own extra packages are not in constraints.txt.
  if ! timeout "$LIMIT_S" "$ENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt \
      "$RAY_PIN" requests . >&2; then
    rm -rf "$ENV"
    echo "build-ray-env: pip could not install $RAY_PIN (registry unreachable or over ${LIMIT_S}s)" >&2
    exit 1
  fi
  "$ENV/bin/pip" freeze --disable-pip-version-check > "$ENV/versions.txt"
  touch "$ENV/.done"
  # Envs of older pins: keep only this one.
  find "$CACHE/ray" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" -exec rm -rf {} + 2>/dev/null || true
fi
echo "$ENV/bin/python"
