"""The on-disk result cache: libcni's format, atomic writes, tolerant reads, listing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from kanal.errors import DecodeError, InvalidConfig, InvalidEnv, IOFailure
from kanal.runtime.cache import CacheEntry, ResultCache, encode_entry

RESULT = {
    "cniVersion": "1.0.0",
    "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0}],
    "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
}


def entry(cid: str = "c1", ifname: str = "eth0", net: str = "n1", **kw: object) -> CacheEntry:
    base: dict[str, object] = {
        "config": b'{"name":"n1"}',
        "netns": "/run/netns/x",
        "result": RESULT,
    }
    base.update(kw)
    return CacheEntry(net, cid, ifname, **base)  # type: ignore[arg-type]


def test_encoding_is_byte_identical_to_libcni() -> None:
    # What Go's json.Marshal(&cachedInfo) prints: struct order, base64 []byte, maps
    # (capabilityArgs, result) with sorted keys, <>& escaped.
    e = CacheEntry(
        network="n1",
        container_id="c1",
        ifname="eth0",
        config=b'{"a":"<b>"}',
        netns="/run/netns/x",
        cni_args=[("K", "V"), ("A", "B")],
        capability_args={"z": 1, "a": {"y": 2, "b": 3}},
        result={"cniVersion": "1.0.0", "dns": {}, "ips": [{"gateway": "1.1.1.1", "address": "a"}]},
    )
    assert encode_entry(e) == (
        b'{"kind":"cniCacheV1","containerId":"c1","config":"eyJhIjoiPGI+In0=",'
        b'"ifName":"eth0","networkName":"n1","netns":"/run/netns/x",'
        b'"cniArgs":[["K","V"],["A","B"]],"capabilityArgs":{"a":{"b":3,"y":2},"z":1},'
        b'"result":{"cniVersion":"1.0.0","dns":{},"ips":[{"address":"a","gateway":"1.1.1.1"}]}}'
    )


def test_encoding_omits_empty_fields_like_libcni() -> None:
    e = CacheEntry("n1", "c1", "eth0", config=b"x")
    assert encode_entry(e) == (
        b'{"kind":"cniCacheV1","containerId":"c1","config":"eA==","ifName":"eth0",'
        b'"networkName":"n1"}'
    )


def test_write_path_permissions_and_no_leftovers(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path / "cni"))
    path = cache.write(entry())
    assert path == str(tmp_path / "cni" / "results" / "n1-c1-eth0")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cache.results_dir).st_mode) == 0o700
    assert os.listdir(cache.results_dir) == ["n1-c1-eth0"]


def test_write_replaces_by_rename(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    path = cache.write(entry(netns="/a"))
    before = os.stat(path).st_ino
    cache.write(entry(netns="/b"))
    assert os.stat(path).st_ino != before  # a new file renamed over, never rewritten in place
    got = cache.read("n1", "c1", "eth0")
    assert got is not None and got.netns == "/b"
    assert os.listdir(cache.results_dir) == ["n1-c1-eth0"]


def test_write_failure_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("a file where the directory should be")
    cache = ResultCache(str(tmp_path))
    with pytest.raises(IOFailure, match="failed to write cache file"):
        cache.write(entry())
    assert sorted(os.listdir(tmp_path)) == ["results"]


@pytest.mark.parametrize(
    ("net", "cid", "ifname", "err"),
    [
        ("a/b", "c1", "eth0", InvalidConfig),
        ("..", "c1", "eth0", InvalidConfig),
        ("", "c1", "eth0", InvalidConfig),
        ("n1", "../../x", "eth0", InvalidEnv),
        ("n1", ".hidden", "eth0", InvalidEnv),
        ("n1", "c1", "../x", InvalidEnv),
        ("n1", "c1", "", InvalidEnv),
    ],
)
def test_names_validated_before_use(
    tmp_path: Path, net: str, cid: str, ifname: str, err: type[Exception]
) -> None:
    cache = ResultCache(str(tmp_path / "c"))
    with pytest.raises(err):
        cache.write(entry(cid=cid, ifname=ifname, net=net))
    for op in (cache.read, cache.delete):
        with pytest.raises(err):
            op(net, cid, ifname)
    assert not (tmp_path / "c").exists()


def test_round_trip(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    e = entry(cni_args=[("K", "V")], capability_args={"mac": "x"})
    cache.write(e)
    assert cache.read("n1", "c1", "eth0") == e


def test_read_missing_is_none(tmp_path: Path) -> None:
    assert ResultCache(str(tmp_path)).read("n1", "c1", "eth0") is None
    assert ResultCache(str(tmp_path)).read_result("n1", "c1", "eth0", "1.0.0") is None


@pytest.mark.parametrize("content", [b"", b"{", b"null", b"[]", b"\xff\xfe"])
def test_read_corrupt_raises(tmp_path: Path, content: bytes) -> None:
    cache = ResultCache(str(tmp_path))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "n1-c1-eth0").write_bytes(content)
    with pytest.raises(DecodeError, match="corrupt cache file"):
        cache.read("n1", "c1", "eth0")


@pytest.mark.parametrize(
    "doc",
    [
        {"kind": "cniCacheV1", "config": "!!notbase64"},
        {"kind": "cniCacheV1", "cniArgs": [["only-one"]]},
        {"kind": "cniCacheV1", "capabilityArgs": []},
        {"kind": "cniCacheV1", "netns": 5},
    ],
)
def test_read_bad_fields_raise(tmp_path: Path, doc: dict[str, object]) -> None:
    cache = ResultCache(str(tmp_path))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "n1-c1-eth0").write_text(json.dumps(doc))
    with pytest.raises(DecodeError):
        cache.read("n1", "c1", "eth0")


def test_read_go_written_file(tmp_path: Path) -> None:
    # As written by Go libcni (cnitool add).
    go = (
        '{"kind":"cniCacheV1","containerId":"cnitool-77383ca0a0715733ca6f",'
        '"config":"eyJuYW1lIjoibjEifQ==","ifName":"eth0","networkName":"n1",'
        '"netns":"/run/netns/x","result":{"cniVersion":"1.0.0","dns":{},'
        '"interfaces":[{"mac":"ee:3d:38:67:ff:4b","name":"br0"}],'
        '"ips":[{"address":"10.244.0.15/24","gateway":"10.244.0.1","interface":0}]}}'
    )
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "n1-cnitool-77383ca0a0715733ca6f-eth0").write_text(go)
    cache = ResultCache(str(tmp_path))
    e = cache.read("n1", "cnitool-77383ca0a0715733ca6f", "eth0")
    assert e is not None and not e.legacy
    assert e.config == b'{"name":"n1"}'
    assert e.cni_args == [] and e.capability_args == {}
    got = cache.read_result("n1", "cnitool-77383ca0a0715733ca6f", "eth0", "0.4.0")
    assert got is not None
    assert got["cniVersion"] == "0.4.0"
    assert got["ips"][0] == {
        "version": "4",
        "interface": 0,
        "address": "10.244.0.15/24",
        "gateway": "10.244.0.1",
    }


def test_read_legacy_bare_result(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    legacy = {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}
    (tmp_path / "results" / "n1-c1-eth0").write_text(json.dumps(legacy))
    cache = ResultCache(str(tmp_path))
    e = cache.read("n1", "c1", "eth0")
    assert e is not None and e.legacy and e.result == legacy
    got = cache.read_result("n1", "c1", "eth0", "1.0.0")
    assert got is not None and got["ips"] == [{"address": "10.0.0.2/24"}]


def test_read_result_conversion_failure_is_explained(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write(entry(result={"cniVersion": "1.0.0", "interfaces": [{"name": "x"}]}))
    with pytest.raises(
        Exception, match=r'failed to convert cached result to config version "0.2.0"'
    ):
        cache.read_result("n1", "c1", "eth0", "0.2.0")


def test_entry_without_result_is_corrupt_for_read_result(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write(entry(result=None))
    with pytest.raises(DecodeError, match="no result"):
        cache.read_result("n1", "c1", "eth0", "1.0.0")


def test_delete_is_idempotent(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write(entry())
    assert cache.delete("n1", "c1", "eth0") is True
    assert cache.delete("n1", "c1", "eth0") is False
    assert os.listdir(cache.results_dir) == []


def test_attachments_listing(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    assert cache.attachments() == []  # no directory yet
    cache.write(entry("c2", net="n1"))
    cache.write(entry("c1", net="n1"))
    cache.write(entry("c1", "net1", net="n2"))
    cache.write(entry("c10", net="n1"))
    results = tmp_path / "results"
    (results / "n1-legacy-eth0").write_text(json.dumps(RESULT))
    (results / "n1-broken-eth0").write_bytes(b"")
    (results / ".n1-c1-eth0.tmp").write_text(encode_entry(entry("c1")).decode())
    # The name says c1 but the content another container: skipped when filtering.
    (results / "n3-c1-eth0").write_text(encode_entry(entry("other", net="n3")).decode())
    no_if = json.loads(encode_entry(entry("c9")))
    no_if["ifName"] = ""
    (results / "n1-c9-eth0").write_text(json.dumps(no_if))

    def keys(entries: list[CacheEntry]) -> list[tuple[str, str, str]]:
        return [(e.network, e.container_id, e.ifname) for e in entries]

    assert keys(cache.attachments()) == [
        ("n1", "c1", "eth0"),
        ("n1", "c10", "eth0"),
        ("n1", "c2", "eth0"),
        ("n2", "c1", "net1"),
        ("n3", "other", "eth0"),
    ]
    assert keys(cache.attachments("c1")) == [("n1", "c1", "eth0"), ("n2", "c1", "net1")]
    assert keys(cache.attachments(network="n2")) == [("n2", "c1", "net1")]
    assert keys(cache.attachments("c1", network="n1")) == [("n1", "c1", "eth0")]
