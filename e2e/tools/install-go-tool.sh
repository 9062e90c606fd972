#!/usr/bin/env bash
# Builds a Go command-line tool from the Go module proxy into the cache, once per version:
#   $STREAMVANE_CACHE/tools/NAME/VERSION/NAME
# Progress goes to stderr; the binary's path is the only line on stdout, so callers can do
#   helm="$(e2e/tools/install-go-tool.sh helm helm.sh/helm/v3/cmd/helm v3.17.4)"
# LDFLAGS (optional) sets what a project's release build would stamp in (versions).
set -euo pipefail
usage="usage: install-go-tool.sh NAME MODULE_PACKAGE VERSION [LDFLAGS]"
name="${1:?$usage}"
package="${2:?$usage}"
version="${3:?$usage}"
ldflags="${4:-}"

cache="${STREAMVANE_CACHE:-$HOME/.cache/streamvane}"
bindir="$cache/tools/$name/$version"
binary="$bindir/$name"

if [[ -x "$binary" ]]; then
  echo "$name $version: cached at $binary" >&2
  echo "$binary"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "error: $name $version is built from source with Go, and 'go' is not on PATH." >&2
  echo "       Install Go >= 1.23 (https://go.dev/dl) or put a $name binary at $binary." >&2
  exit 1
fi

# One build at a time per tool version: stacks and test runs side by side wait for it.
mkdir -p "$bindir"
exec 9>"$bindir/.lock"
if ! flock -n 9; then
  echo "$name $version: another build is running; waiting for it" >&2
  flock 9
fi
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

# Build into a staging dir and rename, so an interrupted build never leaves a half-written tool.
staging="$(mktemp -d "$bindir/.build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
echo "$name $version: go install $package@$version ($(go env GOVERSION); once, may take minutes)" >&2
GOBIN="$staging" GOFLAGS=-trimpath CGO_ENABLED=0 go install -ldflags "-s -w $ldflags" "$package@$version" >&2
mv "$staging/$name" "$binary"
echo "$name $version: built $binary" >&2
echo "$binary"
