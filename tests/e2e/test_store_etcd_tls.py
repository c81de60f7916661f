"""The etcd store over TLS with client certificates and etcd users (a real etcd on
loopback, certificates made here).

The member serves HTTPS only, requires a client certificate signed by the test's CA
(``--client-cert-auth``) and has authentication on: user ``kanal`` may read and
write the test prefix, ``reader`` only read it. Each refusal — an untrusted member,
no client certificate, one from another CA, an expired one, a certificate that
does not match its key, a wrong password, a user without write permission — gives
one clear line and writes nothing.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from kanal.errors import InvalidConfig
from kanal.store import Put, Store, StoreRefused
from kanal.store.etcd import EtcdStore, open_etcd
from tests.helpers import EtcdTls, etcd_server, etcdctl, unique
from tests.unit.store.test_store import (  # noqa: F401 (collected here against etcd over TLS)
    test_compare_and_swap,
    test_concurrent_cas_increments_lose_nothing,
    test_put_get_list_delete,
    test_txn_is_all_or_nothing,
)

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None or shutil.which("etcdctl") is None,
    reason="etcd or etcdctl is not installed",
)

PREFIX = "/tls/"
TOKEN_TTL = 2  # --auth-token-ttl of the short_tokens etcd: tokens run out within a test


@dataclass
class Setup:
    endpoint: str
    dir: Path
    ca: Path
    other_ca: Path
    client: tuple[Path, Path]  # signed by the CA etcd trusts
    intruder: tuple[Path, Path]  # signed by another CA
    expired: tuple[Path, Path]
    with_cn: tuple[Path, Path]  # valid, but with a Common Name
    password_file: Path

    def opts(
        self,
        *,
        ca: Path | None = None,
        cert: tuple[Path, Path] | None = None,
        user: str = "kanal",
        password: str = "",
    ) -> list[str]:
        out = [f"kv.cacertfile={ca or self.ca}"]
        if cert is not None:
            out.append(f"kv.certfile={cert[0]},kv.keyfile={cert[1]}")
        if user:
            out.append(f"kv.username={user}")
            out.append(
                f"kv.password={password}" if password else f"kv.passwordfile={self.password_file}"
            )
        return out

    def store(self, sub: str = "", *, host: str = "", **kw: object) -> EtcdStore:
        ep = self.endpoint if not host else f"{host}:{self.endpoint.rsplit(':', 1)[1]}"
        kw.setdefault("cert", self.client)
        # A generous deadline: a refusal is raised as soon as it is seen, while a
        # loaded machine may take seconds to show it.
        return open_etcd(f"etcds://{ep}{PREFIX}{sub}", self.opts(**kw), timeout=30.0)  # type: ignore[arg-type]


def _etcdctl(s: Setup, *args: str) -> None:
    base = ["--endpoints", f"https://{s.endpoint}", "--cacert", str(s.ca)]
    etcdctl([*base, "--cert", str(s.client[0]), "--key", str(s.client[1])], *args)


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    with _secured_etcd(tmp_path_factory.mktemp("etcdtls")) as s:
        yield s


@pytest.fixture(scope="module")
def short_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Another such etcd whose tokens lapse after TOKEN_TTL seconds unused (kept apart:
    logging in again is a raft write and a bcrypt, slow on a loaded machine)."""
    extra = ["--auth-token-ttl", str(TOKEN_TTL)]
    with _secured_etcd(tmp_path_factory.mktemp("etcdttl"), extra) as s:
        yield s


