"""host-local logic: config loading as Go does it, and ADD/DEL/CHECK/GC/STATUS on disk."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from kanal.errors import (
    Conflict,
    InvalidConfig,
    InvalidEnv,
    IOFailure,
    NotFound,
    TeardownError,
    Unavailable,
)
from kanal.ipam import hostlocal
from kanal.ipam.disk import DiskStore
from kanal.ipam.diskfiles import INDEX_NAME
from kanal.ipam.memory import MemoryStore


def conf(tmp_path: Path, ipam: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "net1",
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "dataDir": str(tmp_path / "data"),
            "ranges": [[{"subnet": "10.1.0.0/29"}]],
        },
    }
    if ipam is not None:
        base["ipam"] = {"type": "host-local", "dataDir": str(tmp_path / "data"), **ipam}
    base.update(top)
    return base


def store_of(c: hostlocal.HostLocalConf) -> DiskStore:
    return DiskStore(os.path.join(c.data_dir, c.name))


# -- load_conf -------------------------------------------------------------------


def test_load_defaults(tmp_path: Path) -> None:
    raw = conf(tmp_path)
    del raw["ipam"]["dataDir"]
    c = hostlocal.load_conf(raw)
    assert c.data_dir == "/var/lib/cni/networks"
    assert c.name == "net1"
    assert len(c.ranges) == 1
    assert c.routes == () and c.resolv_conf == "" and c.requested == ()


def test_legacy_and_runtime_ranges_are_prepended_in_go_order(tmp_path: Path) -> None:
    raw = conf(
        tmp_path,
        {
            "subnet": "10.2.0.0/24",
            "gateway": "10.2.0.254",
            "ranges": [[{"subnet": "10.3.0.0/24"}], [{"subnet": "2001:db8::/64"}]],
        },
        runtimeConfig={"ipRanges": [[{"subnet": "10.4.0.0/24"}]]},
    )
    c = hostlocal.load_conf(raw)
    assert [str(rs.ranges[0].subnet) for rs in c.ranges] == [
        "10.4.0.0/24",
        "10.2.0.0/24",
        "10.3.0.0/24",
        "2001:db8::/64",
    ]
    assert str(c.ranges[1].ranges[0].gateway) == "10.2.0.254"


def test_requested_ips_from_all_three_sources(tmp_path: Path) -> None:
    raw = conf(
        tmp_path,
        args={"cni": {"ips": ["10.1.0.3", "2001:db8::5/64"]}},
        runtimeConfig={"ips": ["10.1.0.4/29"]},
    )
    c = hostlocal.load_conf(raw, "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.0.2")
    assert [str(ip) for ip in c.requested] == ["10.1.0.2", "10.1.0.3", "2001:db8::5", "10.1.0.4"]


def test_routes_and_resolvconf_keys(tmp_path: Path) -> None:
    raw = conf(
        tmp_path,
        {
            "ranges": [[{"subnet": "10.1.0.0/29"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.1"}],
            "resolvConf": "/x/resolv.conf",
        },
    )
    c = hostlocal.load_conf(raw)
    assert [(str(r.dst), str(r.gw)) for r in c.routes] == [
        ("0.0.0.0/0", "None"),
        ("192.168.0.0/16", "10.1.0.1"),
    ]
    assert c.resolv_conf == "/x/resolv.conf"


@pytest.mark.parametrize(
    ("mutate", "msg"),
    [
        (lambda c: c.pop("ipam"), "IPAM config missing 'ipam' key"),
        (lambda c: c["ipam"].pop("ranges"), "no IP ranges specified"),
        (lambda c: c["ipam"].update(ranges=[]), "no IP ranges specified"),
        (
            lambda c: c["ipam"].update(ranges=[[{"subnet": "10.0.0.0/31"}]]),
            "invalid range set 0: Network 10.0.0.0/31 too small to allocate from",
        ),
        (
            lambda c: c["ipam"].update(
                ranges=[[{"subnet": "10.0.0.0/24", "rangeStart": "10.9.0.1"}]]
            ),
            "invalid range set 0: RangeStart 10.9.0.1 not in network 10.0.0.0/24",
        ),
        (
            lambda c: c["ipam"].update(ranges=[[{"subnet": "10.0.0.0/24"}], []]),
            "invalid range set 1: empty range set",
        ),
        (
            lambda c: c["ipam"].update(
                ranges=[[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/16"}]]
            ),
            "range set 0 overlaps with 1",
        ),
        (
            lambda c: c["ipam"].update(ranges=[[{"subnet": "nope"}]]),
            "invalid CIDR address: nope",
        ),
        (lambda c: c.update(name="a/b"), "invalid characters found in network name"),
        (lambda c: c.update(name=".."), "invalid characters found in network name"),
        (lambda c: c.update(name=""), "missing network name"),
        (
            lambda c: c["ipam"].update(dataDir=5),
            "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.dataDir "
            "of type string",
        ),
        (lambda c: c["ipam"].update(routes=[{"dst": "x"}]), "invalid CIDR address: x"),
        (
            lambda c: c.update(runtimeConfig={"ips": ["bogus"]}),
            "invalid IP address bogus",
        ),
    ],
)
def test_invalid_config(tmp_path: Path, mutate: Any, msg: str) -> None:
    raw = conf(tmp_path)
    mutate(raw)
    with pytest.raises(InvalidConfig) as ei:
        hostlocal.load_conf(raw)
    assert str(ei.value).startswith(msg)
    assert ei.value.code == 7


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_old_versions_allow_one_address_per_family(tmp_path: Path, version: str) -> None:
    raw = conf(
        tmp_path,
        {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]},
        cniVersion=version,
    )
    with pytest.raises(InvalidConfig) as ei:
        hostlocal.load_conf(raw)
    assert ei.value.msg == f"CNI version {version} does not support more than 1 address per family"
    raw["ipam"]["ranges"][1] = [{"subnet": "2001:db8::/64"}]
    assert len(hostlocal.load_conf(raw).ranges) == 2


def test_cni_args_rules(tmp_path: Path) -> None:
    raw = conf(tmp_path)
    with pytest.raises(InvalidEnv, match="unknown args"):
        hostlocal.load_conf(raw, "K8S_POD_NAME=x")
    with pytest.raises(InvalidEnv) as ei:
        hostlocal.load_conf(raw, "IP=10.1.0.x")
    assert (
        ei.value.msg
        == 'ARGS: error parsing value of pair "IP=10.1.0.x": invalid IP address 10.1.0.x'
    )
    assert hostlocal.load_conf(raw, "IP=").requested == ()
    assert [str(i) for i in hostlocal.load_conf(raw, "IP=10.1.0.5/29").requested] == ["10.1.0.5"]


# -- ADD / DEL / CHECK ---------------------------------------------------------------


def test_add_result_shape_dual_stack(tmp_path: Path) -> None:
    c = hostlocal.load_conf(
        conf(
            tmp_path,
            {
                "ranges": [[{"subnet": "10.1.0.0/29"}], [{"subnet": "2001:db8::/120"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        )
    )
    r = hostlocal.add(c, store_of(c), "c1", "eth0")
    assert r.interfaces == []
    assert [(str(i.address), str(i.gateway), i.interface) for i in r.ips] == [
        ("10.1.0.2/29", "10.1.0.1", None),
        ("2001:db8::2/120", "2001:db8::1", None),
    ]
    assert [str(x.dst) for x in r.routes] == ["0.0.0.0/0"]
    assert r.dns.is_empty()
    d = tmp_path / "data" / "net1"
    assert (d / "10.1.0.2").read_bytes() == b"c1\r\neth0"
    assert (d / "2001:db8::2").read_bytes() == b"c1\r\neth0"
    assert (d / "last_reserved_ip.1").read_bytes() == b"2001:db8::2"


def test_resolv_conf_parsed_like_go(tmp_path: Path) -> None:
    rc = tmp_path / "resolv.conf"
    rc.write_text(
        "# comment\n; also\nnameserver 10.0.0.53\nnameserver  fd00::53 extra\n"
        "domain example.com\nsearch a.example b.example\nsearch c.example\n"
        "options ndots:5 edns0\nbogus\n  domain   other.example  \n"
    )
    dns = hostlocal.parse_resolv_conf(str(rc))
    assert dns.nameservers == ["10.0.0.53", "fd00::53"]
    assert dns.domain == "other.example"
    assert dns.search == ["a.example", "b.example", "c.example"]
    assert dns.options == ["ndots:5", "edns0"]
    c = hostlocal.load_conf(
        conf(tmp_path, {"ranges": [[{"subnet": "10.1.0.0/29"}]], "resolvConf": str(rc)})
    )
    assert hostlocal.add(c, store_of(c), "c1", "eth0").dns == dns


def test_missing_resolv_conf_fails_before_reserving(tmp_path: Path) -> None:
    c = hostlocal.load_conf(
        conf(tmp_path, {"ranges": [[{"subnet": "10.1.0.0/29"}]], "resolvConf": "/nonexistent/rc"})
    )
    with pytest.raises(IOFailure, match="open /nonexistent/rc: no such file or directory"):
        hostlocal.add(c, store_of(c), "c1", "eth0")
    assert not (tmp_path / "data").exists()


def test_requested_ip_and_leftover_request(tmp_path: Path) -> None:
    raw = conf(tmp_path, runtimeConfig={"ips": ["10.1.0.5"]})
    c = hostlocal.load_conf(raw)
    r = hostlocal.add(c, store_of(c), "c1", "eth0")
    assert str(r.ips[0].address) == "10.1.0.5/29"
    raw["runtimeConfig"] = {"ips": ["10.1.0.6", "10.9.9.9"]}
    c = hostlocal.load_conf(raw)
    with pytest.raises(Conflict) as ei:
        hostlocal.add(c, store_of(c), "c2", "eth0")
    assert ei.value.msg == "failed to allocate all requested IPs: 10.9.9.9"
    # rolled back: .6 is free again
    assert _listing(tmp_path / "data" / "net1") == [
        "10.1.0.5",
        "last_reserved_ip.0",
        "lock",
    ]


def test_failure_in_second_range_rolls_back_the_first(tmp_path: Path) -> None:
    raw = conf(tmp_path, {"ranges": [[{"subnet": "10.1.0.0/29"}], [{"subnet": "10.2.0.0/30"}]]})
    c = hostlocal.load_conf(raw)
    st = store_of(c)
    hostlocal.add(c, st, "c1", "eth0")
    with pytest.raises(Conflict) as ei:
        hostlocal.add(c, st, "c2", "eth0")
    assert ei.value.msg == (
        "failed to allocate for range 1: no IP addresses available in range set: 10.2.0.1-10.2.0.2"
    )
    with st.locked():
        assert not st.find_by_id("c2", "eth0")
        assert st.find_by_id("c1", "eth0")


def test_range_fills_up_with_go_error(tmp_path: Path) -> None:
    c = hostlocal.load_conf(conf(tmp_path))
    st = store_of(c)
    got = [str(hostlocal.add(c, st, f"c{i}", "eth0").ips[0].address) for i in range(5)]
    assert got == [f"10.1.0.{i}/29" for i in range(2, 7)]
    with pytest.raises(Conflict) as ei:
        hostlocal.add(c, st, "c9", "eth0")
    assert ei.value.msg == (
        "failed to allocate for range 0: no IP addresses available in range set: 10.1.0.1-10.1.0.6"
    )


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    mutations: list[Callable[[dict[str, Any]], Any]] = [
        lambda c: c["ipam"].update(ranges=[[{"subnet": "10.0.0.0/33"}]]),
        lambda c: c["ipam"].update(ranges=[[{"subnet": "10.0.0.0/24", "rangeStart": "10.1.0.1"}]]),
        lambda c: c.update(name="../escape"),
        lambda c: c["ipam"].pop("ranges"),
    ]
    for mutate in mutations:
        raw = conf(tmp_path)
        mutate(raw)
        with pytest.raises(InvalidConfig):
            hostlocal.load_conf(raw)
    assert not (tmp_path / "data").exists()
    assert _listing(tmp_path) == []


def test_delete_idempotent_and_missing_dir(tmp_path: Path) -> None:
    c = hostlocal.load_conf(conf(tmp_path))
    st = store_of(c)
    hostlocal.delete(st, "c1", "eth0")  # nothing there yet
    assert not (tmp_path / "data").exists()
    hostlocal.add(c, st, "c1", "eth0")
    hostlocal.delete(st, "c1", "eth0")
    hostlocal.delete(st, "c1", "eth0")
    assert _listing(tmp_path / "data" / "net1") == ["last_reserved_ip.0", "lock"]


def test_check(tmp_path: Path) -> None:
    c = hostlocal.load_conf(conf(tmp_path))
    st = store_of(c)
    with pytest.raises(NotFound) as ei:
        hostlocal.check(st, "c1", "eth0")
    assert ei.value.msg == "host-local: Failed to find address added by container c1"
    hostlocal.add(c, st, "c1", "eth0")
    hostlocal.check(st, "c1", "eth0")
    with pytest.raises(NotFound):
        hostlocal.check(st, "c1", "eth1")


def test_crash_leftover_then_del_and_gc_clean(tmp_path: Path) -> None:
    c = hostlocal.load_conf(conf(tmp_path))
    st = store_of(c)
    hostlocal.add(c, st, "c1", "eth0")
    d = tmp_path / "data" / "net1"
    # a Go plugin killed between O_EXCL create and write, and a stale kanal temp file
    (d / "10.1.0.3").write_bytes(b"")
    (d / ".kanal-tmp.ip.99.1").write_bytes(b"c2\r\neth0")
    old = time.time() - 60
    os.utime(d / "10.1.0.3", (old, old))
    os.utime(d / ".kanal-tmp.ip.99.1", (old, old))
    # ADD does not take the leftover's address
    r = hostlocal.add(c, st, "c2", "eth0")
    assert str(r.ips[0].address) == "10.1.0.4/29"
    hostlocal.delete(st, "c2", "eth0")
    assert _listing(d) == ["10.1.0.2", "last_reserved_ip.0", "lock"]
    (d / "10.1.0.5").write_bytes(b"")
    os.utime(d / "10.1.0.5", (old, old))
    hostlocal.gc(st, [("c1", "eth0")])
    assert _listing(d) == ["10.1.0.2", "last_reserved_ip.0", "lock"]
    assert (d / "10.1.0.2").read_bytes() == b"c1\r\neth0"
    for name in os.listdir(d):
        if name not in ("lock",):
            assert (d / name).read_bytes(), name


def test_fresh_empty_file_is_left_alone(tmp_path: Path) -> None:
    c = hostlocal.load_conf(conf(tmp_path))
    st = store_of(c)
    hostlocal.add(c, st, "c1", "eth0")
    d = tmp_path / "data" / "net1"
    (d / "10.1.0.6").write_bytes(b"")
    hostlocal.delete(st, "c1", "eth0")
    hostlocal.gc(st, [])
    assert (d / "10.1.0.6").exists()


# -- GC / STATUS ---------------------------------------------------------------------


def test_gc_releases_what_is_not_valid(tmp_path: Path) -> None:
    c = hostlocal.load_conf(conf(tmp_path, {"ranges": [[{"subnet": "10.1.0.0/28"}]]}))
    st = store_of(c)
    for cid, ifname in [("a", "eth0"), ("a", "eth1"), ("b", "eth0"), ("c", "eth0")]:
        hostlocal.add(c, st, cid, ifname)
    d = tmp_path / "data" / "net1"
    (d / "10.1.0.13").write_bytes(b"legacy1")
    (d / "10.1.0.14").write_bytes(b"legacy2")
    (d / "notes.txt").write_bytes(b"whatever")
    released = hostlocal.gc(st, [("a", "eth0"), ("c", "eth0"), ("legacy1", "eth7")])
    assert sorted(released) == ["10.1.0.14", "10.1.0.3", "10.1.0.4"]
    assert _listing(d) == [
        "10.1.0.13",
        "10.1.0.2",
        "10.1.0.5",
        "last_reserved_ip.0",
        "lock",
        "notes.txt",
    ]


def test_gc_without_list_releases_nothing_and_empty_list_everything(tmp_path: Path) -> None:
    c = hostlocal.load_conf(conf(tmp_path))
    st = store_of(c)
    hostlocal.add(c, st, "a", "eth0")
    assert hostlocal.gc(st, None) == []
    assert hostlocal.gc(st, []) == ["10.1.0.2"]
    assert hostlocal.gc(DiskStore(str(tmp_path / "nope")), []) == []


def test_gc_collects_errors_and_continues() -> None:
    class Flaky(MemoryStore):
        def release(self, name: str) -> None:
            if name == "10.0.0.2":
                raise IOFailure("cannot remove 10.0.0.2")
            super().release(name)

    st = Flaky()
    st.put_raw("10.0.0.2", "a\r\neth0")
    st.put_raw("10.0.0.3", "b\r\neth0")
    with pytest.raises(TeardownError) as ei:
        hostlocal.gc(st, [])
    assert "cannot remove 10.0.0.2" in str(ei.value)
    with st.locked():
        assert [r.name for r in st.reservations()] == ["10.0.0.2"]


def test_status(tmp_path: Path) -> None:
    hostlocal.status(str(tmp_path / "data"), "net1")  # would be created under tmp_path
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "file").write_text("")
    with pytest.raises(Unavailable) as ei:
        hostlocal.status(str(ro / "file"), "net1")  # parent is a file
    assert ei.value.code == 50
    if os.geteuid() != 0:
        ro.chmod(0o500)
        with pytest.raises(Unavailable):
            hostlocal.status(str(ro), "net1")


def test_data_dir_of(tmp_path: Path) -> None:
    assert hostlocal.data_dir_of({"name": "n", "ipam": {}}) == ("/var/lib/cni/networks", "n")
    with pytest.raises(InvalidConfig):
        hostlocal.data_dir_of({"name": "../n", "ipam": {}})
    with pytest.raises(InvalidConfig):
        hostlocal.data_dir_of({"name": "n"})


def test_requested_v4_mapped(tmp_path: Path) -> None:
    c = hostlocal.load_conf(conf(tmp_path, runtimeConfig={"ips": ["::ffff:10.1.0.4"]}))
    r = hostlocal.add(c, store_of(c), "c1", "eth0")
    assert r.ips[0].address.ip == ip_address("10.1.0.4")


def test_delete_passes_follow_go_per_range_set(tmp_path: Path) -> None:
    """Go releases once per range set: exact matches first, legacy ones on a later pass."""
    for passes, left in ((1, ["10.1.0.3"]), (2, [])):
        st = DiskStore(str(tmp_path / f"p{passes}"))
        with st.locked():
            st.reserve("c1", "eth0", ip_address("10.1.0.2"), "0")
        (tmp_path / f"p{passes}" / "10.1.0.3").write_bytes(b"c1")  # legacy, id only
        hostlocal.delete(st, "c1", "eth0", passes=passes)
        names = sorted(n for n in os.listdir(tmp_path / f"p{passes}") if n[0].isdigit())
        assert names == left


def _listing(d: Path) -> list[str]:
    """The directory's entries as Go's plugin would leave them (kanal's index file aside)."""
    return sorted(n for n in os.listdir(d) if n != INDEX_NAME)
