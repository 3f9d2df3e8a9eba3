#!/usr/bin/env bash
# A Python env of its own for one serving framework whose stack is too big for the main venv
# (BentoML pulls ~80 packages) or that we keep apart so its pins can't move ours (LitServe).
# Both resolve against constraints.txt, so OpenTelemetry and prometheus_client are the versions
# CI tests everywhere else. infersight goes in from the checkout for its metadata and entry
# points; the tests put the checkout's sdk/ first on PYTHONPATH, so its code is what runs.
# Cached OUTSIDE the repo, keyed by the hash of this script, pyproject.toml and constraints.txt:
#   ${INFERSIGHT_CACHE:-$HOME/.cache/infersight}/frameworks/<name>-<key>/bin/python
# Usage: build-framework-env.sh litserve|bentoml. Prints the env's python on the last line; exits
# non-zero, with the reason on stderr, when the env can't be built (no registry reachable).
set -euo pipefail
cd "$(dirname "$0")/.."

name="${1:?usage: build-framework-env.sh litserve|bentoml}"
case "$name" in
  litserve) PINS=("litserve==0.2.19") ;;
  bentoml) PINS=("bentoml==1.4.40") ;;
  *) echo "build-framework-env: unknown framework $name" >&2; exit 2 ;;
esac
CACHE="${INFERSIGHT_CACHE:-$HOME/.cache/infersight}"
PYTHON="${INFERSIGHT_FRAMEWORK_PYTHON:-python3}"
KEY=$( (cat "$0" pyproject.toml constraints.txt; echo "${PINS[*]}") | sha256sum | cut -c1-16)
ENV="$CACHE/frameworks/$name-$KEY"

mkdir -p "$CACHE/frameworks"
# One build at a time per framework (set-up and a test may both ask for it).
exec 9>"$CACHE/frameworks/.$name.lock"
flock -w 1200 9 || { echo "build-framework-env: another build of $name holds the lock" >&2; exit 1; }
if [ ! -f "$ENV/.done" ]; then
  rm -rf "$ENV"
  echo "build-framework-env: building $ENV with ${PINS[*]}" >&2
  if ! "$PYTHON" -m venv "$ENV" >&2; then
    rm -rf "$ENV"
    echo "build-framework-env: $PYTHON -m venv failed" >&2
    exit 1
  fi
  # Bounded (a registry that hangs must not hold set-up for ever), and tried twice: a transient
  # download error would otherwise skip the framework's tests until the next set-up.
  installed=0
  for _ in 1 2; do
    if timeout 600 "$ENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt \
        "${PINS[@]}" . >&2; then
      installed=1
      break
    fi
  done
  if [ "$installed" != 1 ]; then
    rm -rf "$ENV"
    echo "build-framework-env: pip could not install ${PINS[*]}" >&2
    exit 1
  fi
  "$ENV/bin/pip" freeze --disable-pip-version-check > "$ENV/versions.txt"
  touch "$ENV/.done"
  # Envs of older keys for this framework: keep only this one.
  find "$CACHE/frameworks" -mindepth 1 -maxdepth 1 -type d -name "$name-*" ! -name "$name-$KEY" \
    -exec rm -rf {} + 2>/dev/null || true
fi
echo "$ENV/bin/python"