@contextmanager
def _secured_etcd(d: Path, extra: Sequence[str] = ()) -> Iterator[Setup]:
    from tests.certs import Pki

    ca = Pki(d / "ca")
    other = Pki(d / "other", "another-ca")
    member = ca.server("member", "127.0.0.1")
    client = ca.client("kanal-client")
    intruder = other.client("kanal-client")  # the same name, another CA
    expired = ca.client("kanal-client", expired=True, file="expired")
    with_cn = ca.client("kanal-cn", with_cn=True)
    pw = d / "password"
    pw.write_text("kanal-pw\n")
    tls = EtcdTls(str(ca.ca_file), str(member.cert), str(member.key))
    with etcd_server(str(d / "data"), tls=tls, extra=extra) as ep:
        s = Setup(
            ep,
            d,
            ca.ca_file,
            other.ca_file,
            (client.cert, client.key),
            (intruder.cert, intruder.key),
            (expired.cert, expired.key),
            (with_cn.cert, with_cn.key),
            pw,
        )
        for args in (
            ("user", "add", "root:root-pw"),
            ("user", "grant-role", "root", "root"),
            ("role", "add", "rw"),
            ("role", "grant-permission", "rw", "--prefix=true", "readwrite", PREFIX),
            ("user", "add", "kanal:kanal-pw"),
            ("user", "grant-role", "kanal", "rw"),
            ("role", "add", "ro"),
            ("role", "grant-permission", "ro", "--prefix=true", "read", PREFIX),
            ("user", "add", "reader:reader-pw"),
            ("user", "grant-role", "reader", "ro"),
            ("auth", "enable"),
        ):
            _etcdctl(s, *args)
        yield s


@pytest.fixture
def store(tls_etcd: Setup) -> Iterator[Store]:
    s = tls_etcd.store(unique("t", 20))  # each test in its own prefix
    yield s
    s.close()


def _one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and text
    return text


def test_watch_lease_and_txn_over_tls(tls_etcd: Setup) -> None:
    s = tls_etcd.store(unique("w", 20))
    assert s.connector.settings.mode == "mutual"
    _, rev = s.snapshot("")
    stop = threading.Event()
    got: list[tuple[str, str]] = []

    def watch() -> None:
        for batch in s.watch("", rev + 1, stop=stop):
            got.extend((e.type, e.key) for e in batch.events)
            if len(got) >= 2:
                return

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    lease, _ = s.lease_grant(30)
    s.put("a", b"1", lease=lease)
    assert s.lease_keepalive(lease) > 0
    assert s.lease_revoke(lease)  # its key goes with it
    th.join(30)
    stop.set()
    assert got == [("put", "a"), ("delete", "a")]


def test_expired_tokens_are_renewed(short_tokens: Setup) -> None:
    s = short_tokens.store(unique("x", 20))
    s.put("k", b"1")
    ep = s.endpoints[0]
    first = s.connector._tokens[ep]
    time.sleep(TOKEN_TTL + 2)  # etcd drops the unused token
    assert s.get("k") is not None
    assert s.connector._tokens[ep] not in ("", first)  # authenticated again


def test_a_watch_opened_with_an_expired_token_authenticates_again(short_tokens: Setup) -> None:
    s = short_tokens.store(unique("y", 20))
    _, rev = s.snapshot("")
    time.sleep(TOKEN_TTL + 2)  # the token from the snapshot lapses
    errors: list[Exception] = []
    stop = threading.Event()
    got: list[str] = []

    def watch() -> None:
        for batch in s.watch("", rev + 1, stop=stop, on_error=errors.append):
            got.extend(e.key for e in batch.events)
            return

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    writer = short_tokens.store(s.prefix.removeprefix(PREFIX).rstrip("/"))
    writer.put("w", b"1")
    th.join(30)
    stop.set()
    assert got == ["w"]
    assert not [e for e in errors if isinstance(e, StoreRefused)]


def test_a_member_from_another_ca_is_not_trusted(tls_etcd: Setup) -> None:
    s = tls_etcd.store(ca=tls_etcd.other_ca)
    with pytest.raises(StoreRefused) as e:
        s.get("k")
    assert "certificate is not trusted" in _one_line(e.value)


