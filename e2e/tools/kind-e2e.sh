#!/usr/bin/env bash
# `make kind-e2e`: the chart on a real cluster with a container runtime. Builds the images,
# loads them into a kind cluster, installs the chart, runs `helm test`, applies a Pipeline
# against an in-cluster Pulsar and checks that messages come out the other end, then
# uninstalls and checks that nothing of the operator is left. Needs Docker; skips without it.
#   KIND_CLUSTER (streamvane-e2e)  KEEP_CLUSTER=1 keeps the cluster for debugging.
set -euo pipefail
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "SKIPPED: kind-e2e needs a running Docker engine ('docker info' failed here);" \
       "make test covers the chart against the local kube-apiserver instead."
  exit 0
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
cluster="${KIND_CLUSTER:-streamvane-e2e}"
node_image="kindest/node:v1.32.2"   # the Kubernetes 1.32 image of kind v0.27.0
tag="e2e-$(git rev-parse --short HEAD)"
release=streamvane
system_ns=streamvane-system
data_ns=kind-e2e
kind="$(e2e/tools/tool.sh kind)"
helm="$(e2e/tools/tool.sh helm)"
step() { printf '\n==> %s\n' "$*"; }

step "building images (tag $tag)"
for target in operator worker; do
  docker build -f images/Dockerfile --target "$target" -t "streamvane/$target:$tag" .
done

step "kind cluster $cluster"
"$kind" get clusters | grep -qx "$cluster" \
  || "$kind" create cluster --name "$cluster" --image "$node_image" --wait 180s
export KUBECONFIG="$(mktemp)"
trap 'rm -f "$KUBECONFIG"; [[ "${KEEP_CLUSTER:-}" == 1 ]] || "$kind" delete cluster --name "$cluster"' EXIT
"$kind" get kubeconfig --name "$cluster" > "$KUBECONFIG"
"$kind" load docker-image --name "$cluster" "streamvane/operator:$tag" "streamvane/worker:$tag"

step "Pulsar standalone in namespace $data_ns"
kubectl create namespace "$data_ns" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$data_ns" apply -f e2e/tools/kind/pulsar.yaml
kubectl -n "$data_ns" rollout status deployment/pulsar --timeout=600s

step "helm install (namespaced mode, watching $data_ns)"
"$helm" upgrade --install "$release" charts/streamvane -n "$system_ns" --create-namespace \
  --set watch.mode=namespaced --set "watch.namespaces={$data_ns}" \
  --set image.repository=streamvane/operator --set "image.tag=$tag" --set image.pullPolicy=Never \
  --set workers.image.repository=streamvane/worker --set "workers.image.tag=$tag" \
  --set workers.image.pullPolicy=Never --wait --timeout 5m
"$helm" test "$release" -n "$system_ns" --logs

step "pipeline: 20 items in, 20 items out"
kubectl -n "$data_ns" apply -f e2e/tools/kind/pipeline.yaml
kubectl -n "$data_ns" wait pipeline/kind-e2e --for=condition=Ready --timeout=300s
pulsar() { kubectl -n "$data_ns" exec deploy/pulsar -- "$@"; }
topic=persistent://streamvane/kind-e2e
for i in $(seq 1 20); do
  pulsar bin/pulsar-client produce "$topic/items" -m "{\"id\":\"item-$i\",\"title\":\"kind e2e $i\"}" >/dev/null
done
received="$(pulsar bin/pulsar-client consume "$topic/forwarded" -s kind-e2e-check -p Earliest -n 20 \
  | grep -o '"id":"item-[0-9]*"' | sort -u | wc -l)"
[[ "$received" -eq 20 ]] || { echo "FAILED: $received of 20 items came out" >&2; exit 1; }
echo "20 of 20 items forwarded"

step "helm uninstall leaves no operator objects and keeps the topics"
"$helm" uninstall "$release" -n "$system_ns" --wait
left="$(kubectl get deploy,sa,role,rolebinding,service -A -l "app.kubernetes.io/instance=$release" -o name)"
[[ -z "$left" ]] || { echo "FAILED: left behind: $left" >&2; exit 1; }
pulsar bin/pulsar-admin topics list streamvane/kind-e2e | grep -q "$topic/forwarded" \
  || { echo "FAILED: topics were deleted by the uninstall" >&2; exit 1; }
echo "PASSED: kind-e2e"
