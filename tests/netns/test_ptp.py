"""The ptp plugin against the real kernel, in namespaces made here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ip_json, nsexec
from tests.netns.cni import PluginRunner


@pytest.fixture
def cni(host_ns: str, tmp_path: Path) -> PluginRunner:
    return PluginRunner(host_ns, tmp_path)


def conf(cni: PluginRunner, version: str = "1.0.0", **kw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "cniVersion": version,
        "name": "ptpnet",
        "type": "ptp",
        "mtu": 1450,
        "ipam": {
            "type": "host-local",
            "subnet": "10.68.0.0/24",
            "dataDir": str(cni.data_dir),
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    c.update(kw)
    return c


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0"])
def test_ptp_add_check_del(cni: PluginRunner, make_netns, version: str) -> None:
    ct1, ct2 = make_netns("ktp"), make_netns("ktp")
    c = conf(cni, version)
    r1 = cni("ptp", "ADD", c, cid="p1", netns=f"/run/netns/{ct1}")
    r2 = cni("ptp", "ADD", c, cid="p2", netns=f"/run/netns/{ct2}")
    assert r1.code == 0 and r2.code == 0, (r1, r2)
    assert r1.out is not None
    host_if, ct_if = r1.out["interfaces"]
    assert ct_if["sandbox"] == f"/run/netns/{ct1}"
    assert r1.out["ips"][0]["interface"] == 1
    routes = {(r["dst"], r.get("gateway"), r.get("scope")) for r in ip_json(ct1, "route")}
    assert ("10.68.0.1", None, "link") in routes
    assert ("10.68.0.0/24", "10.68.0.1", None) in routes
    assert ("default", "10.68.0.1", None) in routes
    host_addrs = ip_json(cni.host, "addr", "show", "dev", host_if["name"])[0]
    assert {a["local"] for a in host_addrs["addr_info"] if a["family"] == "inet"} == {"10.68.0.1"}
    assert host_addrs["mtu"] == 1450
    host_routes = {r["dst"]: r for r in ip_json(cni.host, "route")}
    assert host_routes["10.68.0.2"]["dev"] == host_if["name"]
    # Routed through the host: container to container.
    nsexec(ct1, "ping", "-c", "1", "-W", "2", "10.68.0.3")
    if version == "1.0.0":
        assert (
            cni(
                "ptp", "CHECK", {**c, "prevResult": r1.out}, cid="p1", netns=f"/run/netns/{ct1}"
            ).code
            == 0
        )
    for cid, ct in (("p1", ct1), ("p2", ct2)):
        assert cni("ptp", "DEL", c, cid=cid, netns=f"/run/netns/{ct}").code == 0
        assert cni("ptp", "DEL", c, cid=cid, netns="").code == 0
    assert "10.68.0.2" not in {r["dst"] for r in ip_json(cni.host, "route")}
    assert [x["ifname"] for x in ip_json(ct1, "link")] == ["lo"]


def test_ptp_needs_ipam(cni: PluginRunner, make_netns) -> None:
    ct = make_netns("ktp")
    r = cni(
        "ptp", "ADD", {"cniVersion": "1.0.0", "name": "x", "type": "ptp"}, netns=f"/run/netns/{ct}"
    )
    assert r.code == 1 and r.out is not None and r.out["code"] == 7
