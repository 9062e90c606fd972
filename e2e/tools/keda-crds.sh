#!/usr/bin/env bash
# Prints the paths of KEDA's ScaledObject and TriggerAuthentication CRDs from the KEDA Go
# module (like prometheus-operator-crds.sh: from the module cache, only the module itself is
# downloaded). What the operator renders for engine: KEDA stages is validated against them.
set -euo pipefail
version="${1:-v2.16.1}"
command -v go >/dev/null || { echo "error: go not found: install Go >= 1.23 (https://go.dev/dl)" >&2; exit 1; }
dir="$(go mod download -json "github.com/kedacore/keda/v2@$version" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "$dir" ]] || { echo "error: go mod download of kedacore/keda/v2@$version failed" >&2; exit 1; }
echo "$dir/config/crd/bases/keda.sh_scaledobjects.yaml"
echo "$dir/config/crd/bases/keda.sh_triggerauthentications.yaml"
