#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: OS packages, the Python env, the collector.
# The venv lives outside the repo, keyed by the hash of pyproject.toml + constraints.txt,
# because torch (CUDA build from PyPI) is ~3 GB and takes minutes to install.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${INFERSIGHT_CACHE:-$HOME/.cache/infersight}"
VENV="${INFERSIGHT_VENV:-$CACHE/venv}"
mkdir -p "$CACHE"

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v valgrind >/dev/null || need_apt+=(valgrind)  # benchmarks/instructions.py
if ((${#need_apt[@]})); then
  echo "setup: installing OS packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

key=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
stamp="$VENV/.infersight-$key"
if [ ! -f "$stamp" ]; then
  echo "setup: building the Python env in $VENV (key $key)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -c constraints.txt -e ".[dev]"
  rm -f "$VENV"/.infersight-*
  touch "$stamp"
else
  # The editable install points at this checkout; re-point it when the checkout moved.
  "$VENV/bin/python" - <<'PY' || "$VENV/bin/pip" install -q --no-deps -e .
import importlib.util, pathlib, sys
spec = importlib.util.find_spec("infersight")
here = pathlib.Path.cwd().resolve()
sys.exit(0 if spec and spec.origin and pathlib.Path(spec.origin).resolve().is_relative_to(here) else 1)
PY
fi

# transformers 4.4x beside the env's 5.x, for the compatibility test (small: no torch inside).
compat="$CACHE/compat/transformers-4.46"
if [ ! -f "$compat/.done" ]; then
  "$VENV/bin/pip" install -q --no-deps --target "$compat" \
    "transformers==4.46.3" "tokenizers==0.20.3" "huggingface-hub==0.26.5" "safetensors==0.8.0"
  touch "$compat/.done"
fi

# The newest released OTel/prometheus_client beside the pinned ones (tests/test_newest_versions.py).
bash tools/build-newest-env.sh >/dev/null || echo "setup: the newest-versions env was not built; its test will skip"

# Ray Serve in its own env (~500 MB, bounded by INFERSIGHT_RAY_ENV_TIMEOUT), for tests/test_ray_serve.py.
if [ "${INFERSIGHT_SKIP_RAY:-0}" != 1 ]; then
  bash tools/build-ray-env.sh >/dev/null || echo "setup: the Ray env was not built; tests/test_ray_serve.py will skip"
fi
# LitServe and BentoML, each in an env of its own (tests/test_litserve.py, tests/test_bentoml.py).
for framework in litserve bentoml; do
  bash tools/build-framework-env.sh "$framework" >/dev/null || echo "setup: the $framework env was not built; its tests will skip"
done

if [ "${INFERSIGHT_SKIP_COLLECTOR:-0}" != 1 ]; then
  bash tools/build-collector.sh
fi

# kustomize, the Kubernetes schemas and the Prometheus Operator CRDs, for tests/kubernetes/
# (which say why they skip when these cannot be fetched).
if [ "${INFERSIGHT_SKIP_K8S_TOOLS:-0}" != 1 ]; then
  bash tools/install-k8s-tools.sh >/dev/null || echo "setup: Kubernetes tools not installed (see above)"
fi
echo "setup: done (venv: $VENV)"
