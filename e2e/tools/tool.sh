#!/usr/bin/env bash
# The project's pinned Go tools; prints the path of NAME, building it into the cache once.
#   e2e/tools/tool.sh helm          ->  $STREAMVANE_CACHE/tools/helm/v3.17.4/helm
# helm 3.17 is built against the Kubernetes 1.32 client libraries, like the local API server.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:?usage: tool.sh helm|kubeconform|kind}" in
  helm)
    # Helm's own release build stamps its version and the Kubernetes version it assumes offline.
    stamp="helm.sh/helm/v3"
    exec "$here/install-go-tool.sh" helm "$stamp/cmd/helm" v3.17.4 \
      "-X $stamp/internal/version.version=v3.17.4 -X $stamp/internal/version.gitTreeState=clean \
       -X $stamp/pkg/lint/rules.k8sVersionMajor=1 -X $stamp/pkg/lint/rules.k8sVersionMinor=32 \
       -X $stamp/pkg/chartutil.k8sVersionMajor=1 -X $stamp/pkg/chartutil.k8sVersionMinor=32" ;;
  kubeconform) exec "$here/install-go-tool.sh" kubeconform github.com/yannh/kubeconform/cmd/kubeconform v0.7.0 ;;
  kind)        exec "$here/install-go-tool.sh" kind sigs.k8s.io/kind v0.27.0 ;;
  *) echo "unknown tool: $1 (known: helm, kubeconform, kind)" >&2; exit 2 ;;
esac
