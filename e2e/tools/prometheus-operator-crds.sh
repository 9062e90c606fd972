#!/usr/bin/env bash
# Prints the paths of the PodMonitor and PrometheusRule CRDs shipped in the prometheus-operator
# Go module (the envtest way of getting third-party CRDs: from the module cache, no download
# of anything but the module itself). The chart's PodMonitor and PrometheusRule are validated
# against them.
set -euo pipefail
version="${1:-v0.80.1}"
command -v go >/dev/null || { echo "error: go not found: install Go >= 1.23 (https://go.dev/dl)" >&2; exit 1; }
dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -n "$dir" ]] || { echo "error: go mod download of prometheus-operator@$version failed" >&2; exit 1; }
for crd in podmonitors prometheusrules; do
  echo "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml"
done
