"""The tuning plugin chained after kanal's bridge, compared with the Go plugin."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import go_plugin_dir, ip_json, nsexec, unique
from tests.netns.cni import PluginRunner


@pytest.fixture
def cni(host_ns: str, tmp_path: Path) -> PluginRunner:
    return PluginRunner(host_ns, tmp_path)


def attach(cni: PluginRunner, ct: str, cid: str = "t1") -> dict[str, Any]:
    br = unique("ktu", 15)
    conf = {
        "cniVersion": "1.0.0",
        "name": "tunet",
        "type": "bridge",
        "bridge": br,
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.71.0.0/24", "dataDir": str(cni.data_dir)},
    }
    r = cni("bridge", "ADD", conf, cid=cid, netns=f"/run/netns/{ct}")
    assert r.code == 0 and r.out is not None, r
    return r.out


def tuning_conf(tmp: Path, prev: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "tunet",
        "type": "tuning",
        "dataDir": str(tmp / "tuning"),
        "prevResult": prev,
        "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1", "net.ipv4.conf.all.log_martians": "1"},
        "mac": "0a:00:00:00:00:42",
        "mtu": 1300,
        "promisc": True,
        "allmulti": True,
        "txQLen": 2000,
        **kw,
    }


def link_state(ct: str) -> dict[str, Any]:
    eth0 = next(x for x in ip_json(ct, "-d", "link", "show") if x["ifname"] == "eth0")
    return {
        "mac": eth0["address"],
        "mtu": eth0["mtu"],
        "txqlen": eth0.get("txqlen", 0),  # (ip -j leaves out a txqlen of 0)
        "promisc": eth0.get("promiscuity", 0) > 0,
        "allmulti": "ALLMULTI" in eth0["flags"],
        "arp_ignore": nsexec(ct, "sysctl", "-n", "net.ipv4.conf.eth0.arp_ignore")
        .stdout.strip()
        .decode(),
    }


def test_tuning_applies_checks_and_restores(cni: PluginRunner, make_netns, tmp_path: Path) -> None:
    ct = make_netns("ktt")
    prev = attach(cni, ct)
    before = link_state(ct)
    conf = tuning_conf(tmp_path, prev)
    r = cni("tuning", "ADD", conf, cid="t1", netns=f"/run/netns/{ct}")
    assert r.code == 0, r
    assert r.out is not None
    assert next(i for i in r.out["interfaces"] if i["name"] == "eth0")["mac"] == "0a:00:00:00:00:42"
    after = link_state(ct)
    assert after == {
        "mac": "0a:00:00:00:00:42",
        "mtu": 1300,
        "txqlen": 2000,
        "promisc": True,
        "allmulti": True,
        "arp_ignore": "1",
    }
    backup = json.loads((tmp_path / "tuning" / "t1_eth0.json").read_text())
    assert backup == {
        "mac": before["mac"],
        "promisc": False,
        "mtu": before["mtu"],
        "allmulti": False,
        "txQLen": before["txqlen"],
    }
    assert (
        cni(
            "tuning", "CHECK", {**conf, "prevResult": r.out}, cid="t1", netns=f"/run/netns/{ct}"
        ).code
        == 0
    )
    nsexec(ct, "ip", "link", "set", "eth0", "mtu", "1400")
    bad = cni("tuning", "CHECK", {**conf, "prevResult": r.out}, cid="t1", netns=f"/run/netns/{ct}")
    assert bad.code == 1 and bad.out is not None and "MTU" in bad.out["msg"]
    assert cni("tuning", "DEL", conf, cid="t1", netns=f"/run/netns/{ct}").code == 0
    restored = link_state(ct)
    assert {k: restored[k] for k in ("mac", "mtu", "txqlen", "promisc", "allmulti")} == {
        k: before[k] for k in ("mac", "mtu", "txqlen", "promisc", "allmulti")
    }
    assert not (tmp_path / "tuning" / "t1_eth0.json").exists()
    assert cni("tuning", "DEL", conf, cid="t1", netns="").code == 0  # idempotent


@pytest.mark.oracle
@pytest.mark.skipif(go_plugin_dir() is None, reason="Go reference plugins not installed")
def test_same_as_go_tuning(cni: PluginRunner, make_netns, tmp_path: Path) -> None:
    states, results, backups = {}, {}, {}
    for impl in ("kanal", "go"):
        ct = make_netns("ktt")
        prev = attach(cni, ct, cid=impl)
        conf = tuning_conf(tmp_path / impl, prev)
        del conf["txQLen"]  # newer than the Debian Go build, which ignores it
        if impl == "kanal":
            r = cni("tuning", "ADD", conf, cid=impl, netns=f"/run/netns/{ct}")
            code, out = r.code, r.out
        else:
            env = {
                "CNI_COMMAND": "ADD",
                "CNI_CONTAINERID": impl,
                "CNI_NETNS": f"/run/netns/{ct}",
                "CNI_IFNAME": "eth0",
                "CNI_PATH": "/usr/lib/cni",
                "PATH": "/usr/bin:/bin",
            }
            p = subprocess.run(
                ["ip", "netns", "exec", cni.host, "/usr/lib/cni/tuning"],
                input=json.dumps(conf).encode(),
                env=env,
                capture_output=True,
            )
            code, out = p.returncode, json.loads(p.stdout)
        assert code == 0 and out is not None, out
        states[impl] = link_state(ct)
        results[impl] = next(i for i in out["interfaces"] if i["name"] == "eth0")["mac"]
        backups[impl] = json.loads((tmp_path / impl / "tuning" / f"{impl}_eth0.json").read_text())
        for k in ("mac", "mtu"):
            backups[impl].pop(k)  # the two containers' own originals differ
    assert states["kanal"] == states["go"]
    assert results["kanal"] == results["go"]
    assert backups["kanal"] == backups["go"]


@pytest.mark.parametrize(
    "extra,text",
    [
        ({"sysctl": {"kernel.hostname": "x"}}, "invalid net sysctl"),
        (
            {"sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1", "net/../../../etc": "x"}},
            "invalid net sysctl",
        ),
        ({"mac": "not-a-mac"}, "MAC"),
        ({"mtu": -1}, "MTU"),
        ({"prevResult": None}, "prevResult"),
    ],
)
def test_bad_input_changes_nothing(
    cni: PluginRunner, make_netns, tmp_path: Path, extra: dict[str, Any], text: str
) -> None:
    ct = make_netns("ktt")
    prev = attach(cni, ct)
    before = link_state(ct)
    conf = {**tuning_conf(tmp_path, prev), **extra}
    r = cni("tuning", "ADD", conf, cid="t1", netns=f"/run/netns/{ct}")
    assert r.code == 1 and r.out is not None and r.out["code"] == 7, r
    assert text.lower() in (r.out["msg"] + r.out.get("details", "")).lower()
    assert link_state(ct) == before
    assert not (tmp_path / "tuning").exists()


def test_allowlist_refuses_unlisted_sysctls(cni: PluginRunner, make_netns, tmp_path: Path) -> None:
    ct = make_netns("ktt")
    prev = attach(cni, ct)
    allow = tmp_path / "allowlist.conf"
    allow.write_text("^net\\.ipv4\\.conf\\.IFNAME\\.arp_ignore$\n")
    conf = tuning_conf(tmp_path, prev)
    import io

    from kanal.plugins.registry import load_plugin
    from kanal.skel.dispatcher import Dispatcher
    from tests.netns.inns import in_ns

    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "t1",
        "CNI_NETNS": f"/run/netns/{ct}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(cni.bindir),
        "KANAL_TUNING_ALLOWLIST": str(allow),
    }

    def go() -> tuple[int, str]:
        out = io.StringIO()
        code = Dispatcher(env, io.BytesIO(json.dumps(conf).encode()), out, io.StringIO()).run(
            load_plugin("tuning")
        )
        return code, out.getvalue()

    code, out = in_ns(cni.host, go)
    assert code == 1 and "log_martians is not allowed" in out
    assert os.path.exists(allow)
