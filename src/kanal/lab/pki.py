"""A lab's certificates and etcd users (``kanal lab up --etcd-tls``), made with ``openssl``.

Everything lives in the lab's ``pki/`` directory (root-only, removed by ``down`` with the
rest of the lab)::

    ca.pem ca.key              the lab's own certificate authority (EC P-256)
    e<k>.crt e<k>.key          etcd member k: server and client use (its peers too),
                               subjectAltName = its underlay address
    h<i>.crt h<i>.key          host i's kanald: client use, no Common Name (etcd 3.4's
                               JSON gateway refuses a client certificate with one once
                               users are on), subjectAltName DNS:h<i> (critical)
    admin.crt admin.key        the lab's own (status checks, etcdctl for the users)
    <user>.password            root, kanal (read and write under the store prefix),
                               reader (read only under it): random, one line each

kanal.lab does not import a crypto library: ``openssl`` (on every Debian) does the work.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from collections.abc import Sequence

from kanal.errors import KanalError

__all__ = ["USERS", "Pki"]

USERS = ("root", "kanal", "reader")
_DAYS = "3650"  # a lab may live long; its CA is thrown away with it


class Pki:
    """The files of one lab's PKI under ``directory`` (which :meth:`make` creates)."""

    def __init__(self, directory: str) -> None:
        self.dir = directory

    @property
    def ca_file(self) -> str:
        return os.path.join(self.dir, "ca.pem")

    def cert(self, who: str) -> str:
        return os.path.join(self.dir, f"{who}.crt")

    def key(self, who: str) -> str:
        return os.path.join(self.dir, f"{who}.key")

    def password_file(self, user: str) -> str:
        return os.path.join(self.dir, f"{user}.password")

    def password(self, user: str) -> str:
        with open(self.password_file(user)) as f:
            return f.read().strip()

    def make(self, name: str, members: dict[str, str], hosts: Sequence[str]) -> None:
        """The CA, a certificate per etcd member (``members``: name → address), one per
        host, the admin's, and the users' passwords."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)
        _openssl(
            "req", "-x509", "-new", *_EC, "-nodes", "-keyout", self.key("ca"),
            "-out", self.ca_file, "-days", _DAYS, "-subj", f"/CN=kanal-lab-{name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        for m, address in members.items():
            self._issue(m, f"/CN={m}", "serverAuth,clientAuth", f"IP:{address}")
        for who in (*hosts, "admin"):
            self.issue_client(who)
        for user in USERS:
            fd = os.open(self.password_file(user), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(18) + "\n")

    def _issue(self, who: str, subject: str, usage: str, san: str) -> None:
        csr = os.path.join(self.dir, f"{who}.csr")
        _openssl(
            "req", "-new", *_EC, "-nodes", "-keyout", self.key(who), "-out", csr,
            "-subj", subject,
        )  # fmt: skip
        with tempfile.NamedTemporaryFile("w", dir=self.dir, suffix=".ext") as ext:
            ext.write(
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyAgreement\n"
                f"extendedKeyUsage={usage}\nsubjectAltName={san}\n"
            )
            ext.flush()
            _openssl(
                "x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey", self.key("ca"),
                "-set_serial", f"0x{secrets.token_hex(12)}", "-days", _DAYS,
                "-extfile", ext.name, "-out", self.cert(who),
            )  # fmt: skip
        os.unlink(csr)
        for f in (self.key(who), self.cert(who)):
            os.chmod(f, 0o600)

    def issue_client(self, who: str) -> None:
        """One more client certificate (no Common Name, subjectAltName DNS:``who``)."""
        self._issue(who, "/", "clientAuth", f"critical,DNS:{who}")

    def client_opts(self, host: str, user: str = "kanal") -> list[str]:
        """kanald's ``--cluster-store-opt`` values for ``host``."""
        return [
            f"kv.cacertfile={self.ca_file},kv.certfile={self.cert(host)},"
            f"kv.keyfile={self.key(host)}",
            f"kv.username={user},kv.passwordfile={self.password_file(user)}",
        ]

    def etcdctl_tls(self, who: str = "admin") -> list[str]:
        return ["--cacert", self.ca_file, "--cert", self.cert(who), "--key", self.key(who)]


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")


def _openssl(*args: str) -> None:
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise KanalError(f"openssl {args[0]} failed (exit {p.returncode})", p.stderr.strip())
