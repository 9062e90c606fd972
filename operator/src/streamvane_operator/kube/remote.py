"""Clients for member clusters, built from kubeconfigs the hub keeps in Secrets."""

from __future__ import annotations

import hashlib
import threading

import yaml
from kubernetes import config as kube_config
from kubernetes.config.config_exception import ConfigException

from streamvane_operator.kube.client import Kube, KubeClient
from streamvane_operator.kube.errors import KubeRejected

INVALID_KUBECONFIG = 422


class MemberClients:
    """One ``KubeClient`` per kubeconfig (by content), shared by the hub's handler threads."""

    def __init__(self, field_manager: str) -> None:
        self._field_manager = field_manager
        self._clients: dict[str, Kube] = {}
        self._lock = threading.Lock()

    def __call__(self, kubeconfig: str) -> Kube:
        key = hashlib.sha256(kubeconfig.encode()).hexdigest()
        with self._lock:
            if key not in self._clients:
                try:
                    config = yaml.safe_load(kubeconfig)
                    client = kube_config.new_client_from_config_dict(config)
                except (yaml.YAMLError, ConfigException, TypeError, AttributeError) as e:
                    raise KubeRejected(f"invalid kubeconfig: {e}", INVALID_KUBECONFIG) from e
                # A member that does not answer must not stall the hub's reconciles.
                client.configuration.retries = 1
                self._clients[key] = KubeClient(client, self._field_manager)
            return self._clients[key]
