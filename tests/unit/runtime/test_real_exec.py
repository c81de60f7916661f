"""CNIConfig driving real plugin processes (the scriptable noop plugin); no root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kanal.errors import InvalidConfig, KanalError, TeardownError, Unavailable
from kanal.runtime.libcni import CNIConfig, RuntimeConf
from kanal.spec.netconf import ConfList, parse_conflist
from tests.unit.runtime.noop import install_noop, read_log


@pytest.fixture
def bindir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    for name in ("noop", "second", "third"):
        install_noop(d, name)
    return d


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "calls.log"


def conflist(version: str, plugins: list[dict[str, Any]], **top: Any) -> ConfList:
    doc = {"cniVersion": version, "name": "realnet", "plugins": plugins, **top}
    return parse_conflist(json.dumps(doc).encode())


def make(tmp_path: Path, bindir: Path, log: Path, **kw: Any) -> CNIConfig:
    return CNIConfig(
        [str(tmp_path / "empty"), str(bindir)],
        str(tmp_path / "cache"),
        base_env={"NOOP_LOG": str(log)},
        **kw,
    )


RT = RuntimeConf("ctr-1", "/run/netns/ctr1", "eth0", [("IgnoreUnknown", "1")], {"mac": "x"})


def test_chain_add_check_del(tmp_path: Path, bindir: Path, log: Path) -> None:
    plugins: list[dict[str, Any]] = [
        {"type": "noop", "capabilities": {"mac": True}},
        {"type": "second", "noop": {"ADD": {"result": "PASSTHROUGH"}}},
        {"type": "third", "extra": {"kept": [1, 2]}},
    ]
    cni = make(tmp_path, bindir, log)
    cl = conflist("1.0.0", plugins)
    result = cni.add_network_list(cl, RT)
    assert str(result.ips[0].address) == "10.99.0.2/24"
    assert result.interfaces[0].sandbox == "/run/netns/ctr1"

    cni.check_network_list(cl, RT)
    cni.del_network_list(cl, RT)

    calls = read_log(log)
    assert [(c["plugin"], c["command"]) for c in calls] == [
        ("noop", "ADD"),
        ("second", "ADD"),
        ("third", "ADD"),
        ("noop", "CHECK"),
        ("second", "CHECK"),
        ("third", "CHECK"),
        ("third", "DEL"),
        ("second", "DEL"),
        ("noop", "DEL"),
    ]
    first, second, third = calls[:3]
    assert first["env"] == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "ctr-1",
        "CNI_NETNS": "/run/netns/ctr1",
        "CNI_ARGS": "IgnoreUnknown=1",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": f"{tmp_path / 'empty'}:{bindir}",
    }
    assert first["conf"]["runtimeConfig"] == {"mac": "x"}
    assert "prevResult" not in first["conf"]
    assert second["conf"]["prevResult"]["ips"][0]["address"] == "10.99.0.2/24"
    assert third["conf"]["extra"] == {"kept": [1, 2]}  # unknown keys pass through
    assert third["conf"]["prevResult"] == second["conf"]["prevResult"]
    for c in calls[3:]:
        assert c["conf"]["prevResult"]["cniVersion"] == "1.0.0"
    assert not (tmp_path / "cache" / "results" / "realnet-ctr-1-eth0").exists()


def test_add_caches_only_after_the_whole_chain(tmp_path: Path, bindir: Path, log: Path) -> None:
    plugins: list[dict[str, Any]] = [
        {"type": "noop"},
        {"type": "second", "noop": {"ADD": {"error": {"code": 11, "msg": "try later"}}}},
        {"type": "third"},
    ]
    cni = make(tmp_path, bindir, log)
    with pytest.raises(KanalError) as ei:
        cni.add_network_list(conflist("1.1.0", plugins), RT)
    assert ei.value.code == 11
    assert ei.value.msg == 'plugin type="second" failed (add): try later'
    assert [c["plugin"] for c in read_log(log)] == ["noop", "second"]
    assert not (tmp_path / "cache" / "results").exists()


def test_plugin_error_with_details_and_stderr(tmp_path: Path, bindir: Path, log: Path) -> None:
    behaviour = {"error": {"code": 7, "msg": "bad", "details": "why"}, "stderr": "noise\n"}
    plugins: list[dict[str, Any]] = [{"type": "noop", "noop": {"ADD": behaviour}}]
    with pytest.raises(InvalidConfig) as ei:
        make(tmp_path, bindir, log).add_network_list(conflist("0.4.0", plugins), RT)
    assert str(ei.value) == 'plugin type="noop" failed (add): bad: why'


def test_crashing_plugin_stderr_becomes_the_message(
    tmp_path: Path, bindir: Path, log: Path
) -> None:
    plugins: list[dict[str, Any]] = [
        {"type": "noop", "noop": {"DEL": {"stdout": "", "stderr": "panic: nil map", "exit": 2}}}
    ]
    with pytest.raises(KanalError) as ei:
        make(tmp_path, bindir, log).del_network_list(conflist("1.0.0", plugins), RT)
    assert str(ei.value) == (
        'plugin type="noop" failed (delete): netplugin failed: "panic: nil map": exit status 2'
    )


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_every_version_round_trip(tmp_path: Path, bindir: Path, log: Path, version: str) -> None:
    cni = make(tmp_path, bindir, log)
    cl = conflist(version, [{"type": "noop"}, {"type": "second"}])
    result = cni.add_network_list(cl, RT)
    assert result.cni_version == version
    assert str(result.ips[0].address) == "10.99.0.2/24"
    cached = json.loads((tmp_path / "cache" / "results" / "realnet-ctr-1-eth0").read_text())
    assert cached["result"]["cniVersion"] == version
    cni.del_network_list(cl, RT)
    dels = [c for c in read_log(log) if c["command"] == "DEL"]
    has_prev = version in ("0.4.0", "1.0.0", "1.1.0")
    assert all(("prevResult" in c["conf"]) == has_prev for c in dels)


def test_gc_and_status(tmp_path: Path, bindir: Path, log: Path) -> None:
    cni = make(tmp_path, bindir, log)
    cl = conflist("1.1.0", [{"type": "noop"}])
    cni.add_network_list(cl, RuntimeConf("keep", "/n/1", "eth0"))
    cni.add_network_list(cl, RuntimeConf("stale", "/n/2", "eth0"))
    log.unlink()
    cni.gc_network_list(cl, [{"containerID": "keep", "ifname": "eth0"}])
    calls = read_log(log)
    assert [(c["command"], c["env"]["CNI_CONTAINERID"]) for c in calls] == [
        ("DEL", "stale"),
        ("GC", ""),
    ]
    assert calls[0]["env"]["CNI_NETNS"] == "/n/2"
    assert calls[1]["conf"]["cni.dev/valid-attachments"] == [
        {"containerID": "keep", "ifname": "eth0"}
    ]
    assert [a.container_id for a in cni.get_cached_attachments()] == ["keep"]

    cni.get_status_network_list(cl)
    assert read_log(log)[-1]["command"] == "STATUS"


def test_gc_and_status_errors(tmp_path: Path, bindir: Path, log: Path) -> None:
    cni = make(tmp_path, bindir, log)
    script = {
        "GC": {"error": {"code": 999, "msg": "gc failed"}},
        "STATUS": {"error": {"code": 50, "msg": "no addresses left"}},
    }
    cl = conflist("1.1.0", [{"type": "noop", "noop": script}, {"type": "second"}])
    with pytest.raises(TeardownError, match="failed to GC plugin noop: gc failed"):
        cni.gc_network_list(cl, None)
    with pytest.raises(Unavailable) as ei:
        cni.get_status_network_list(cl)
    assert ei.value.code == 50
    assert [c["plugin"] for c in read_log(log) if c["command"] == "STATUS"] == ["noop"]


def test_podman_style_version_probe(tmp_path: Path, bindir: Path, log: Path) -> None:
    cni = make(tmp_path, bindir, log, version_probe=True)
    cl = conflist("0.4.0", [{"type": "noop"}, {"type": "second"}])
    cni.add_network_list(cl, RT)
    cni.del_network_list(cl, RT)
    assert [(c["plugin"], c["command"]) for c in read_log(log)] == [
        ("noop", "VERSION"),
        ("second", "VERSION"),
        ("noop", "ADD"),
        ("second", "ADD"),
        ("noop", "VERSION"),
        ("second", "VERSION"),
        ("second", "DEL"),
        ("noop", "DEL"),
    ]
