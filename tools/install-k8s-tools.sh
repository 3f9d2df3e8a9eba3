#!/usr/bin/env bash
# Fetch what checks deploy/kubernetes/ offline, into the cache OUTSIDE the repo, keyed by version
# (nothing third-party is committed). Idempotent; prints `name=path` lines for tests/scripts.
#   kustomize               Go module sigs.k8s.io/kustomize/kustomize/v5 (go install)
#   kubernetes-validate     PyPI package with the Kubernetes JSON schemas it validates against
#   prometheus-operator CRDs  from the Go module zip (example/prometheus-operator-crd/)
# Bump a version here and the tests pick up the new cache path (tests/kubernetes/tools.py
# reads the same variables from this file).
set -euo pipefail
cd "$(dirname "$0")/.."

KUSTOMIZE_VERSION=v5.8.2  # v5.8.3 needs Go 1.27
KUBERNETES_VALIDATE_VERSION=1.37.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0

CACHE="${INFERSIGHT_CACHE:-$HOME/.cache/infersight}"
VENV="${INFERSIGHT_VENV:-$CACHE/venv}"
TOOLS="$CACHE/tools"
PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"

kustomize_dir="$TOOLS/kustomize-$KUSTOMIZE_VERSION"
if [ ! -x "$kustomize_dir/kustomize" ]; then
  command -v go >/dev/null || { echo "install-k8s-tools: Go is not installed" >&2; exit 1; }
  echo "install-k8s-tools: building kustomize $KUSTOMIZE_VERSION (a minute or two)" >&2
  GOBIN="$kustomize_dir" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi

validate_dir="$TOOLS/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
if [ ! -f "$validate_dir/.done" ]; then
  echo "install-k8s-tools: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION" >&2
  rm -rf "$validate_dir"
  # Its own --target dir, used only through PYTHONPATH by tools/validate_k8s.py, so its
  # jsonschema/referencing never touch the project venv.
  "$VENV/bin/python" -m pip install -q --target "$validate_dir" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  touch "$validate_dir/.done"
fi

crd_dir="$TOOLS/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
if [ ! -f "$crd_dir/.done" ]; then
  command -v go >/dev/null || { echo "install-k8s-tools: Go is not installed" >&2; exit 1; }
  echo "install-k8s-tools: fetching Prometheus Operator CRDs $PROMETHEUS_OPERATOR_VERSION" >&2
  mod_dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
    | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$mod_dir/example/prometheus-operator-crd" ] || {
    echo "install-k8s-tools: no example/prometheus-operator-crd in $mod_dir" >&2; exit 1; }
  mkdir -p "$crd_dir"
  cp "$mod_dir"/example/prometheus-operator-crd/*.yaml "$crd_dir/"
  chmod u+w "$crd_dir"/*.yaml
  touch "$crd_dir/.done"
fi

echo "kustomize=$kustomize_dir/kustomize"
echo "kubernetes_validate=$validate_dir"
echo "prometheus_operator_crds=$crd_dir"
