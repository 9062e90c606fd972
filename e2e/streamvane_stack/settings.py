"""Versions, ports and directories of the local stack; environment variables override them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class StackSettings:
    cache: Path
    pulsar_version: str
    kubernetes_version: str
    pulsar_port: int
    pulsar_admin_port: int
    etcd_port: int
    etcd_peer_port: int
    apiserver_port: int
    triton_http_port: int
    triton_grpc_port: int
    triton_metrics_port: int
    run_name: str = "run"
    """Directory under the cache for this stack's runtime state: stacks side by side share the
    cache's downloads and builds but need their own run name (and ports)."""
    regions: int = 0
    """Member regions besides the hub (``STREAMVANE_REGIONS``): each one more kube-apiserver
    with its own etcd; with any, a second Pulsar standalone (another cluster name) too."""
    region_port_base: int = 7100
    """Ports of the multi-region parts: the second Pulsar at base, base+1; region i at
    base+10*i (etcd), +1 (etcd peer), +2 (kube-apiserver)."""

    @property
    def run_dir(self) -> Path:
        """Runtime state: pid files, logs, data, certificates, kubeconfig."""
        return self.cache / self.run_name

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.run_dir / "kubeconfig"

    @property
    def built_model_repository(self) -> Path:
        """What ``make models`` built, shared by every stack on this cache (read-only here)."""
        return self.cache / "models" / "triton-cpu"

    @property
    def model_repository(self) -> Path:
        """This stack's own repository, laid out from the built one at start: the online
        trainer writes new model versions into it, so stacks side by side never share them."""
        return self.run_dir / "triton-models"

    @classmethod
    def from_env(cls) -> StackSettings:
        cache = Path(os.environ.get("STREAMVANE_CACHE", Path.home() / ".cache" / "streamvane"))
        return cls(
            cache=cache.expanduser().resolve(),
            pulsar_version=os.environ.get("STREAMVANE_PULSAR_VERSION", "4.0.8"),
            kubernetes_version=os.environ.get("STREAMVANE_KUBERNETES_VERSION", "v1.32.13"),
            pulsar_port=_port("STREAMVANE_PULSAR_PORT", 6650),
            pulsar_admin_port=_port("STREAMVANE_PULSAR_ADMIN_PORT", 8080),
            etcd_port=_port("STREAMVANE_ETCD_PORT", 2379),
            etcd_peer_port=_port("STREAMVANE_ETCD_PEER_PORT", 2380),
            apiserver_port=_port("STREAMVANE_APISERVER_PORT", 6443),
            triton_http_port=_port("STREAMVANE_TRITON_HTTP_PORT", 8000),
            triton_grpc_port=_port("STREAMVANE_TRITON_GRPC_PORT", 8001),
            triton_metrics_port=_port("STREAMVANE_TRITON_METRICS_PORT", 8002),
            run_name=os.environ.get("STREAMVANE_RUN_NAME", "run"),
            regions=_port("STREAMVANE_REGIONS", 0),
            region_port_base=_port("STREAMVANE_REGION_PORT_BASE", 7100),
        )
