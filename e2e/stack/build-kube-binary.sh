#!/usr/bin/env bash
# Builds a Kubernetes command (kube-apiserver) from the Go module proxy
# into the cache (no git clone, no Docker).
# k8s.io/kubernetes replaces its staging modules with ./staging paths; a wrapper module points
# each one at its published v0.x version instead, which is what makes `go build` work outside
# the kubernetes tree.
set -euo pipefail
usage="usage: build-kube-binary.sh COMMAND vMAJOR.MINOR.PATCH OUTPUT"
binary="${1:?$usage}"
version="${2:?$usage}"
output="${3:?$usage}"
command -v go >/dev/null || { echo "go not found: install Go >= 1.23 (https://go.dev/dl)" >&2; exit 1; }

staging_version="v0.${version#v1.}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "$binary $version: resolving modules (staging at $staging_version)"
curl -fsSL "${GOPROXY_URL:-https://proxy.golang.org}/k8s.io/kubernetes/@v/${version}.mod" -o upstream.mod
{
  echo "module streamvane.local/kube-apiserver-build"
  echo
  echo "go $(awk '/^go /{print $2; exit}' upstream.mod)"
  echo
  echo "require k8s.io/kubernetes $version"
  echo
  echo "replace ("
  awk '/=> \.\/staging\/src\//{print "\t" $1 " => " $1 " '"$staging_version"'"}' upstream.mod
  echo ")"
} > go.mod
printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/%s"\n' "$binary" > tools.go
GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod download

ldflags=(
  "-X k8s.io/component-base/version.gitVersion=${version}"
  "-X k8s.io/component-base/version.gitMajor=1"
  "-X k8s.io/component-base/version.gitMinor=$(echo "$version" | cut -d. -f2)"
  "-X k8s.io/component-base/version.gitTreeState=clean"
  "-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  "-X k8s.io/client-go/pkg/version.gitVersion=${version}"
)
echo "$binary $version: compiling (several minutes on 2 cores, once)"
mkdir -p "$(dirname "$output")"
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags[*]} -s -w" \
  -o "$output.tmp" "k8s.io/kubernetes/cmd/$binary"
mv "$output.tmp" "$output"
echo "$binary $version: built $output"
