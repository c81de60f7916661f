"""CNIConfig chain logic against a fake Exec (no processes, no root)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kanal.errors import (
    DecodeError,
    IncompatibleVersion,
    InvalidConfig,
    InvalidEnv,
    KanalError,
    NotFound,
    TeardownError,
    Unavailable,
)
from kanal.runtime.invoke import PluginNotFound
from kanal.runtime.libcni import CNIConfig, RuntimeConf
from kanal.spec.convert import render_result
from kanal.spec.netconf import ConfList, GCAttachment, parse_conflist
from tests.unit.runtime.fakes import Call, FakeExec, default_result

PATHS = ["/opt/a", "/opt/b"]


def conflist(
    version: str = "1.1.0", plugins: list[dict[str, Any]] | None = None, **top: Any
) -> ConfList:
    doc = {
        "cniVersion": version,
        "name": "net1",
        "plugins": plugins or [{"type": "p1"}, {"type": "p2"}, {"type": "p3"}],
        **top,
    }
    return parse_conflist(json.dumps(doc).encode())


def rt(cid: str = "ctr1", ifname: str = "eth0", **kw: Any) -> RuntimeConf:
    return RuntimeConf(container_id=cid, netns="/run/netns/x", ifname=ifname, **kw)


@pytest.fixture
def fake() -> FakeExec:
    return FakeExec()


@pytest.fixture
def cni(tmp_path: Path, fake: FakeExec) -> CNIConfig:
    return CNIConfig(PATHS, str(tmp_path / "cache"), fake, base_env={"HOME": "/root"})


def cache_file(cni: CNIConfig, net: str = "net1", cid: str = "ctr1", ifname: str = "eth0") -> Path:
    return Path(cni.cache.results_dir) / f"{net}-{cid}-{ifname}"


def result_with_ip(version: str, ip: str) -> bytes:
    r = default_result(version)
    r["ips"][0]["address"] = ip
    return json.dumps(r).encode()


# --- ADD ---------------------------------------------------------------------------


def test_add_runs_the_chain_in_order_with_prev_result(cni: CNIConfig, fake: FakeExec) -> None:
    fake.responses[("p1", "ADD")] = result_with_ip("1.1.0", "10.0.0.1/24")
    fake.responses[("p2", "ADD")] = result_with_ip("1.1.0", "10.0.0.2/24")
    fake.responses[("p3", "ADD")] = result_with_ip("1.1.0", "10.0.0.3/24")
    result = cni.add_network_list(conflist(), rt())
    adds = fake.by_command("ADD")
    assert [c.plugin for c in adds] == ["p1", "p2", "p3"]
    assert "prevResult" not in adds[0].conf
    assert adds[1].conf["prevResult"]["ips"][0]["address"] == "10.0.0.1/24"
    assert adds[2].conf["prevResult"]["ips"][0]["address"] == "10.0.0.2/24"
    assert str(result.ips[0].address) == "10.0.0.3/24"
    for c in adds:
        assert c.conf["name"] == "net1"
        assert c.conf["cniVersion"] == "1.1.0"


def test_add_environment(cni: CNIConfig, fake: FakeExec) -> None:
    cni.add_network_list(conflist(plugins=[{"type": "p1"}]), rt(args=[("K", "V"), ("A", "B")]))
    env = fake.calls[0].env
    assert env["CNI_COMMAND"] == "ADD"
    assert env["CNI_CONTAINERID"] == "ctr1"
    assert env["CNI_NETNS"] == "/run/netns/x"
    assert env["CNI_IFNAME"] == "eth0"
    assert env["CNI_ARGS"] == "K=V;A=B"
    assert env["CNI_PATH"] == "/opt/a:/opt/b"
    assert env["HOME"] == "/root"  # the caller's environment is inherited


def test_base_env_cni_vars_are_overridden(tmp_path: Path, fake: FakeExec) -> None:
    stale = {"CNI_NETNS": "/stale", "CNI_ARGS": "X=Y", "KEEP": "1"}
    cni = CNIConfig(PATHS, str(tmp_path), fake, base_env=stale)
    cni.get_status_network_list(conflist(plugins=[{"type": "p1"}]))
    env = fake.calls[0].env
    assert env["CNI_NETNS"] == "" and env["CNI_ARGS"] == "" and env["KEEP"] == "1"


def test_add_capabilities_only_declared_true(cni: CNIConfig, fake: FakeExec) -> None:
    plugins: list[dict[str, Any]] = [
        {"type": "p1", "capabilities": {"portMappings": True, "bandwidth": False}},
        {"type": "p2"},
        {"type": "p3", "capabilities": {"mac": True}, "runtimeConfig": {"old": 1}},
    ]
    caps = {"portMappings": [{"hostPort": 80, "containerPort": 8080}], "bandwidth": {"x": 1}}
    cni.add_network_list(conflist(plugins=plugins), rt(capability_args=caps))
    p1, p2, p3 = (c.conf for c in fake.by_command("ADD"))
    assert p1["runtimeConfig"] == {"portMappings": caps["portMappings"]}
    assert "runtimeConfig" not in p2
    assert p3["runtimeConfig"] == {"old": 1}  # nothing offered for "mac": left alone


def test_add_writes_cache_after_success(cni: CNIConfig, fake: FakeExec) -> None:
    cl = conflist()
    result = cni.add_network_list(cl, rt(args=[("K", "V")], capability_args={"a": 1}))
    doc = json.loads(cache_file(cni).read_bytes())
    assert doc["kind"] == "cniCacheV1"
    assert base64.b64decode(doc["config"]) == cl.bytes
    assert doc["containerId"] == "ctr1"
    assert doc["ifName"] == "eth0"
    assert doc["networkName"] == "net1"
    assert doc["netns"] == "/run/netns/x"
    assert doc["cniArgs"] == [["K", "V"]]
    assert doc["capabilityArgs"] == {"a": 1}
    assert doc["result"] == render_result(result, "1.1.0")


@pytest.mark.parametrize("failing", ["p1", "p2", "p3"])
def test_add_failure_writes_no_cache_and_stops(
    cni: CNIConfig, fake: FakeExec, failing: str
) -> None:
    fake.responses[(failing, "ADD")] = InvalidConfig("bad thing", "in detail")
    with pytest.raises(InvalidConfig) as ei:
        cni.add_network_list(conflist(), rt())
    assert ei.value.msg == f'plugin type="{failing}" failed (add): bad thing'
    assert ei.value.details == "in detail"
    assert ei.value.code == 7
    order = ["p1", "p2", "p3"]
    assert [c.plugin for c in fake.calls] == order[: order.index(failing) + 1]
    assert not cache_file(cni).exists()


def test_add_error_names_the_plugin_object(cni: CNIConfig, fake: FakeExec) -> None:
    fake.responses[("p1", "ADD")] = KanalError("x", code=123)
    with pytest.raises(KanalError, match=r'plugin type="p1" name="inner" failed \(add\): x') as ei:
        cni.add_network_list(conflist(plugins=[{"type": "p1", "name": "inner"}]), rt())
    assert ei.value.code == 123


def test_add_bad_plugin_output_is_an_error(cni: CNIConfig, fake: FakeExec) -> None:
    fake.responses[("p2", "ADD")] = b"not json"
    with pytest.raises(DecodeError, match=r'plugin type="p2" failed \(add\)'):
        cni.add_network_list(conflist(), rt())
    assert not cache_file(cni).exists()


def test_add_missing_plugin_runs_nothing(cni: CNIConfig, fake: FakeExec) -> None:
    cl = conflist(plugins=[{"type": "p1"}, {"type": "nope"}])
    with pytest.raises(PluginNotFound, match='failed to find plugin "nope" in path'):
        cni.add_network_list(cl, rt())
    assert fake.calls == []


@pytest.mark.parametrize(
    ("cid", "ifname", "err"),
    [
        ("../../etc", "eth0", InvalidEnv),
        ("", "eth0", InvalidEnv),
        ("a/b", "eth0", InvalidEnv),
        ("ctr", "a/b", InvalidEnv),
        ("ctr", "..", InvalidEnv),
        ("ctr", "a" * 16, InvalidEnv),
        ("ctr", "", InvalidEnv),
    ],
)
def test_add_rejects_bad_names_before_running(
    cni: CNIConfig, fake: FakeExec, cid: str, ifname: str, err: type[Exception]
) -> None:
    with pytest.raises(err):
        cni.add_network_list(conflist(), rt(cid=cid, ifname=ifname))
    assert fake.calls == []
    assert not Path(cni.cache.results_dir).exists()


def test_add_result_without_version_takes_config_version(cni: CNIConfig, fake: FakeExec) -> None:
    r = default_result("0.4.0")
    del r["cniVersion"]
    fake.responses[("p1", "ADD")] = json.dumps(r).encode()
    result = cni.add_network_list(conflist("0.4.0", plugins=[{"type": "p1"}]), rt())
    assert result.cni_version == "0.4.0"
    assert json.loads(cache_file(cni).read_bytes())["result"]["cniVersion"] == "0.4.0"


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_caches_the_result_in_its_version(cni: CNIConfig, fake: FakeExec, version: str) -> None:
    result = cni.add_network_list(conflist(version, plugins=[{"type": "p1"}]), rt())
    assert result.cni_version == version
    cached = json.loads(cache_file(cni).read_bytes())["result"]
    assert cached["cniVersion"] == version
    if version == "0.2.0":
        assert cached["ip4"]["ip"] == "10.1.0.2/24"
    else:
        assert cached["ips"][0]["address"] == "10.1.0.2/24"


# --- DEL ---------------------------------------------------------------------------


def test_del_reverse_order_with_cached_prev_result(cni: CNIConfig, fake: FakeExec) -> None:
    cl = conflist()
    cni.add_network_list(cl, rt(capability_args={"mac": "x"}))
    cached = json.loads(cache_file(cni).read_bytes())["result"]
    fake.calls.clear()
    cni.del_network_list(cl, rt())
    dels = fake.by_command("DEL")
    assert [c.plugin for c in dels] == ["p3", "p2", "p1"]
    for c in dels:
        assert c.conf["prevResult"] == cached
        assert c.env["CNI_COMMAND"] == "DEL"
    assert not cache_file(cni).exists()


def test_del_before_040_sends_no_prev_result(cni: CNIConfig, fake: FakeExec) -> None:
    cl = conflist("0.3.1")
    cni.add_network_list(cl, rt())
    assert cache_file(cni).exists()
    cni.del_network_list(cl, rt())
    assert all("prevResult" not in c.conf for c in fake.by_command("DEL"))
    assert not cache_file(cni).exists()


def test_del_without_cache_sends_no_prev_result(cni: CNIConfig, fake: FakeExec) -> None:
    cni.del_network_list(conflist(), rt())
    dels = fake.by_command("DEL")
    assert len(dels) == 3
    assert all("prevResult" not in c.conf for c in dels)


@pytest.mark.parametrize(
    "content", [b"", b"{", b"\x00\x00\x00", b'{"kind":"cniCacheV1","result":7}', b"[1]"]
)
def test_del_with_corrupt_cache_removes_it_and_deletes_anyway(
    cni: CNIConfig, fake: FakeExec, content: bytes
) -> None:
    f = cache_file(cni)
    f.parent.mkdir(parents=True)
    f.write_bytes(content)
    cni.del_network_list(conflist(), rt())
    dels = fake.by_command("DEL")
    assert len(dels) == 3
    assert all("prevResult" not in c.conf for c in dels)
    assert not f.exists()


def test_del_with_corrupt_cache_removes_it_even_if_del_fails(
    cni: CNIConfig, fake: FakeExec
) -> None:
    f = cache_file(cni)
    f.parent.mkdir(parents=True)
    f.write_bytes(b"")
    fake.responses[("p3", "DEL")] = KanalError("boom")
    with pytest.raises(KanalError):
        cni.del_network_list(conflist(), rt())
    assert not f.exists()  # libcni drops an unreadable entry before running DEL


def test_del_with_unconvertible_cache(cni: CNIConfig, fake: FakeExec) -> None:
    f = cache_file(cni)
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps({"kind": "cniCacheV1", "result": {"cniVersion": "9.9.9"}}))
    cni.del_network_list(conflist(), rt())
    assert all("prevResult" not in c.conf for c in fake.by_command("DEL"))
    assert not f.exists()


def test_del_failure_keeps_cache_and_stops(cni: CNIConfig, fake: FakeExec) -> None:
    cl = conflist()
    cni.add_network_list(cl, rt())
    fake.calls.clear()
    fake.responses[("p2", "DEL")] = KanalError("cannot", code=11)
    with pytest.raises(KanalError) as ei:
        cni.del_network_list(cl, rt())
    assert ei.value.msg == 'plugin type="p2" failed (delete): cannot'
    assert ei.value.code == 11
    assert [c.plugin for c in fake.calls] == ["p3", "p2"]
    assert cache_file(cni).exists()
    # A retry once the plugin recovers succeeds and removes the entry.
    del fake.responses[("p2", "DEL")]
    cni.del_network_list(cl, rt())
    assert not cache_file(cni).exists()


def test_del_is_repeatable(cni: CNIConfig, fake: FakeExec) -> None:
    cl = conflist()
    cni.add_network_list(cl, rt())
    cni.del_network_list(cl, rt())
    cni.del_network_list(cl, rt())
    assert len(fake.by_command("DEL")) == 6


def test_del_converts_cached_result_to_config_version(cni: CNIConfig, fake: FakeExec) -> None:
    # Added under a 1.0.0 config, deleted under the same network at 0.4.0.
    cni.add_network_list(conflist("1.0.0", plugins=[{"type": "p1"}]), rt())
    cni.del_network_list(conflist("0.4.0", plugins=[{"type": "p1"}]), rt())
    prev = fake.by_command("DEL")[0].conf["prevResult"]
    assert prev["cniVersion"] == "0.4.0"
    assert prev["ips"][0]["version"] == "4"


def test_del_reads_legacy_bare_result_cache(cni: CNIConfig, fake: FakeExec) -> None:
    f = cache_file(cni)
    f.parent.mkdir(parents=True)
    f.write_text(json.dumps(default_result("0.3.1")))
    cni.del_network_list(conflist("1.0.0", plugins=[{"type": "p1"}]), rt())
    prev = fake.by_command("DEL")[0].conf["prevResult"]
    assert prev["cniVersion"] == "1.0.0"
    assert "version" not in prev["ips"][0]
    assert not f.exists()


def test_del_passes_capabilities(cni: CNIConfig, fake: FakeExec) -> None:
    cl = conflist(plugins=[{"type": "p1", "capabilities": {"portMappings": True}}])
    cni.del_network_list(cl, rt(capability_args={"portMappings": [1]}))
    assert fake.by_command("DEL")[0].conf["runtimeConfig"] == {"portMappings": [1]}


# --- CHECK -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1"])
def test_check_needs_040(cni: CNIConfig, fake: FakeExec, version: str) -> None:
    with pytest.raises(IncompatibleVersion, match="does not support the CHECK command"):
        cni.check_network_list(conflist(version), rt())
    assert fake.calls == []


def test_check_disabled(cni: CNIConfig, fake: FakeExec) -> None:
    cni.check_network_list(conflist(disableCheck=True), rt())
    cni.check_network_list(conflist(disableCheck="true"), rt())
    assert fake.calls == []


def test_check_without_cache_is_an_error(cni: CNIConfig, fake: FakeExec) -> None:
    with pytest.raises(NotFound, match='failed to get network "net1" cached result'):
        cni.check_network_list(conflist(), rt())
    assert fake.calls == []


def test_check_with_corrupt_cache_is_an_error(cni: CNIConfig, fake: FakeExec) -> None:
    f = cache_file(cni)
    f.parent.mkdir(parents=True)
    f.write_bytes(b"")
    with pytest.raises(DecodeError, match='failed to get network "net1" cached result'):
        cni.check_network_list(conflist(), rt())
    assert fake.calls == []


def test_check_in_order_with_converted_cache(cni: CNIConfig, fake: FakeExec) -> None:
    plugins: list[dict[str, Any]] = [{"type": "p1", "capabilities": {"a": True}}, {"type": "p2"}]
    cni.add_network_list(conflist("0.4.0", plugins=plugins), rt(capability_args={"a": 1}))
    fake.calls.clear()
    cni.check_network_list(conflist("1.0.0", plugins=plugins), rt(capability_args={"a": 2}))
    checks = fake.by_command("CHECK")
    assert [c.plugin for c in checks] == ["p1", "p2"]
    assert checks[0].conf["prevResult"]["cniVersion"] == "1.0.0"
    assert checks[0].conf["runtimeConfig"] == {"a": 2}
    assert "runtimeConfig" not in checks[1].conf
    assert checks[0].env["CNI_COMMAND"] == "CHECK"


def test_check_failure_is_prefixed(cni: CNIConfig, fake: FakeExec) -> None:
    cni.add_network_list(conflist(), rt())
    fake.responses[("p2", "CHECK")] = KanalError("addr missing", code=100)
    with pytest.raises(KanalError) as ei:
        cni.check_network_list(conflist(), rt())
    assert ei.value.msg == 'plugin type="p2" failed (check): addr missing'
    assert ei.value.code == 100
    assert [c.plugin for c in fake.by_command("CHECK")] == ["p1", "p2"]


# --- GC ------------------------------------------------------------------------------


def populate(cni: CNIConfig, fake: FakeExec) -> None:
    cni.add_network_list(conflist(), rt("c1", args=[("A", "1")]))
    cni.add_network_list(conflist(), rt("c2", capability_args={"x": 1}))
    cni.add_network_list(conflist(), rt("c3", ifname="net9"))
    other = parse_conflist(
        json.dumps({"cniVersion": "1.1.0", "name": "other", "plugins": [{"type": "p1"}]})
    )
    cni.add_network_list(other, rt("c2"))
    fake.calls.clear()


def test_gc_deletes_stale_and_sends_gc_with_both_keys(cni: CNIConfig, fake: FakeExec) -> None:
    populate(cni, fake)
    valid: list[GCAttachment | dict[str, str]] = [
        {"containerID": "c1", "ifname": "eth0"},
        GCAttachment("zz", "eth0"),
    ]
    cni.gc_network_list(conflist(), valid)
    dels = fake.by_command("DEL")
    assert {(c.env["CNI_CONTAINERID"], c.env["CNI_IFNAME"]) for c in dels} == {
        ("c2", "eth0"),
        ("c3", "net9"),
    }
    assert [c.plugin for c in dels[:3]] == ["p3", "p2", "p1"]
    c2 = [c for c in dels if c.env["CNI_CONTAINERID"] == "c2"]
    assert all(c.env["CNI_NETNS"] == "/run/netns/x" for c in c2)  # from the cache
    assert all("prevResult" in c.conf for c in dels)
    gcs = fake.by_command("GC")
    assert [c.plugin for c in gcs] == ["p1", "p2", "p3"]
    want = [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "zz", "ifname": "eth0"}]
    for c in gcs:
        assert c.conf["cni.dev/valid-attachments"] == want
        assert c.conf["cni.dev/attachments"] == want
        assert c.conf["name"] == "net1"
        assert "prevResult" not in c.conf and "runtimeConfig" not in c.conf
        assert c.env["CNI_CONTAINERID"] == "" and c.env["CNI_NETNS"] == ""
        assert c.env["CNI_IFNAME"] == "" and c.env["CNI_PATH"] == "/opt/a:/opt/b"
    assert cache_file(cni, cid="c1").exists()
    assert not cache_file(cni, cid="c2").exists()
    assert not cache_file(cni, cid="c3", ifname="net9").exists()
    assert cache_file(cni, net="other", cid="c2").exists()


def test_gc_capability_args_from_cache(cni: CNIConfig, fake: FakeExec) -> None:
    plugins = [{"type": "p1", "capabilities": {"x": True}}]
    cni.add_network_list(conflist(plugins=plugins), rt("c2", capability_args={"x": 5}))
    fake.calls.clear()
    cni.gc_network_list(conflist(plugins=plugins), [])
    assert fake.by_command("DEL")[0].conf["runtimeConfig"] == {"x": 5}
    assert fake.by_command("GC")[0].conf["cni.dev/valid-attachments"] == []


def test_gc_without_valid_list_deletes_all_and_omits_keys(cni: CNIConfig, fake: FakeExec) -> None:
    populate(cni, fake)
    cni.gc_network_list(conflist(), None)
    assert len(fake.by_command("DEL")) == 9
    for c in fake.by_command("GC"):
        assert "cni.dev/valid-attachments" not in c.conf
        assert "cni.dev/attachments" not in c.conf
    assert [e.network for e in cni.get_cached_attachments()] == ["other"]


def test_gc_before_110_only_deletes(cni: CNIConfig, fake: FakeExec) -> None:
    populate(cni, fake)
    cni.gc_network_list(conflist("1.0.0"), [])
    assert len(fake.by_command("DEL")) == 9
    assert fake.by_command("GC") == []


def test_gc_disabled_does_nothing(cni: CNIConfig, fake: FakeExec) -> None:
    populate(cni, fake)
    cni.gc_network_list(conflist(disableGC=True), [])
    assert fake.calls == []
    assert len(cni.get_cached_attachments()) == 4


def test_gc_collects_errors_and_attempts_everything(cni: CNIConfig, fake: FakeExec) -> None:
    populate(cni, fake)

    def del_fails_for_c2(call: Call) -> bytes:
        if call.env["CNI_CONTAINERID"] == "c2":
            raise KanalError("busy")
        return b""

    fake.responses[("p3", "DEL")] = del_fails_for_c2
    fake.responses[("p1", "GC")] = KanalError("gc broke")
    with pytest.raises(TeardownError) as ei:
        cni.gc_network_list(conflist(), [])
    msgs = [str(e) for e in ei.value.errors]
    assert msgs == [
        'failed to delete stale attachment c2 eth0: plugin type="p3" failed (delete): busy',
        "failed to GC plugin p1: gc broke",
    ]
    assert "GC of network" in str(ei.value)
    assert [c.plugin for c in fake.by_command("GC")] == ["p1", "p2", "p3"]
    assert cache_file(cni, cid="c2").exists()  # its DEL failed: kept for a retry
    assert not cache_file(cni, cid="c1").exists()


def test_gc_missing_plugin_is_collected(cni: CNIConfig, fake: FakeExec) -> None:
    with pytest.raises(TeardownError) as ei:
        cni.gc_network_list(conflist(plugins=[{"type": "gone"}, {"type": "p1"}]), [])
    assert len(ei.value.errors) == 1
    assert isinstance(ei.value.errors[0], PluginNotFound)
    assert [c.plugin for c in fake.by_command("GC")] == ["p1"]


# --- STATUS --------------------------------------------------------------------------


def test_status_every_plugin(cni: CNIConfig, fake: FakeExec) -> None:
    plugins: list[dict[str, Any]] = [{"type": "p1", "capabilities": {"a": True}}, {"type": "p2"}]
    cni.get_status_network_list(conflist(plugins=plugins))
    calls = fake.by_command("STATUS")
    assert [c.plugin for c in calls] == ["p1", "p2"]
    for c in calls:
        assert set(c.conf) <= {"type", "name", "cniVersion", "capabilities"}
        assert c.env["CNI_CONTAINERID"] == ""


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_status_before_110_does_nothing(cni: CNIConfig, fake: FakeExec, version: str) -> None:
    cni.get_status_network_list(conflist(version))
    assert fake.calls == []


def test_status_stops_at_first_failure_and_keeps_code(cni: CNIConfig, fake: FakeExec) -> None:
    fake.responses[("p2", "STATUS")] = Unavailable("no IPs left")
    with pytest.raises(Unavailable) as ei:
        cni.get_status_network_list(conflist())
    assert ei.value.code == 50
    assert ei.value.msg == 'plugin type="p2" failed (status): no IPs left'
    assert [c.plugin for c in fake.calls] == ["p1", "p2"]


# --- VERSION -----------------------------------------------------------------------


def test_get_version_info(cni: CNIConfig, fake: FakeExec) -> None:
    fake.versions["p1"] = ["0.4.0", "1.0.0"]
    assert cni.get_version_info("p1") == ["0.4.0", "1.0.0"]
    call = fake.calls[0]
    assert call.env["CNI_COMMAND"] == "VERSION"
    assert call.env["CNI_NETNS"] == "dummy" and call.env["CNI_IFNAME"] == "dummy"
    assert call.env["CNI_PATH"] == "dummy" and call.env["CNI_CONTAINERID"] == ""
    assert json.loads(call.stdin) == {"cniVersion": "1.1.0"}


def test_get_version_info_legacy_plugin(cni: CNIConfig, fake: FakeExec) -> None:
    fake.responses[("p1", "VERSION")] = KanalError("unknown CNI_COMMAND: VERSION")
    assert cni.get_version_info("p1") == ["0.1.0"]
    fake.responses[("p2", "VERSION")] = KanalError("other failure")
    with pytest.raises(KanalError, match="other failure"):
        cni.get_version_info("p2")


def test_version_probe_before_add_and_del_like_podman(tmp_path: Path, fake: FakeExec) -> None:
    cni = CNIConfig(PATHS, str(tmp_path), fake, version_probe=True)
    cl = conflist("0.4.0", plugins=[{"type": "p1"}, {"type": "p2"}])
    cni.add_network_list(cl, rt())
    cni.del_network_list(cl, rt())
    assert [(c.plugin, c.command) for c in fake.calls] == [
        ("p1", "VERSION"),
        ("p2", "VERSION"),
        ("p1", "ADD"),
        ("p2", "ADD"),
        ("p1", "VERSION"),
        ("p2", "VERSION"),
        ("p2", "DEL"),
        ("p1", "DEL"),
    ]


def test_version_probe_refuses_unsupported_version(tmp_path: Path, fake: FakeExec) -> None:
    fake.versions["p2"] = ["0.3.1"]
    cni = CNIConfig(PATHS, str(tmp_path), fake, version_probe=True)
    cl = conflist("0.4.0", plugins=[{"type": "p1"}, {"type": "p2"}])
    with pytest.raises(IncompatibleVersion, match='does not support config version "0.4.0"'):
        cni.add_network_list(cl, rt())
    assert fake.by_command("ADD") == []
    # DEL still runs: a probe never blocks cleanup.
    fake.responses[("p1", "VERSION")] = KanalError("broken")
    cni.del_network_list(cl, rt())
    assert len(fake.by_command("DEL")) == 2


def test_validate_network_list(cni: CNIConfig, fake: FakeExec) -> None:
    plugins: list[dict[str, Any]] = [
        {"type": "p1", "capabilities": {"portMappings": True, "mac": False}},
        {"type": "p2", "capabilities": {"bandwidth": True}},
    ]
    assert cni.validate_network_list(conflist(plugins=plugins)) == ["bandwidth", "portMappings"]
    fake.versions["p2"] = ["0.4.0"]
    with pytest.raises(InvalidConfig) as ei:
        cni.validate_network_list(conflist(plugins=[*plugins, {"type": "gone"}]))
    assert 'plugin p2 does not support config version "1.1.0"' in ei.value.details
    assert 'failed to find plugin "gone"' in ei.value.details


def test_get_cached_result_and_attachments(cni: CNIConfig, fake: FakeExec) -> None:
    assert cni.get_cached_result(conflist(), rt()) is None
    cni.add_network_list(conflist("1.0.0"), rt())
    cached = cni.get_cached_result(conflist("0.4.0"), rt())
    assert cached is not None and cached["cniVersion"] == "0.4.0"
    atts = cni.get_cached_attachments("ctr1")
    assert [(a.network, a.container_id, a.ifname) for a in atts] == [("net1", "ctr1", "eth0")]
    assert cni.get_cached_attachments("ctr") == []


def test_containerd_style_double_del_with_empty_netns(cni: CNIConfig, fake: FakeExec) -> None:
    # containerd CRI: DEL at StopPodSandbox (netns set), again at RemovePodSandbox
    # with an empty CNI_NETNS; K8S args with IgnoreUnknown.
    k8s = [("K8S_POD_UID", "u"), ("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p")]
    cl = conflist("1.0.0", plugins=[{"type": "p1"}])
    cni.add_network_list(cl, rt(args=k8s))
    cni.del_network_list(cl, rt(args=k8s))
    cni.del_network_list(cl, RuntimeConf("ctr1", "", "eth0", k8s))
    first, second = fake.by_command("DEL")
    assert first.env["CNI_NETNS"] == "/run/netns/x" and "prevResult" in first.conf
    assert second.env["CNI_NETNS"] == "" and "prevResult" not in second.conf
    assert second.env["CNI_ARGS"] == "K8S_POD_UID=u;IgnoreUnknown=1;K8S_POD_NAME=p"


def test_version_probe_skips_missing_plugin_on_del(tmp_path: Path, fake: FakeExec) -> None:
    cni = CNIConfig(PATHS, str(tmp_path), fake, version_probe=True)
    cl = conflist(plugins=[{"type": "p1"}, {"type": "gone"}])
    with pytest.raises(PluginNotFound):
        cni.del_network_list(cl, rt())
    assert [(c.plugin, c.command) for c in fake.calls] == [("p1", "VERSION")]
