"""Start, probe and stop the local stack's servers.

Each component knows how to prepare its files, which daemon(s) it runs, and when it is ready.
``Stack.up`` starts the slow ones (Pulsar, Triton) before waiting on any, so the cold path is
bounded by the slowest component, not their sum.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from models.repository import mirror_repository

from streamvane_stack import fetch
from streamvane_stack.fetch import Report
from streamvane_stack.pki import ApiserverPki, PulsarTokens, ServingCert
from streamvane_stack.process import Daemon
from streamvane_stack.settings import StackSettings

HOST = "127.0.0.1"


class StackError(RuntimeError):
    """A component failed to start; the message names it and shows its log."""


@dataclass(frozen=True)
class Endpoints:
    """Addresses of a running stack, as tests and the demo use them."""

    pulsar_url: str
    pulsar_admin_url: str
    kubeconfig: Path
    triton_grpc: str
    triton_http: str
    triton_metrics_url: str
    model_repository: Path
    cache: Path
    regions: tuple[RegionEndpoints, ...] = ()
    """Member regions (multi-region stack); the hub is ``kubeconfig``."""


@dataclass(frozen=True)
class RegionEndpoints:
    name: str
    kubeconfig: Path
    pulsar_cluster: str
    pulsar_url: str
    pulsar_admin_url: str


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    ready: bool
    address: str
    pid: int | None
    log: Path


class Component:
    name: str
    startup_timeout_s: float = 180.0

    def __init__(self, settings: StackSettings, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or self.name
        self.daemon = Daemon(self.name, settings.run_dir)

    @property
    def address(self) -> str:
        raise NotImplementedError

    def prepare(self, report: Report) -> None:
        """Fetch or build what the component needs (cached)."""

    def start(self) -> None:
        raise NotImplementedError

    def probe(self) -> bool:
        raise NotImplementedError

    def status(self) -> ComponentStatus:
        pid = self.daemon.pid()
        return ComponentStatus(
            self.name, pid is not None, pid is not None and self.probe(), self.address,
            pid, self.daemon.log_file,
        )  # fmt: skip

    def wait_ready(self, report: Report) -> None:
        started = time.monotonic()
        while time.monotonic() - started < self.startup_timeout_s:
            if self.probe():
                report(f"{self.name}: ready at {self.address} in {time.monotonic() - started:.1f}s")
                return
            if self.daemon.pid() is None:
                raise StackError(
                    f"{self.name} exited during start-up; log tail:\n{self.daemon.log_tail()}"
                )
            time.sleep(0.5)
        raise StackError(
            f"{self.name} not ready after {self.startup_timeout_s:.0f}s; log tail:\n{self.daemon.log_tail()}"
        )


def _http_ok(url: str, **kwargs: object) -> bool:
    try:
        return httpx.get(url, timeout=2.0, **kwargs).status_code == 200  # type: ignore[arg-type]
    except httpx.HTTPError:
        return False


class Pulsar(Component):
    name = "pulsar"
    cluster = "standalone"

    def __init__(
        self, settings: StackSettings, name: str | None = None, cluster: str | None = None
    ) -> None:
        super().__init__(settings, name)
        self.cluster = cluster or self.cluster

    @property
    def address(self) -> str:
        return f"pulsar://{HOST}:{self.settings.pulsar_port} (admin http://{HOST}:{self.settings.pulsar_admin_port})"

    def prepare(self, report: Report) -> None:
        self.home = fetch.pulsar_home(self.settings.cache, self.settings.pulsar_version, report)

    def broker_settings(self) -> dict[str, str]:
        """standalone.conf keys this stack sets."""
        s = self.settings
        return {
            "bindAddress": HOST,
            "advertisedAddress": HOST,
            "brokerServicePort": str(s.pulsar_port),
            "webServicePort": str(s.pulsar_admin_port),
            # Geo-replication tells clusters apart by name.
            "clusterName": self.cluster,
            # Topics with no producers or consumers must survive: Retain means retain.
            "brokerDeleteInactiveTopicsEnabled": "false",
            # Workers ack and nack single messages of producer batches; without this the
            # broker redelivers a nacked message's whole batch, acked neighbours included.
            "acknowledgmentAtBatchIndexLevelEnabled": "true",
            # A caught-up cursor re-checks for new entries after this delay (default 10 ms)
            # before it waits to be told: every hop to a caught-up consumer, and the workers'
            # per-batch attempt-journal read-back, paid up to 10 ms for it.
            "managedLedgerNewEntriesCheckDelayInMillis": "0",
        }

    def standalone_args(self, conf_dir: Path) -> list[str]:
        s = self.settings
        worker_conf = _override(
            (self.home / "conf" / "functions_worker.yml").read_text(),
            {
                "workerHostname": HOST,
                "pulsarServiceUrl": f"pulsar://{HOST}:{s.pulsar_port}",
                "pulsarWebServiceUrl": f"http://{HOST}:{s.pulsar_admin_port}",
            },
            separator=": ",
        )
        (conf_dir / "functions_worker.yml").write_text(worker_conf)
        return ["--functions-worker-conf", str(conf_dir / "functions_worker.yml")]

    def start(self) -> None:
        s = self.settings
        conf_dir = s.run_dir / "pulsar-conf"
        conf_dir.mkdir(parents=True, exist_ok=True)
        broker_conf = _override(
            (self.home / "conf" / "standalone.conf").read_text(),
            self.broker_settings(),
            separator="=",
        )
        (conf_dir / "standalone.conf").write_text(broker_conf)
        data = s.run_dir / "pulsar-data"
        self.daemon.start(
            [
                str(self.home / "bin" / "pulsar"), "standalone",
                "--config", str(conf_dir / "standalone.conf"),
                *self.standalone_args(conf_dir),
                "--no-stream-storage",
                "--metadata-dir", str(data / "metadata"),
                "--bookkeeper-dir", str(data / "bookkeeper"),
            ],
            env={
                # The functions worker starts a Python function's instance with the python3
                # on PATH: this environment's, so a function imports what the project uses.
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                "PULSAR_MEM": self.memory,
                "PULSAR_GC": "-XX:+UseG1GC -XX:+PerfDisableSharedMem",
                "PULSAR_LOG_DIR": str(s.log_dir),
                # The embedded bookie is configured in code and binds 0.0.0.0 unless told a
                # listening interface; BookKeeper reads it from system properties on request.
                "PULSAR_EXTRA_OPTS": (
                    "-Dpulsar.allocator.exit_on_oom=true"
                    " -Dio.netty.recycler.maxCapacityPerThread=4096"
                    " -Dorg.apache.bookkeeper.conf.readsystemproperties=true"
                    " -DlisteningInterface=lo"
                ),
            },
            cwd=data.parent,
        )  # fmt: skip

    memory = "-Xms512m -Xmx1g -XX:MaxDirectMemorySize=1g"

    def probe(self) -> bool:
        """Ready once the standalone created ``public/default``, the namespace clients use: it
        answers for its cluster a moment before that, and a subscribe then fails with
        TopicNotFound (namespace not found)."""
        try:
            r = httpx.get(
                f"http://{HOST}:{self.settings.pulsar_admin_port}/admin/v2/namespaces/public",
                timeout=2.0,
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and "public/default" in r.json()


class SecurePulsar(Pulsar):
    """A Pulsar standalone that speaks TLS only (certificate from a local CA) and requires a
    JWT (token auth with authorization; ``tokens.SUPERUSER`` is the superuser role).

    No functions worker: nothing here uses Pulsar Functions, and it halves start-up time. The
    plain ports of ``settings`` stay unbound; the TLS ones are ``tls_port`` and
    ``admin_tls_port``.
    """

    name = "pulsar-secure"
    memory = "-Xms256m -Xmx512m -XX:MaxDirectMemorySize=512m"

    AUTH_REFRESH_CHECK_S = 2
    """How often the broker checks whether a connection's token expired (default 60 s) and
    challenges the client for a fresh one: tests rotate short-lived tokens."""

    def __init__(self, settings: StackSettings, tls_port: int, admin_tls_port: int) -> None:
        super().__init__(settings)
        self.tls_port = tls_port
        self.admin_tls_port = admin_tls_port
        self.tls = ServingCert(settings.run_dir / "pulsar-tls", "pulsar")
        self.tokens = PulsarTokens(settings.run_dir / "pulsar-auth")

    @property
    def service_url(self) -> str:
        return f"pulsar+ssl://{HOST}:{self.tls_port}"

    @property
    def admin_url(self) -> str:
        return f"https://{HOST}:{self.admin_tls_port}"

    @property
    def address(self) -> str:
        return f"{self.service_url} (admin {self.admin_url})"

    def prepare(self, report: Report) -> None:
        super().prepare(report)
        self.tls.ensure()
        self.tokens.ensure()

    def broker_settings(self) -> dict[str, str]:
        tls, tokens = self.tls, self.tokens
        return {
            **super().broker_settings(),
            "brokerServicePort": "",
            "webServicePort": "",
            "brokerServicePortTls": str(self.tls_port),
            "webServicePortTls": str(self.admin_tls_port),
            "tlsCertificateFilePath": str(tls.cert),
            "tlsKeyFilePath": str(tls.key),
            "tlsTrustCertsFilePath": str(tls.ca_cert),
            "authenticationEnabled": "true",
            "authorizationEnabled": "true",
            "authenticationProviders": "org.apache.pulsar.broker.authentication.AuthenticationProviderToken",
            "tokenSecretKey": f"file://{tokens.secret_key}",
            "superUserRoles": tokens.SUPERUSER,
            "authenticationRefreshCheckSeconds": str(self.AUTH_REFRESH_CHECK_S),
            # The broker's own client (system topics, namespace setup) goes through TLS too.
            "brokerClientTlsEnabled": "true",
            "brokerClientTrustCertsFilePath": str(tls.ca_cert),
            "brokerClientAuthenticationPlugin": "org.apache.pulsar.client.impl.auth.AuthenticationToken",
            "brokerClientAuthenticationParameters": f"file://{tokens.broker_token}",
        }

    def standalone_args(self, conf_dir: Path) -> list[str]:
        return ["--no-functions-worker"]

    def probe(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        try:
            r = httpx.get(
                f"{self.admin_url}/admin/v2/clusters",
                timeout=2.0,
                verify=context,
                headers={"Authorization": f"Bearer {self.tokens.broker_token.read_text()}"},
            )
        except httpx.HTTPError:
            return False
        return r.status_code == 200 and "standalone" in r.json()


class Etcd(Component):
    name = "etcd"

    @property
    def address(self) -> str:
        return f"http://{HOST}:{self.settings.etcd_port}"

    def prepare(self, report: Report) -> None:
        self.binary = fetch.etcd_binary()

    def start(self) -> None:
        s = self.settings
        self.daemon.start(
            [
                self.binary, "--name", "streamvane",
                "--data-dir", str(s.run_dir / "etcd-data"),
                "--listen-client-urls", self.address,
                "--advertise-client-urls", self.address,
                "--listen-peer-urls", f"http://{HOST}:{s.etcd_peer_port}",
                "--initial-advertise-peer-urls", f"http://{HOST}:{s.etcd_peer_port}",
                "--initial-cluster", f"streamvane=http://{HOST}:{s.etcd_peer_port}",
                "--unsafe-no-fsync",
            ]
        )  # fmt: skip

    def probe(self) -> bool:
        return _http_ok(f"{self.address}/health")


class KubeApiserver(Component):
    name = "kube-apiserver"

    @property
    def address(self) -> str:
        return f"https://{HOST}:{self.settings.apiserver_port}"

    @property
    def pki(self) -> ApiserverPki:
        return ApiserverPki(self.settings.run_dir / "pki")

    def prepare(self, report: Report) -> None:
        self.binary = fetch.kube_binary(
            self.settings.cache, "kube-apiserver", self.settings.kubernetes_version, report
        )
        self.pki.ensure()
        self.pki.write_kubeconfig(self.settings.kubeconfig, self.address)

    def start(self) -> None:
        s, pki = self.settings, self.pki
        self.daemon.start(
            [
                str(self.binary),
                f"--etcd-servers=http://{HOST}:{s.etcd_port}",
                f"--bind-address={HOST}", f"--advertise-address={HOST}",
                f"--secure-port={s.apiserver_port}",
                f"--tls-cert-file={pki.serving.cert}", f"--tls-private-key-file={pki.serving.key}",
                f"--client-ca-file={pki.serving.ca_cert}",
                f"--token-auth-file={pki.token_file}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki.sa_public}",
                f"--service-account-signing-key-file={pki.sa_private}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                # The "kubernetes" Service cannot point at a loopback address; nothing here needs it.
                "--endpoint-reconciler-type=none",
                # No controller-manager runs here, so nothing creates default service accounts.
                "--disable-admission-plugins=ServiceAccount",
            ]
        )  # fmt: skip

    def probe(self) -> bool:
        if not self.pki.token_file.exists():
            return False
        context = ssl.create_default_context(cafile=str(self.pki.serving.ca_cert))
        return _http_ok(
            f"{self.address}/readyz",
            verify=context,
            headers={"Authorization": f"Bearer {self.pki.admin_token()}"},
        )


class Triton(Component):
    """``tls``: serve gRPC over TLS with that certificate (HTTP, used for probes, stays plain)."""

    name = "triton"

    def __init__(self, settings: StackSettings, tls: ServingCert | None = None) -> None:
        super().__init__(settings)
        self.tls = tls

    @property
    def address(self) -> str:
        s = self.settings
        grpc = "grpc+tls" if self.tls else "grpc"
        return f"{grpc} {HOST}:{s.triton_grpc_port}, http {HOST}:{s.triton_http_port}"

    def prepare(self, report: Report) -> None:
        import pytriton  # the bundled tritonserver ships inside nvidia-pytriton

        self.server_root = Path(pytriton.__file__).parent / "tritonserver"
        built = self.settings.built_model_repository
        if not built.is_dir():
            raise StackError(f"no Triton model repository at {built}: run `make models`")
        self.backends = self._assemble_python_backend()
        mirror_repository(built, self.settings.model_repository)

    def _assemble_python_backend(self) -> Path:
        """The python backend, plus the stub built for this interpreter's version."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        backends = self.settings.run_dir / "triton-backends"
        python = backends / "python"
        python.mkdir(parents=True, exist_ok=True)
        sources = [
            *(self.server_root / "backends" / "python").iterdir(),
            self.server_root / "python_backend_stubs" / version / "triton_python_backend_stub",
        ]
        for source in sources:
            target = python / source.name
            target.unlink(missing_ok=True)
            target.symlink_to(source)
        return backends

    def start(self) -> None:
        s = self.settings
        site_packages = sysconfig.get_paths()["purelib"]
        bundled_libs = Path(site_packages) / "nvidia_pytriton.libs"
        tls_args = []
        if self.tls is not None:
            self.tls.ensure()
            tls_args = [
                "--grpc-use-ssl=true",
                f"--grpc-server-cert={self.tls.cert}",
                f"--grpc-server-key={self.tls.key}",
            ]
        self.daemon.start(
            [
                str(self.server_root / "bin" / "tritonserver"),
                f"--model-repository={s.model_repository}",
                # Explicit model control: new versions are loaded through the repository API
                # (the online trainer's promotions); every model present is loaded at start.
                "--model-control-mode=explicit", "--load-model=*",
                f"--backend-directory={self.backends}",
                f"--http-address={HOST}", f"--http-port={s.triton_http_port}",
                f"--grpc-address={HOST}", f"--grpc-port={s.triton_grpc_port}",
                f"--metrics-address={HOST}", f"--metrics-port={s.triton_metrics_port}",
                "--allow-metrics=true", "--allow-gpu-metrics=false",
                "--log-verbose=0",
                *tls_args,
            ],
            env={
                # The python backend stub embeds libpython of this interpreter; it finds this
                # environment's site-packages (onnxruntime, numpy) through the python on PATH.
                "LD_LIBRARY_PATH": f"{sysconfig.get_config_var('LIBDIR')}:{bundled_libs}",
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            },
        )  # fmt: skip

    def probe(self) -> bool:
        return _http_ok(f"http://{HOST}:{self.settings.triton_http_port}/v2/health/ready")


