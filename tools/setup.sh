#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: OS packages, the Python env, the collector, Jaeger.
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

# The test suite's own envs (`make test` sets INFERSIGHT_TEST_ENVS=1; `make demo` needs none of
# them). They mostly download, so they are built in the background while Go compiles below.
test_envs() {
  # The newest released OTel/prometheus_client beside the pinned ones (tests/test_newest_versions.py).
  bash tools/build-newest-env.sh >/dev/null || echo "setup: the newest-versions env was not built; its test will skip"
  # Ray Serve (~500 MB, bounded by INFERSIGHT_RAY_ENV_TIMEOUT), for tests/test_ray_serve.py.
  if [ "${INFERSIGHT_SKIP_RAY:-0}" != 1 ]; then
    bash tools/build-ray-env.sh >/dev/null || echo "setup: the Ray env was not built; tests/test_ray_serve.py will skip"
  fi
  # LitServe and BentoML, each in an env of its own (tests/test_litserve.py, tests/test_bentoml.py).
  for framework in litserve bentoml; do
    bash tools/build-framework-env.sh "$framework" >/dev/null || echo "setup: the $framework env was not built; its tests will skip"
  done
  # PyTriton (a CPU tritonserver inside) for tests/e2e/test_triton_live.py (which skips, saying
  # why, without it). Bounded: the script gives pip 15 min.
  bash tools/build-triton-env.sh >/dev/null || echo "setup: the PyTriton env was not built; the Triton tests will skip"
  # kustomize, the Kubernetes schemas and the Prometheus Operator CRDs, for tests/kubernetes/
  # (which say why they skip when these cannot be fetched).
  if [ "${INFERSIGHT_SKIP_K8S_TOOLS:-0}" != 1 ]; then
    bash tools/install-k8s-tools.sh >/dev/null || echo "setup: Kubernetes tools not installed (see above)"
  fi
}
test_envs_pid=""
if [ "${INFERSIGHT_TEST_ENVS:-0}" = 1 ]; then
  test_envs &
  test_envs_pid=$!
fi

if [ "${INFERSIGHT_SKIP_COLLECTOR:-0}" != 1 ]; then
  bash tools/build-collector.sh
fi

# Jaeger v2, the native stack's trace backend (the demo, tests/e2e, tests/test_traceview.py).
# Built once per pin (many minutes on 2 cores); without it the demo stores no traces and the
# tests that need it say so.
if [ "${INFERSIGHT_SKIP_JAEGER:-0}" != 1 ]; then
  bash tools/build-jaeger.sh >/dev/null || echo "setup: Jaeger not built (see above); the demo stores no traces"
fi

if [ -n "$test_envs_pid" ]; then
  wait "$test_envs_pid" || echo "setup: some test envs were not built (see above); their tests will skip"
fi
echo "setup: done (venv: $VENV)"
