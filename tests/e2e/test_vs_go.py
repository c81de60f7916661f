"""kanal's installed plugins against the Go reference plugins, on the same configs.

Each implementation gets its own host namespace (same bridge name, same subnet),
its own containers and state; results are compared after normalising what is
random (MACs, host veth names), and so is the kernel state seen with ``ip -j``.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kanal.fastpath.install import install_plugins
from kanal.ipam.diskfiles import INDEX_NAME
from tests.helpers import go_plugin_dir, ip_json, nsexec

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(go_plugin_dir() is None, reason="Go reference plugins not installed"),
]
VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class Side:
    def __init__(self, name: str, host: str, bindir: str, data: Path) -> None:
        self.name, self.host, self.bindir, self.data = name, host, bindir, data

    def run(
        self, plugin: str, cmd: str, conf: dict[str, Any], cid: str, netns: str, args: str = ""
    ) -> tuple[int, Any]:
        c = copy.deepcopy(conf)
        if "ipam" in c and c["ipam"].get("type") == "host-local":
            c["ipam"]["dataDir"] = str(self.data)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": cmd,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": self.bindir,
        }
        if args:
            env["CNI_ARGS"] = args
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.host}", f"{self.bindir}/{plugin}"],
            input=json.dumps(c).encode(),
            env=env,
            capture_output=True,
            timeout=60,
        )
        return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None)


@pytest.fixture
def sides(make_netns, tmp_path: Path) -> Iterator[tuple[Side, Side]]:
    kh, gh = make_netns("kvk"), make_netns("kvg")
    sock = tmp_path / "kanald.sock"
    install_plugins(str(tmp_path / "bin"), socket_path=str(sock))
    with open(tmp_path / "kanald.log", "wb") as log:
        daemon = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{kh}",
                str(VENV / "kanald"),
                "--no-engine",
                "--socket",
                str(sock),
            ],
            stderr=log,
        )
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.02)
        yield (
            Side("kanal", kh, str(tmp_path / "bin"), tmp_path / "k-ipam"),
            Side("go", gh, "/usr/lib/cni", tmp_path / "g-ipam"),
        )
    finally:
        daemon.terminate()
        daemon.wait(10)


def normalise(obj: Any) -> Any:
    """Random parts replaced; an empty ``dns`` dropped (the Debian Go build prints
    ``"dns": {}`` at 1.0.0, Go's current types omit it, as kanal does)."""
    if isinstance(obj, dict) and obj.get("dns") == {}:
        obj = {k: v for k, v in obj.items() if k != "dns"}
    if isinstance(obj, dict):
        return {
            k: (
                "<mac>"
                if k == "mac" and isinstance(v, str) and MAC.match(v)
                else "<veth>"
                if k == "name" and isinstance(v, str) and v.startswith("veth")
                else "<netns>"
                if k == "sandbox"
                else normalise(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [normalise(x) for x in obj]
    return obj


def kernel_view(ns: str) -> dict[str, Any]:
    addrs = sorted(
        f"{a['local']}/{a['prefixlen']}"
        for link in ip_json(ns, "addr", "show", "dev", "eth0")
        for a in link["addr_info"]
        if a.get("scope") == "global"
    )
    routes = sorted(
        (r["dst"], r.get("gateway", ""))
        for fam in ("-4", "-6")
        for r in ip_json(ns, fam, "route", "show")
        if not r["dst"].startswith("fe80")
    )
    mtu = ip_json(ns, "link", "show", "dev", "eth0")[0]["mtu"]
    return {"addrs": addrs, "routes": routes, "mtu": mtu}


BRIDGE: dict[str, Any] = {
    "name": "vsgo",
    "type": "bridge",
    "bridge": "kvsbr0",
    "isGateway": True,
    "ipMasq": True,
    "hairpinMode": True,
    "mtu": 1400,
    "ipam": {
        "type": "host-local",
        "subnet": "10.15.20.0/24",
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "1.1.1.1/32", "gw": "10.15.20.1"}],
    },
}
DUAL: dict[str, Any] = {
    "name": "vsgo6",
    "type": "bridge",
    "bridge": "kvsbr6",
    "isDefaultGateway": True,
    "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.16.0.0/24"}], [{"subnet": "fd00:16::/64"}]],
    },
}
PTP: dict[str, Any] = {
    "name": "vsptp",
    "type": "ptp",
    "ipMasq": True,
    "mtu": 1450,
    "ipam": {"type": "host-local", "subnet": "10.17.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]},
}
STATIC: dict[str, Any] = {
    "name": "vsst",
    "type": "bridge",
    "bridge": "kvsbr7",
    "ipam": {
        "type": "static",
        "addresses": [{"address": "10.18.0.5/24", "gateway": "10.18.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    },
}


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0"])
@pytest.mark.parametrize(
    "base", [BRIDGE, DUAL, PTP, STATIC], ids=["bridge", "dual", "ptp", "static"]
)
def test_same_result_and_kernel_state(
    sides: tuple[Side, Side], make_netns, version: str, base: dict[str, Any]
) -> None:
    if base is DUAL and version == "0.2.0":
        pytest.skip("0.2.0 carries one address per family; covered by the other versions")
    conf = {"cniVersion": version, **base}
    seen = {}
    for side in sides:
        ct = make_netns("kvc")
        code, res = side.run(
            base["type"],
            "ADD",
            conf,
            "vs1",
            f"/run/netns/{ct}",
            args="IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p",
        )
        assert code == 0, (side.name, res)
        seen[side.name] = (normalise(res), kernel_view(ct), ct)
        nsexec(
            ct,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.15.20.1"
            if base is BRIDGE
            else {"vsgo6": "10.16.0.1", "vsptp": "10.17.0.1", "vsst": "10.18.0.1"}[base["name"]],
            check=base is not STATIC,
        )
        if version >= "0.4.0":
            prev = {**conf, "prevResult": res}
            code, out = side.run(base["type"], "CHECK", prev, "vs1", f"/run/netns/{ct}")
            assert code == 0, (side.name, out)
    assert seen["kanal"][0] == seen["go"][0]
    assert seen["kanal"][1] == seen["go"][1]
    for side in sides:
        ct = seen[side.name][2]
        assert side.run(base["type"], "DEL", conf, "vs1", f"/run/netns/{ct}")[0] == 0
        assert side.run(base["type"], "DEL", conf, "vs1", "")[0] == 0  # containerd's 2nd DEL
        left = (
            [
                p.name
                for p in (side.data / base["name"]).iterdir()
                if p.name not in ("lock", INDEX_NAME) and not p.name.startswith("last_reserved")
            ]
            if (side.data / base["name"]).exists()
            else []
        )
        assert left == [], side.name


def test_version_probe_with_dummy_netns(sides: tuple[Side, Side]) -> None:
    """podman sends VERSION with a dummy netns and no container id before ADD and DEL."""
    for side in sides:
        env = {
            "CNI_COMMAND": "VERSION",
            "CNI_NETNS": "dummy",
            "CNI_CONTAINERID": "",
            "CNI_IFNAME": "",
            "CNI_PATH": side.bindir,
            "PATH": "/usr/bin:/bin",
        }
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{side.host}", f"{side.bindir}/bridge"],
            input=b'{"cniVersion":"0.4.0"}',
            env=env,
            capture_output=True,
        )
        assert p.returncode == 0
        assert "0.4.0" in json.loads(p.stdout)["supportedVersions"]


@pytest.mark.parametrize(
    "mutate,env_over",
    [
        (lambda c: "{not json", {}),
        (lambda c: json.dumps({**c, "ipam": {**c["ipam"], "subnet": "10.1.2.0/33"}}), {}),
        (lambda c: json.dumps({**c, "cniVersion": "9.9.9"}), {}),
        (lambda c: json.dumps(c), {"CNI_IFNAME": "a" * 16}),
        (lambda c: json.dumps(c), {"CNI_CONTAINERID": "../x"}),
        (lambda c: json.dumps(c), {"CNI_CONTAINERID": ""}),
    ],
    ids=["bad-json", "bad-cidr", "bad-version", "long-ifname", "bad-cid", "no-cid"],
)
def test_bad_input_same_code_no_state(
    sides: tuple[Side, Side], make_netns, mutate: Any, env_over: dict[str, str]
) -> None:
    codes = {}
    for side in sides:
        ct = make_netns("kvb")
        conf = {
            "cniVersion": "1.0.0",
            **BRIDGE,
            "ipam": {**BRIDGE["ipam"], "dataDir": str(side.data)},
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "b1",
            "CNI_NETNS": f"/run/netns/{ct}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": side.bindir,
            **env_over,
        }
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{side.host}", f"{side.bindir}/bridge"],
            input=mutate(conf).encode(),
            env=env,
            capture_output=True,
        )
        assert p.returncode != 0
        codes[side.name] = json.loads(p.stdout)["code"]
        links = [x["ifname"] for x in ip_json(ct, "link", "show")]
        if side.name == "kanal" or links != ["lo", "eth0"]:
            # kanal rolls back; the Go bridge leaves its veth when IPAM fails after
            # it (it expects the runtime's DEL): the only difference allowed.
            assert links == ["lo"], (side.name, links)
        assert (
            not (side.data / BRIDGE["name"]).exists()
            or [
                p.name
                for p in (side.data / BRIDGE["name"]).iterdir()
                if p.name not in ("lock", INDEX_NAME) and not p.name.startswith("last_reserved")
            ]
            == []
        )
    print(codes)
    if codes["go"] != 999:  # where Go has a specific code, kanal gives the same
        assert codes["kanal"] == codes["go"]