def _override(text: str, values: dict[str, str], separator: str) -> str:
    """Set ``key<sep>value`` lines in a config file's text, appending keys it lacks."""
    lines = text.splitlines()
    for key, value in values.items():
        prefix = f"{key}{separator.strip()}"
        matches = [i for i, line in enumerate(lines) if line.replace(" ", "").startswith(prefix)]
        if matches:
            for i in matches:
                lines[i] = f"{key}{separator}{value}"
        else:
            lines.append(f"{key}{separator}{value}")
    return "\n".join(lines) + "\n"


class Stack:
    """The whole local stack. Components start in dependency order; stop is the reverse."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings.from_env()
        self.pulsar = Pulsar(self.settings)
        self.etcd = Etcd(self.settings)
        self.apiserver = KubeApiserver(self.settings)
        self.triton = Triton(self.settings)
        self.components: list[Component] = [self.pulsar, self.etcd, self.apiserver, self.triton]
        self.region_pulsar: Pulsar | None = None
        self.region_etcds: list[Etcd] = []
        self.region_apiservers: list[KubeApiserver] = []
        if self.settings.regions or self._regions_running():
            self._add_regions()

    def _regions_running(self) -> int:
        """Regions a multi-region ``up`` started (so that ``down`` and ``status`` without
        STREAMVANE_REGIONS still see them): the number of region dirs with a pid file."""
        running = [d for d in self.settings.run_dir.glob("region-*") if any(d.glob("*.pid"))]
        if running:
            self.settings = dataclasses.replace(self.settings, regions=len(running))
        return len(running)

    def _add_regions(self) -> None:
        """One kube-apiserver (own etcd) per region and a second Pulsar: region 1 uses the
        first Pulsar, the others the second (two Pulsar clusters to replicate between)."""
        s, base = self.settings, self.settings.region_port_base
        second = dataclasses.replace(
            s, run_name=f"{s.run_name}/pulsar-2", pulsar_port=base, pulsar_admin_port=base + 1
        )
        self.region_pulsar = Pulsar(second, "pulsar-2", cluster="standalone-2")
        self.components.insert(1, self.region_pulsar)
        for i in range(1, s.regions + 1):
            region = self.region_settings(i)
            self.region_etcds.append(Etcd(region, f"etcd-region-{i}"))
            self.region_apiservers.append(KubeApiserver(region, f"kube-apiserver-region-{i}"))
        self.components += [*self.region_etcds, *self.region_apiservers]

    def region_settings(self, i: int) -> StackSettings:
        s, port = self.settings, self.settings.region_port_base + 10 * i
        return dataclasses.replace(
            s,
            run_name=f"{s.run_name}/region-{i}",
            etcd_port=port,
            etcd_peer_port=port + 1,
            apiserver_port=port + 2,
        )

    @property
    def endpoints(self) -> Endpoints:
        s = self.settings
        return Endpoints(
            pulsar_url=f"pulsar://{HOST}:{s.pulsar_port}",
            pulsar_admin_url=f"http://{HOST}:{s.pulsar_admin_port}",
            kubeconfig=s.kubeconfig,
            triton_grpc=f"{HOST}:{s.triton_grpc_port}",
            triton_http=f"{HOST}:{s.triton_http_port}",
            triton_metrics_url=f"http://{HOST}:{s.triton_metrics_port}/metrics",
            model_repository=s.model_repository,
            cache=s.cache,
            regions=tuple(self._region_endpoints()),
        )

    def _region_endpoints(self) -> list[RegionEndpoints]:
        regions = []
        for i, apiserver in enumerate(self.region_apiservers, start=1):
            pulsar = self.pulsar if i == 1 or self.region_pulsar is None else self.region_pulsar
            ps = pulsar.settings
            regions.append(
                RegionEndpoints(
                    name=f"region-{i}",
                    kubeconfig=apiserver.settings.kubeconfig,
                    pulsar_cluster=pulsar.cluster,
                    pulsar_url=f"pulsar://{HOST}:{ps.pulsar_port}",
                    pulsar_admin_url=f"http://{HOST}:{ps.pulsar_admin_port}",
                )
            )
        return regions

    def statuses(self) -> list[ComponentStatus]:
        return [c.status() for c in self.components]

    def is_ready(self) -> bool:
        return all(c.daemon.pid() is not None and c.probe() for c in self.components)

    def up(self, report: Report = print) -> Endpoints:
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        for component in self.components:
            component.prepare(report)
        try:
            pulsars = [self.pulsar, *([self.region_pulsar] if self.region_pulsar else [])]
            etcds = [self.etcd, *self.region_etcds]
            apiservers = [self.apiserver, *self.region_apiservers]
            self._start([*pulsars, self.triton, *etcds], report)
            for etcd in etcds:
                etcd.wait_ready(report)
            self._start(apiservers, report)
            for component in (*apiservers, self.triton, *pulsars):
                component.wait_ready(report)
        except BaseException:
            self.down(report)
            raise
        return self.endpoints

    def _start(self, components: list[Component], report: Report) -> None:
        for component in components:
            if component.daemon.pid() is None:
                report(f"{component.name}: starting (log {component.daemon.log_file})")
                component.start()

    def down(self, report: Report = print) -> None:
        for component in reversed(self.components):
            if component.daemon.stop():
                report(f"{component.name}: stopped")

    def restart(self, component: Component, report: Report = print) -> None:
        """Stop and start one component (tests use it to simulate an outage)."""
        component.daemon.stop()
        component.prepare(report)
        component.start()
        component.wait_ready(report)

    def wipe(self) -> None:
        """Remove runtime data (not the cached downloads and builds). The stack must be down."""
        for component in self.components:
            for data in ("pulsar-data", "etcd-data"):
                shutil.rmtree(component.settings.run_dir / data, ignore_errors=True)
