"""How kanal reaches an etcd member: plain HTTP or TLS, client certificates, users.

:class:`Connector` is the one connection factory of :class:`kanal.store.etcd.EtcdStore`:
every request — ranges, puts, transactions, leases, the maintenance probe and the
long-lived watch streams — gets its connection and its headers here, so they all
use the same settings.

Settings come from the store URL's scheme and docker's ``--cluster-store-opt``
names (:func:`parse_store_opts`):

- ``etcd://`` / ``http://``: plain HTTP (no TLS options allowed);
- ``etcds://`` / ``https://``: TLS. The member's certificate is verified against
  ``kv.cacertfile`` (the system's CAs when not given), including the host name or
  IP address the URL names (its subject alternative names). ``kv.certfile`` and
  ``kv.keyfile`` are the client certificate presented to etcd
  (``--client-cert-auth``).
- ``kv.username`` with ``kv.password`` or ``kv.passwordfile``: etcd's own
  authentication. A token from ``/v3/auth/authenticate`` is kept per member (etcd's
  simple tokens are valid only on the member that issued them) and fetched again
  when etcd says it is invalid or expired. The password file is read each time.

Certificate rotation: the CA, certificate and key files are stat'ed whenever a new
connection is made; when one changed (inode, size or mtime) the TLS context is
built again from the files, so a renewed certificate is used without a restart.
A half-written rotation (a certificate that does not match its key yet) keeps the
previous context and is tried again on the next connection.

Refusals that are configuration problems, not outages — an untrusted member
certificate, a client certificate etcd refuses (another CA, expired, none), a wrong
password, a user without permission — raise :class:`kanal.store.StoreRefused` with
one line saying which.
"""

from __future__ import annotations

import base64
import calendar
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kanal.errors import InvalidConfig
from kanal.store import StoreRefused

__all__ = [
    "GATEWAY_REFUSES_CN",
    "PLAIN_SCHEMES",
    "TLS_SCHEMES",
    "Connector",
    "EtcdSettings",
    "cert_not_after",
    "explain_tls_error",
    "parse_store_opts",
]

log = logging.getLogger("kanal.store")

PLAIN_SCHEMES = ("etcd", "http")
TLS_SCHEMES = ("etcds", "https")
# docker's --cluster-store-opt names, plus a password file (kept out of argv).
_OPTS = {
    "kv.cacertfile": "cafile",
    "kv.certfile": "certfile",
    "kv.keyfile": "keyfile",
    "kv.username": "username",
    "kv.password": "password",
    "kv.passwordfile": "password_file",
}


@dataclass(frozen=True)
class EtcdSettings:
    """How to connect: ``tls`` (from the scheme), certificate files, a user."""

    tls: bool = False
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    password_file: str = ""

    @staticmethod
    def from_url(scheme: str, opts: Sequence[str] = ()) -> EtcdSettings:
        """Settings for a store URL's ``scheme`` and ``--cluster-store-opt`` values.

        Raises InvalidConfig: an unknown scheme or option, TLS files with a plain
        scheme, a password without a user (or both a password and a file).
        """
        if scheme not in PLAIN_SCHEMES + TLS_SCHEMES:
            known = ", ".join(f"{s}://" for s in PLAIN_SCHEMES + TLS_SCHEMES)
            raise InvalidConfig(f"invalid cluster store scheme {scheme!r}: want {known}")
        s = EtcdSettings(tls=scheme in TLS_SCHEMES, **parse_store_opts(opts))
        if not s.tls and (s.cafile or s.certfile or s.keyfile):
            raise InvalidConfig(
                f"kv.cacertfile, kv.certfile and kv.keyfile need TLS: use etcds:// not {scheme}://"
            )
        if s.keyfile and not s.certfile:
            raise InvalidConfig("kv.keyfile needs kv.certfile")
        if (s.password or s.password_file) and not s.username:
            raise InvalidConfig("kv.password and kv.passwordfile need kv.username")
        if s.password and s.password_file:
            raise InvalidConfig("give kv.password or kv.passwordfile, not both")
        if s.username and not (s.password or s.password_file):
            raise InvalidConfig("kv.username needs kv.password or kv.passwordfile")
        return s

    @property
    def mode(self) -> str:
        """How this host connects, as ``kanal node ls`` shows it: ``mutual`` (TLS with
        a client certificate), ``tls`` (TLS, server verified only) or ``none``."""
        if not self.tls:
            return "none"
        return "mutual" if self.certfile else "tls"


