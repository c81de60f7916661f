"""The etcd connection settings: options, URLs, certificate files and their rotation.

Pure logic and files (certificates made here); no etcd. The TLS conversations
themselves are in tests/e2e/test_store_etcd_tls.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kanal.errors import InvalidConfig
from kanal.store import open_store
from kanal.store.etcd import open_etcd
from kanal.store.etcdconn import Connector, EtcdSettings, cert_not_after, parse_store_opts
from tests.certs import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_options_docker_names_one_or_several_per_value() -> None:
    got = parse_store_opts(
        ["kv.cacertfile=/a/ca.pem,kv.certfile=/a/c.pem", "kv.keyfile=/a/k.pem", "kv.username=u"]
    )
    assert got == {"cafile": "/a/ca.pem", "certfile": "/a/c.pem", "keyfile": "/a/k.pem",
                   "username": "u"}  # fmt: skip


@pytest.mark.parametrize(
    ("scheme", "opts", "says"),
    [
        ("etcd", ["kv.bogus=1"], "unknown cluster store option 'kv.bogus'"),
        ("etcd", ["kv.certfile"], "needs a value"),
        ("etcd", ["kv.certfile="], "needs a value"),
        ("etcd", ["kv.cacertfile=/ca"], "need TLS: use etcds://"),
        ("etcds", ["kv.keyfile=/k"], "kv.keyfile needs kv.certfile"),
        ("etcds", ["kv.password=p"], "need kv.username"),
        ("etcds", ["kv.username=u"], "kv.username needs kv.password"),
        ("etcds", ["kv.username=u,kv.password=p,kv.passwordfile=/f"], "not both"),
        ("ftp", [], "invalid cluster store scheme 'ftp'"),
    ],
)
def test_bad_settings_are_refused_in_one_line(scheme: str, opts: list[str], says: str) -> None:
    with pytest.raises(InvalidConfig) as e:
        EtcdSettings.from_url(scheme, opts)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_schemes_and_modes(pki: Pki) -> None:
    c = pki.client("m1")
    assert EtcdSettings.from_url("etcd").mode == "none"
    assert EtcdSettings.from_url("http").mode == "none"
    assert EtcdSettings.from_url("https", [f"kv.cacertfile={pki.ca_file}"]).mode == "tls"
    s = open_etcd(
        "etcds://10.0.0.1:2379,10.0.0.2:2379/p",
        [f"kv.cacertfile={pki.ca_file},kv.certfile={c.cert},kv.keyfile={c.key}"],
    )
    assert s.connector.settings.mode == "mutual" and s.prefix == "/p/"
    assert s.endpoints == [("10.0.0.1", 2379), ("10.0.0.2", 2379)]
    assert "s3cr3t" not in repr(EtcdSettings.from_url("etcd", ["kv.username=u,kv.password=s3cr3t"]))
    assert open_store("etcds://127.0.0.1:1/x").connector.settings.mode == "tls"  # type: ignore[attr-defined]


def test_unusable_certificate_files(pki: Pki, tmp_path: Path) -> None:
    a, b = pki.client("a"), pki.client("b")
    with pytest.raises(InvalidConfig) as e:
        Connector(EtcdSettings(tls=True, certfile=str(a.cert), keyfile=str(b.key)))
    assert "does not match the key" in str(e.value)
    with pytest.raises(InvalidConfig) as e:
        Connector(EtcdSettings(tls=True, cafile=str(tmp_path / "none.pem")))
    assert "cannot use kv.cacertfile" in str(e.value) and "No such file" in str(e.value)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(InvalidConfig) as e:
        Connector(EtcdSettings(tls=True, certfile=str(junk)))
    assert f"cannot use kv.certfile {junk}" in str(e.value)


def test_certificate_expiry_is_read_from_the_file(pki: Pki, tmp_path: Path) -> None:
    from cryptography import x509

    for pair in (pki.client("ok"), pki.client("old", expired=True, file="old")):
        want = x509.load_pem_x509_certificate(pair.cert.read_bytes()).not_valid_after_utc
        assert cert_not_after(str(pair.cert)) == want.timestamp()
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert cert_not_after(str(bad)) is None
    assert cert_not_after(str(tmp_path / "missing.pem")) is None


def test_the_context_is_rebuilt_when_a_file_changes_and_kept_mid_rotation(
    pki: Pki, tmp_path: Path
) -> None:
    a, b = pki.client("ra"), pki.client("rb")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    shutil.copyfile(a.cert, cert)
    shutil.copyfile(a.key, key)
    conn = Connector(EtcdSettings(tls=True, cafile=str(pki.ca_file), certfile=str(cert),
                                  keyfile=str(key)))  # fmt: skip
    first = conn.context()
    assert conn.context() is first  # nothing changed: the same context
    # Half a rotation: the new certificate, the old key. Not usable: the old context stays.
    tmp = tmp_path / "new.pem"
    shutil.copyfile(b.cert, tmp)
    os.replace(tmp, cert)
    assert conn.context() is first
    shutil.copyfile(b.key, tmp)
    os.replace(tmp, key)  # the rotation completed
    second = conn.context()
    assert second is not first
    assert conn.context() is second
    # A plain connector has no context at all.
    assert Connector().context() is None
