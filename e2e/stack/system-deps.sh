#!/usr/bin/env bash
# Checks the system tools the local stack needs. etcd comes from Debian's etcd-server package and
# is installed here when apt-get is usable; the rest must already be on the machine.
set -euo pipefail
missing=0
need() {  # need TOOL HINT
  command -v "$1" >/dev/null 2>&1 || { echo "missing: $1 — $2" >&2; missing=1; }
}
need java "install a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
need mvn "install Maven (Debian: apt-get install maven); it fetches Pulsar from Maven Central"
need go "install Go >= 1.23 (https://go.dev/dl); it builds kube-apiserver, helm and kubeconform"
need kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)"
if ! command -v etcd >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "etcd: installing Debian's etcd-server"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null; }
    # The package enables a systemd unit; the stack runs its own etcd on loopback instead.
    command -v systemctl >/dev/null 2>&1 && systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
  need etcd "install etcd (Debian: apt-get install etcd-server)"
fi
exit "$missing"