def parse_store_opts(opts: Sequence[str]) -> dict[str, str]:
    """``["kv.cacertfile=/a,kv.certfile=/b", "kv.keyfile=/c"]`` → EtcdSettings fields.

    Each value is one option or several separated by commas (file names and
    passwords with a comma go in a file: kv.passwordfile). Raises InvalidConfig.
    """
    out: dict[str, str] = {}
    for opt in opts:
        for item in opt.split(","):
            if not item.strip():
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if key not in _OPTS:
                known = ", ".join(_OPTS)
                raise InvalidConfig(f"unknown cluster store option {key!r} (known: {known})")
            if not sep or not value:
                raise InvalidConfig(f"cluster store option {key} needs a value ({key}=...)")
            if "\0" in value:
                raise InvalidConfig(f"invalid value for cluster store option {key}")
            out[_OPTS[key]] = value
    return out


# --- certificates ----------------------------------------------------------------


def _der(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The (tag, content) items of one level of DER."""
    i = 0
    while i + 2 <= len(data):
        tag, n = data[i], data[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(data[i : i + k], "big")
            i += k
        yield tag, data[i : i + n]
        i += n


def cert_not_after(path: str) -> float | None:
    """When the first certificate of a PEM file expires (unix time); None if unreadable.

    Read by hand (the standard library's ssl does not parse certificate files) only
    to say "expired" instead of "bad certificate" when etcd refuses ours.
    """
    try:
        with open(path, "rb") as f:
            pem = f.read()
        begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
        body = pem.split(begin, 1)[1].split(end, 1)[0]
        der = base64.b64decode(b"".join(body.split()))
        cert = next(_der(der))[1]
        tbs = [item for item in _der(next(_der(cert))[1]) if item[0] != 0xA0]  # no version
        validity = list(_der(tbs[3][1]))  # serial, algorithm, issuer, validity
        tag, raw = validity[1]
        text = raw.decode()
        fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
        return float(calendar.timegm(time.strptime(text, fmt)))
    except (OSError, IndexError, ValueError, StopIteration, UnicodeDecodeError):
        return None


def explain_tls_error(e: ssl.SSLError, settings: EtcdSettings, where: str) -> str | None:
    """One line for a TLS failure that is a configuration problem, else None (a
    dropped connection, a timeout: worth another try)."""
    if isinstance(e, ssl.SSLCertVerificationError):
        why = e.verify_message or e.reason or str(e)
        ca = settings.cafile or "the system's CAs"
        return f"etcd {where}: its certificate is not trusted ({why}; CA: {ca})"
    reason = (e.reason or "").upper()
    if "CERTIFICATE_REQUIRED" in reason or (
        not settings.certfile and ("HANDSHAKE_FAILURE" in reason or "BAD_CERTIFICATE" in reason)
    ):
        return f"etcd {where} wants a client certificate: give kv.certfile and kv.keyfile"
    if "ALERT" in reason and any(
        w in reason for w in ("CERTIFICATE", "UNKNOWN_CA", "DECRYPT_ERROR", "ACCESS_DENIED")
    ):
        mine = settings.certfile or "(none)"
        expiry = cert_not_after(settings.certfile) if settings.certfile else None
        if expiry is not None and expiry < time.time():
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
            return f"etcd {where} refused our client certificate {mine}: it expired at {at}"
        return (
            f"etcd {where} refused our client certificate {mine} "
            f"({e.reason}): is it signed by a CA etcd trusts?"
        )
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
        return f"etcd {where} does not speak TLS here: use etcd:// or check the port"
    return None


# --- the connection factory -------------------------------------------------------

# etcd 3.4's JSON gateway, with etcd's users on, refuses a client certificate that
# has a Common Name (it would not take it as the user, as gRPC clients' CN is).
GATEWAY_REFUSES_CN = (
    "etcd refuses a client certificate with a Common Name once its users are on: "
    "issue kanal's certificate without a CN (its names in subjectAltName)"
)
_HEADERS = {"Content-Type": "application/json", "Grpc-Metadata-hasleader": "true"}
_Endpoint = tuple[str, int]


class Connector:
    """New connections to etcd members and the headers every request carries.

    Thread-safe. Raises InvalidConfig at construction when the TLS files cannot be
    used (missing, not PEM, a certificate that does not match its key).
    """

    def __init__(self, settings: EtcdSettings | None = None) -> None:
        self.settings = settings or EtcdSettings()
        self._lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None
        self._stamp: tuple[object, ...] | None = None
        self._tokens: dict[_Endpoint, str] = {}
        if self.settings.tls:
            self._ctx, self._stamp = self._build(), self._files_stamp()

    @property
    def tls(self) -> bool:
        return self.settings.tls

    # --- TLS ------------------------------------------------------------------------

    def _files(self) -> list[str]:
        s = self.settings
        return [f for f in (s.cafile, s.certfile, s.keyfile) if f]

    def _files_stamp(self) -> tuple[object, ...]:
        out: list[object] = []
        for f in self._files():
            try:
                st = os.stat(f)
                out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError as e:
                out.append(e.errno)
        return tuple(out)

    def _build(self) -> ssl.SSLContext:
        s = self.settings
        try:
            ctx = ssl.create_default_context(cafile=s.cafile or None)
        except (OSError, ssl.SSLError) as e:
            raise InvalidConfig(f"cannot use kv.cacertfile {s.cafile}: {_why(e)}") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if s.certfile:
            try:
                ctx.load_cert_chain(s.certfile, s.keyfile or None)
            except (OSError, ssl.SSLError) as e:
                what = f"kv.certfile {s.certfile}"
                if s.keyfile:
                    what += f" / kv.keyfile {s.keyfile}"
                if "KEY_VALUES_MISMATCH" in str(e):
                    raise InvalidConfig(f"{what}: the certificate does not match the key") from None
                raise InvalidConfig(f"cannot use {what}: {_why(e)}") from None
        return ctx

    def context(self) -> ssl.SSLContext | None:
        """The TLS context for a new connection (None: plain), rebuilt when a file changed."""
        if not self.settings.tls:
            return None
        stamp = self._files_stamp()
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._ctx = self._build()
                except InvalidConfig as e:
                    # Mid-rotation (the certificate written, not yet its key): keep the
                    # previous files' context, look again on the next connection.
                    log.warning("cluster store certificates changed but not usable yet: %s", e)
                else:
                    self._stamp = stamp
                    log.info("cluster store certificates re-read")
            assert self._ctx is not None
            return self._ctx

    def http(self, endpoint: _Endpoint, timeout: float) -> http.client.HTTPConnection:
        """A (not yet connected) HTTP or HTTPS connection to one member. A TLS one
        takes the current context each time it (re)connects."""
        host, port = endpoint
        if not self.settings.tls:
            return http.client.HTTPConnection(host, port, timeout=timeout)
        return _TlsConnection(self, host, port, timeout=timeout)

    def socket(self, endpoint: _Endpoint, timeout: float) -> socket.socket:
        """A connected socket to one member (TLS handshake done), for streams."""
        host, port = endpoint
        ctx = self.context()
        sock = socket.create_connection((host, port), timeout=timeout)
        if ctx is None:
            return sock
        try:
            return ctx.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def diagnose(self, endpoint: _Endpoint, timeout: float) -> str | None:
        """Why a member dropped a TLS connection of ours, when the reason is that it
        refuses us (else None).

        With TLS 1.3 the server judges our certificate after the handshake, while
        our request is already on its way: it sends an alert and closes, and the
        request it did not read makes its kernel answer with a reset that may
        overtake the alert. A connection that sends nothing gets the alert intact.
        """
        if not self.settings.tls:
            return None
        where = f"{endpoint[0]}:{endpoint[1]}"
        try:
            sock = self.socket(endpoint, timeout)
        except ssl.SSLError as e:
            return explain_tls_error(e, self.settings, where)
        except OSError:
            return None
        try:
            sock.settimeout(timeout)
            sock.recv(1)  # an alert, or nothing in time (we are accepted)
        except ssl.SSLError as e:
            return explain_tls_error(e, self.settings, where)
        except OSError:
            return None
        finally:
            sock.close()
        return None

    # --- authentication -------------------------------------------------------------

    def headers(self, endpoint: _Endpoint, timeout: float) -> dict[str, str]:
        """Headers of one request to ``endpoint``: with a token when a user is set
        (authenticating first, within ``timeout``, if this member gave us none yet)."""
        if not self.settings.username:
            return dict(_HEADERS)
        with self._lock:
            token = self._tokens.get(endpoint)
        if token is None:
            token = self._authenticate(endpoint, timeout)
        out = dict(_HEADERS)
        if token:
            out["Authorization"] = token
        return out

    def forget_token(self, endpoint: _Endpoint) -> None:
        with self._lock:
            self._tokens.pop(endpoint, None)

    def _password(self) -> str:
        s = self.settings
        if not s.password_file:
            return s.password
        try:
            with open(s.password_file, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as e:
            why = _why(e)
            raise StoreRefused(f"cannot read kv.passwordfile {s.password_file}: {why}") from None

    def _authenticate(self, endpoint: _Endpoint, timeout: float) -> str:
        """A token from ``endpoint`` ('' when etcd's authentication is off).

        Raises StoreRefused (wrong user or password), OSError/HTTPException (try
        another member)."""
        body = json.dumps({"name": self.settings.username, "password": self._password()})
        c = self.http(endpoint, timeout)
        try:
            c.request("POST", "/v3/auth/authenticate", body=body.encode(), headers=_HEADERS)
            resp = c.getresponse()
            raw = resp.read()
        finally:
            c.close()
        try:
            out: dict[str, Any] = json.loads(raw) if raw.strip() else {}
        except ValueError:
            out = {}
        if resp.status == 200 and out.get("token"):
            token = str(out["token"])
        else:
            msg = str(out.get("message") or out.get("error") or raw[:200].decode(errors="replace"))
            if "CommonName of client" in msg:
                raise StoreRefused(GATEWAY_REFUSES_CN)
            if "not enabled" in msg:
                token = ""  # etcd does not check users: go on without a token
            elif "authentication failed" in msg or int(out.get("code", 0) or 0) == 3:
                raise StoreRefused(
                    f"etcd refused user {self.settings.username!r}: wrong user name or password"
                )
            else:
                raise http.client.HTTPException(f"etcd authentication: {msg}")
        with self._lock:
            self._tokens[endpoint] = token
        return token


class _TlsConnection(http.client.HTTPConnection):
    """HTTPS whose TLS context comes from the connector at every connect, so a
    keep-alive connection that reconnects picks up rotated certificates too."""

    default_port = 443

    def __init__(self, connector: Connector, host: str, port: int, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.connector = connector

    def connect(self) -> None:
        ctx = self.connector.context()
        assert ctx is not None
        super().connect()  # TCP
        assert self.sock is not None
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.host)


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)
