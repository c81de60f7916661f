"""Certificates for the TLS tests, made here with the ``cryptography`` package.

:class:`Pki` is one certificate authority in a directory: ``server()`` issues a
member certificate (server and client use, for etcd's peers too) for IP addresses,
``client()`` a client certificate, with an optional validity in the past (an
expired one). Client certificates carry their name as a DNS subject alternative
name and no Common Name unless asked: etcd 3.4's JSON gateway refuses a client
certificate with a Common Name once etcd's authentication is on. Keys are EC
P-256: quick to make. Files are written root-only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _write(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Pki:
    def __init__(self, directory: Path, name: str = "kanal-test-ca") -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = _write(
            directory / f"{name}.pem", self.cert.public_bytes(serialization.Encoding.PEM)
        )

    def _issue(
        self,
        cn: str,
        *,
        ips: tuple[str, ...] = (),
        server: bool,
        expired: bool = False,
        file: str = "",
        with_cn: bool = True,
    ) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        if expired:
            start, end = now - dt.timedelta(days=3), now - dt.timedelta(days=1)
        else:
            start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=1)
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if with_cn else [])
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        if not server:
            names.append(x509.DNSName(cn))
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=not with_cn)
        cert = b.sign(self.key, hashes.SHA256())
        base = file or cn
        return Pair(
            _write(self.dir / f"{base}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            _write(self.dir / f"{base}.key", _key_pem(key)),
        )

    def server(self, cn: str, *ips: str) -> Pair:
        """A member's certificate, valid for ``ips`` (server and client use)."""
        return self._issue(cn, ips=ips, server=True)

    def client(
        self, name: str, *, expired: bool = False, file: str = "", with_cn: bool = False
    ) -> Pair:
        return self._issue(name, server=False, expired=expired, file=file, with_cn=with_cn)
