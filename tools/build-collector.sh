#!/usr/bin/env bash
# Build the infersight OpenTelemetry Collector from collector-config/builder-config.yaml with
# ocb, cached OUTSIDE the repo under the manifest's hash, so a rebuild (minutes on 2 cores)
# happens only when the manifest changes. Prints the binary's path on the last line.
#   cache: ${INFERSIGHT_CACHE:-$HOME/.cache/infersight}/otelcol/<sha256(manifest)[:16]>/otelcol-infersight
#   link:  .../otelcol/current -> the binary built for the current manifest
# tools/stack/collector.py computes the same path (keep the two in step).
set -euo pipefail
cd "$(dirname "$0")/.."

MANIFEST=collector-config/builder-config.yaml
CACHE="${INFERSIGHT_CACHE:-$HOME/.cache/infersight}"
KEY=$(sha256sum "$MANIFEST" | cut -c1-16)
DIR="$CACHE/otelcol/$KEY"
BIN="$DIR/otelcol-infersight"
# The builder's version must match the collector core version the manifest pins.
VERSION=$(sed -n 's/^  version: *\([0-9][0-9.]*\).*/\1/p' "$MANIFEST" | head -n1)
[ -n "$VERSION" ] || { echo "build-collector: no dist.version in $MANIFEST" >&2; exit 1; }

if [ ! -x "$BIN" ]; then
  PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
  command -v go >/dev/null || { echo "build-collector: Go is not installed (need go >= 1.24)" >&2; exit 1; }
  # -mod=mod: let the builder's `go mod tidy` write go.sum; GOPROXY stays the default.
  export GOFLAGS=-mod=mod
  BUILDER="$CACHE/otelcol/builder-v$VERSION/builder"
  if [ ! -x "$BUILDER" ]; then
    echo "build-collector: installing ocb v$VERSION" >&2
    GOBIN="$(dirname "$BUILDER")" go install "go.opentelemetry.io/collector/cmd/builder@v$VERSION"
  fi
  mkdir -p "$CACHE/otelcol"
  WORK=$(mktemp -d "$CACHE/otelcol/build.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  # Same manifest, plus an output_path in the scratch dir (ocb has no flag for it).
  sed "s#^dist:#dist:\n  output_path: $WORK/src#" "$MANIFEST" > "$WORK/manifest.yaml"
  echo "build-collector: building otelcol-infersight v$VERSION (key $KEY), this takes minutes" >&2
  start=$(date +%s)
  if ! "$BUILDER" --config "$WORK/manifest.yaml" > "$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    echo "build-collector: build failed" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  # Copy then rename, so a concurrent reader never sees a half-written binary.
  cp "$WORK/src/otelcol-infersight" "$DIR/.otelcol-infersight.tmp"
  mv -f "$DIR/.otelcol-infersight.tmp" "$BIN"
  echo "build-collector: built in $(($(date +%s) - start)) s, $(du -h "$BIN" | cut -f1)" >&2
fi

ln -sfn "$BIN" "$CACHE/otelcol/current"
echo "$BIN"
