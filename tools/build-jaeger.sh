#!/usr/bin/env bash
# Build Jaeger v2 (cmd/jaeger of the module pinned in tools/jaeger.pin), the native stack's
# trace backend, cached OUTSIDE the repo under the pin file's hash, so the build (many minutes
# on 2 cores) happens once per pin. Prints the binary's path on the last line.
#   cache: ${INFERSIGHT_CACHE:-$HOME/.cache/infersight}/jaeger/<sha256(tools/jaeger.pin)[:16]>/jaeger
#   link:  .../jaeger/current -> the binary built for the current pin
# tools/stack/jaeger.py computes the same path (keep the two in step).
set -euo pipefail
cd "$(dirname "$0")/.."

PIN=tools/jaeger.pin
CACHE="${INFERSIGHT_CACHE:-$HOME/.cache/infersight}"
KEY=$(sha256sum "$PIN" | cut -c1-16)
DIR="$CACHE/jaeger/$KEY"
BIN="$DIR/jaeger"
read -r MODULE VERSION < <(grep -v '^#' "$PIN" | grep -m1 .)
[ -n "${VERSION:-}" ] || { echo "build-jaeger: no 'module version' line in $PIN" >&2; exit 1; }

if [ ! -x "$BIN" ]; then
  PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
  command -v go >/dev/null || { echo "build-jaeger: Go is not installed (need go >= 1.24)" >&2; exit 1; }
  mkdir -p "$CACHE/jaeger"
  WORK=$(mktemp -d "$CACHE/jaeger/build.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  echo "build-jaeger: building jaeger $VERSION (key $KEY), this takes many minutes" >&2
  start=$(date +%s)
  # A scratch module that requires the pinned release: its go.mod then chooses every
  # dependency version, as a release build would. Only cmd/jaeger is compiled.
  if ! (
    cd "$WORK" &&
      go mod init infersight.local/jaeger-build &&
      GOFLAGS=-mod=mod go get "$MODULE/cmd/jaeger@$VERSION" &&
      # go get ignores a dependency's replace directives: apply the release's own (one-line
      # form), so the build uses the versions the release does.
      sed -n 's/^replace \([^ ]*\) => \([^ ]*\) \(v[^ ]*\)$/\1=\2@\3/p' \
        "$(go list -m -f '{{.Dir}}' "$MODULE")/go.mod" > replaces.txt &&
      while read -r r; do go mod edit -replace="$r"; done < replaces.txt &&
      GOFLAGS="-trimpath -mod=mod" timeout 3600 \
        go build -ldflags="-s -w" -o jaeger "$MODULE/cmd/jaeger"
  ) > "$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2
    echo "build-jaeger: could not build $MODULE/cmd/jaeger@$VERSION (download refused or build failed; see above)" >&2
    exit 1
  fi
  mkdir -p "$DIR"
  # Copy then rename, so a concurrent reader never sees a half-written binary.
  cp "$WORK/jaeger" "$DIR/.jaeger.tmp"
  mv -f "$DIR/.jaeger.tmp" "$BIN"
  echo "build-jaeger: built in $(($(date +%s) - start)) s, $(du -h "$BIN" | cut -f1)" >&2
fi

ln -sfn "$BIN" "$CACHE/jaeger/current"
echo "$BIN"
