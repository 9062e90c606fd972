"""Local certificates (apiserver, TLS Triton and Pulsar), the apiserver's service-account keys,
token file and kubeconfig, and the JWT signing key of a token-auth Pulsar."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ADMIN_USER = "streamvane-admin"


@dataclass(frozen=True)
class ServingCert:
    """A local CA and one server certificate it signed (for 127.0.0.1), as PEM files."""

    directory: Path
    name: str

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.name}.crt"

    @property
    def key(self) -> Path:
        return self.directory / f"{self.name}.key"

    def ensure(self, dns_names: Sequence[str] = ("localhost",)) -> None:
        """Create the files once; later starts reuse them so clients keep trusting the CA."""
        if self.key.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key = _rsa_key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"streamvane-{self.name}-ca")])
        ca = (
            _builder(ca_name, ca_name, ca_key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        serving_key = _rsa_key()
        sans = x509.SubjectAlternativeName(
            [
                *(x509.DNSName(name) for name in dns_names),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]
        )
        serving = (
            _builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)]),
                ca_name,
                serving_key,
            )
            .add_extension(sans, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(serving.public_bytes(serialization.Encoding.PEM))
        _write_key(self.key, serving_key)


@dataclass(frozen=True)
class PulsarTokens:
    """The HS256 secret key a token-auth Pulsar verifies JWTs with, and tokens signed by it."""

    directory: Path

    SUPERUSER = "streamvane-admin"
    """The role the broker's own client, the operator and the workers authenticate as."""

    @property
    def secret_key(self) -> Path:
        """Raw key bytes, as ``tokenSecretKey=file://...`` reads them."""
        return self.directory / "token-secret.key"

    @property
    def broker_token(self) -> Path:
        """The superuser token of the broker's internal client."""
        return self.directory / "broker.token"

    def ensure(self) -> None:
        if self.broker_token.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self.secret_key.write_bytes(secrets.token_bytes(32))
        self.secret_key.chmod(0o600)
        self.broker_token.write_text(self.token())
        self.broker_token.chmod(0o600)

    def token(
        self,
        role: str = SUPERUSER,
        *,
        expires_in: datetime.timedelta | None = None,
        key: bytes | None = None,
    ) -> str:
        """A JWT for ``role``; ``key`` signs it with another key (the broker refuses it)."""
        claims: dict[str, object] = {"sub": role}
        if expires_in is not None:
            claims["exp"] = datetime.datetime.now(datetime.UTC) + expires_in
        return jwt.encode(claims, key or self.secret_key.read_bytes(), algorithm="HS256")


@dataclass(frozen=True)
class ApiserverPki:
    directory: Path

    @property
    def serving(self) -> ServingCert:
        return ServingCert(self.directory, "apiserver")

    @property
    def sa_public(self) -> Path:
        return self.directory / "sa.pub"

    @property
    def sa_private(self) -> Path:
        return self.directory / "sa.key"

    @property
    def token_file(self) -> Path:
        return self.directory / "tokens.csv"

    def admin_token(self) -> str:
        return self.token_file.read_text().split(",", 1)[0]

    def ensure(self) -> None:
        """Create everything once; later stack starts reuse it so kubeconfigs stay valid."""
        if self.token_file.exists():
            return
        self.serving.ensure(["localhost", "kubernetes.default.svc"])
        sa_key = _rsa_key()
        _write_key(self.sa_private, sa_key)
        self.sa_public.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        # token,user,uid,"group": system:masters bypasses RBAC, like kind's admin kubeconfig.
        self.token_file.write_text(
            f'{secrets.token_hex(24)},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'
        )
        self.token_file.chmod(0o600)

    def write_kubeconfig(self, path: Path, server: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "streamvane-local",
                    "cluster": {
                        "server": server,
                        "certificate-authority": str(self.serving.ca_cert),
                    },
                }
            ],
            "users": [{"name": ADMIN_USER, "user": {"token": self.admin_token()}}],
            "contexts": [
                {
                    "name": "streamvane-local",
                    "context": {"cluster": "streamvane-local", "user": ADMIN_USER},
                }
            ],
            "current-context": "streamvane-local",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
    )


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
