"""The host-local plugin module: cmd_* with CmdArgs, and the dispatcher end to end."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from kanal.errors import InvalidConfig, NotFound
from kanal.ipam.disk import forget_stores
from kanal.plugins import host_local
from kanal.skel.cmdargs import CmdArgs
from kanal.skel.dispatcher import Dispatcher
from kanal.spec.convert import render_result
from kanal.spec.versions import ALL_VERSIONS, version_ge


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    forget_stores()
    yield
    forget_stores()


def make_conf(tmp_path: Path, version: str, dual: bool = True) -> dict[str, Any]:
    ranges: list[Any] = [[{"subnet": "10.20.0.0/24"}]]
    if dual:
        ranges.append([{"subnet": "fd20::/64"}])
    return {
        "cniVersion": version,
        "name": "pnet",
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "dataDir": str(tmp_path / "data"),
            "ranges": ranges,
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        },
    }


def cmd(
    command: str, conf: dict[str, Any], cid: str = "c1", ifname: str = "eth0", args: str = ""
) -> CmdArgs:
    return CmdArgs(
        command=command,
        container_id=cid,
        netns="/run/netns/x" if command != "DEL" else "",
        ifname=ifname,
        args=args,
        path=("/usr/lib/cni",),
        stdin_data=json.dumps(conf).encode(),
        conf=conf,
        cni_version=conf["cniVersion"],
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_del_each_version(tmp_path: Path, version: str) -> None:
    conf = make_conf(tmp_path, version)  # one address per family fits every shape
    result = host_local.cmd_add(cmd("ADD", conf))
    assert [str(i.address) for i in result.ips] == ["10.20.0.2/24", "fd20::2/64"]
    assert all(i.interface is None for i in result.ips)
    assert result.interfaces == []
    wire = render_result(result, version)
    if version in ("0.1.0", "0.2.0"):
        assert wire["ip4"]["ip"] == "10.20.0.2/24"
        assert wire["ip4"]["gateway"] == "10.20.0.1"
        assert wire["ip4"]["routes"] == [{"dst": "0.0.0.0/0"}]
        assert wire["ip6"]["routes"] == [{"dst": "::/0"}]
    else:
        assert "interfaces" not in wire
        for ipc in wire["ips"]:
            assert "interface" not in ipc
            assert ("version" in ipc) == (not version_ge(version, "1.0.0"))
        assert wire["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    host_local.cmd_check(cmd("CHECK", conf))
    host_local.cmd_del(cmd("DEL", conf))
    host_local.cmd_del(cmd("DEL", conf))
    with pytest.raises(NotFound):
        host_local.cmd_check(cmd("CHECK", conf))
    d = tmp_path / "data" / "pnet"
    assert sorted(p.name for p in d.iterdir() if p.name[0].isdigit() or ":" in p.name) == []


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_two_v4_sets_refused_before_0_3_0(tmp_path: Path, version: str) -> None:
    conf = make_conf(tmp_path, version, dual=False)
    conf["ipam"]["ranges"].append([{"subnet": "10.21.0.0/24"}])
    with pytest.raises(InvalidConfig, match="does not support more than 1 address per family"):
        host_local.cmd_add(cmd("ADD", conf))
    assert not (tmp_path / "data").exists()


def run(env: dict[str, str], conf: dict[str, Any]) -> tuple[int, Any]:
    base = {
        "CNI_PATH": "/usr/lib/cni",
        "CNI_IFNAME": "eth0",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/x",
    }
    out, err = io.StringIO(), io.StringIO()
    rc = Dispatcher({**base, **env}, io.BytesIO(json.dumps(conf).encode()), out, err).run(
        host_local.PLUGIN
    )
    text = out.getvalue().strip()
    return rc, json.loads(text) if text else None


def test_dispatcher_add_and_errors(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, "1.1.0")
    rc, res = run({"CNI_COMMAND": "ADD"}, conf)
    assert rc == 0
    assert res == {
        "cniVersion": "1.1.0",
        "ips": [
            {"address": "10.20.0.2/24", "gateway": "10.20.0.1"},
            {"address": "fd20::2/64", "gateway": "fd20::1"},
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
    }
    rc, res = run({"CNI_COMMAND": "ADD"}, conf)
    assert rc == 1 and res["code"] == 999
    assert "duplicate allocation is not allowed" in res["msg"]
    bad = dict(conf, name="../x")
    rc, res = run({"CNI_COMMAND": "ADD"}, bad)
    assert rc == 1 and res["code"] == 7


def test_dispatcher_status(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, "1.1.0")
    assert run({"CNI_COMMAND": "STATUS"}, conf) == (0, None)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    conf["ipam"]["dataDir"] = str(blocker / "sub")
    rc, res = run({"CNI_COMMAND": "STATUS"}, conf)
    assert rc == 1 and res["code"] == 50


def test_dispatcher_gc_both_keys(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, "1.1.0", dual=False)
    for cid in ("a", "b", "c"):
        assert run({"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid}, conf)[0] == 0
    d = tmp_path / "data" / "pnet"
    gc = dict(conf)
    gc["cni.dev/valid-attachments"] = [{"containerID": "a", "ifname": "eth0"}]
    assert run({"CNI_COMMAND": "GC"}, gc) == (0, None)
    assert sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) == ["10.20.0.2"]
    old = dict(conf)
    old["cni.dev/attachments"] = []  # the key the 1.1.0 spec text used
    assert run({"CNI_COMMAND": "GC"}, old) == (0, None)
    assert sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) == []


def test_requested_ip_via_cni_args(tmp_path: Path) -> None:
    conf = make_conf(tmp_path, "1.0.0", dual=False)
    res = host_local.cmd_add(cmd("ADD", conf, args="IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.20.0.77"))
    assert str(res.ips[0].address) == "10.20.0.77/24"