def test_a_name_the_member_certificate_does_not_have_is_refused(tls_etcd: Setup) -> None:
    s = tls_etcd.store(host="localhost")  # its certificate names only 127.0.0.1
    with pytest.raises(StoreRefused) as e:
        s.get("k")
    assert "not trusted" in _one_line(e.value) and "localhost" in str(e.value)


@pytest.mark.parametrize(
    ("which", "says"),
    [
        ("none", "wants a client certificate"),
        ("intruder", "refused our client certificate"),
        ("expired", "expired at"),
        ("with_cn", "without a CN"),
    ],
)
def test_refused_client_certificates_write_nothing(tls_etcd: Setup, which: str, says: str) -> None:
    sub = unique("c", 20)
    cert = {
        "none": None,
        "intruder": tls_etcd.intruder,
        "expired": tls_etcd.expired,
        "with_cn": tls_etcd.with_cn,
    }[which]
    s = tls_etcd.store(sub, cert=cert)
    for _ in range(10):  # new connections each time: the alert must never get lost
        with pytest.raises(StoreRefused) as e:
            s.put("k", b"1")
        assert says in _one_line(e.value)
        s.close()
    with pytest.raises(StoreRefused):
        s.lease_grant(10)
    assert tls_etcd.store(sub).list("") == []


def test_a_certificate_that_does_not_match_its_key(tls_etcd: Setup) -> None:
    with pytest.raises(InvalidConfig) as e:
        tls_etcd.store(cert=(tls_etcd.client[0], tls_etcd.intruder[1]))
    assert "does not match the key" in _one_line(e.value)


def test_a_wrong_password_is_refused(tls_etcd: Setup) -> None:
    s = tls_etcd.store(password="not-it")
    with pytest.raises(StoreRefused) as e:
        s.get("k")
    assert _one_line(e.value) == "etcd refused user 'kanal': wrong user name or password"


def test_no_user_is_refused(tls_etcd: Setup) -> None:
    s = tls_etcd.store(user="")
    with pytest.raises(StoreRefused) as e:
        s.get("k")
    assert "etcd's authentication is on" in _one_line(e.value)


def test_a_reader_may_read_but_not_write(tls_etcd: Setup) -> None:
    sub = unique("r", 20)
    tls_etcd.store(sub).put("k", b"1")
    reader = tls_etcd.store(sub, user="reader", password="reader-pw")
    got = reader.get("k")
    assert got is not None and got.value == b"1"
    with pytest.raises(StoreRefused) as e:
        reader.put("k", b"2")
    assert _one_line(e.value).startswith("etcd user 'reader' may not write")
    assert "permission denied" in str(e.value)
    with pytest.raises(StoreRefused) as e:
        reader.txn_if([], [Put("k", b"3")])
    assert "may not write" in _one_line(e.value)
    got = tls_etcd.store(sub).get("k")
    assert got is not None and got.value == b"1"


def test_certificates_are_re_read_when_their_files_change(tls_etcd: Setup) -> None:
    """Rotation without a restart: the same store, new files under the same names."""
    sub = unique("o", 20)
    d = tls_etcd.dir / unique("rot", 20)
    d.mkdir()
    cert, key = d / "client.crt", d / "client.key"

    def install(pair: tuple[Path, Path]) -> None:
        for src, dst in zip(pair, (cert, key)):
            tmp = dst.with_suffix(".new")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # as certificate managers do: a new inode

    install(tls_etcd.expired)
    s = tls_etcd.store(sub, cert=(cert, key))
    with pytest.raises(StoreRefused) as e:
        s.put("k", b"1")
    assert "expired at" in str(e.value)
    install(tls_etcd.client)  # renewed
    s.put("k", b"1")
    assert s.get("k") is not None
    install(tls_etcd.intruder)  # replaced by one etcd does not accept
    s.close()  # (an open connection keeps the handshake it made)
    with pytest.raises(StoreRefused) as e:
        s.get("k")
    assert "refused our client certificate" in str(e.value)
