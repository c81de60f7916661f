"""kanal and Go's host-local on one data directory: each reads what the other wrote.

The Go plugin (/usr/lib/cni/host-local) runs as a subprocess; it needs no root and
never opens CNI_NETNS. kanal runs in-process through the dispatcher, with its
process-wide cached store, so these tests also prove the cache notices Go's writes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from kanal.ipam.disk import forget_stores
from kanal.ipam.diskfiles import INDEX_NAME
from kanal.plugins.host_local import PLUGIN
from kanal.skel.dispatcher import Dispatcher

GO = "/usr/lib/cni/host-local"

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(not os.access(GO, os.X_OK), reason=f"{GO} not installed"),
]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    forget_stores()
    yield
    forget_stores()


def make_conf(tmp_path: Path, ranges: list[Any] | None = None, **ipam: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "shared",
        "type": "host-local",
        "ipam": {
            "type": "host-local",
            "dataDir": str(tmp_path / "data"),
            "ranges": ranges or [[{"subnet": "10.7.0.0/28"}]],
            **ipam,
        },
    }


def env(command: str, cid: str, ifname: str = "eth0", args: str = "") -> dict[str, str]:
    e = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/usr/lib/cni",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    }
    if command in ("ADD", "CHECK"):
        e["CNI_NETNS"] = "/var/run/netns/kanal-test-unused"
    if args:
        e["CNI_ARGS"] = args
    return e


def go(conf: dict[str, Any], command: str, cid: str, **kw: Any) -> tuple[int, Any]:
    p = subprocess.run(
        [GO], input=json.dumps(conf).encode(), env=env(command, cid, **kw), capture_output=True
    )
    out = p.stdout.decode().strip()
    return p.returncode, (json.loads(out) if out else None)


def kanal(conf: dict[str, Any], command: str, cid: str, **kw: Any) -> tuple[int, Any]:
    out = io.StringIO()
    err = io.StringIO()
    rc = Dispatcher(env(command, cid, **kw), io.BytesIO(json.dumps(conf).encode()), out, err).run(
        PLUGIN
    )
    text = out.getvalue().strip()
    return rc, (json.loads(text) if text else None)


def addr(result: Any) -> str:
    return str(result["ips"][0]["address"])


def files(tmp_path: Path) -> dict[str, bytes]:
    d = tmp_path / "data" / "shared"
    return {n: (d / n).read_bytes() for n in sorted(os.listdir(d)) if n not in ("lock", INDEX_NAME)}


def test_go_add_then_kanal_del(tmp_path: Path) -> None:
    c = make_conf(tmp_path)
    rc, res = go(c, "ADD", "g1")
    assert rc == 0, res
    assert addr(res) == "10.7.0.2/28"
    assert kanal(c, "CHECK", "g1")[0] == 0
    assert kanal(c, "DEL", "g1") == (0, None)
    assert files(tmp_path) == {"last_reserved_ip.0": b"10.7.0.2"}
    # round robin continues after Go's last reservation
    rc, res = kanal(c, "ADD", "k1")
    assert addr(res) == "10.7.0.3/28"


def test_kanal_add_then_go_del(tmp_path: Path) -> None:
    c = make_conf(tmp_path)
    rc, res = kanal(c, "ADD", "k1")
    assert rc == 0 and addr(res) == "10.7.0.2/28"
    assert files(tmp_path)["10.7.0.2"] == b"k1\r\neth0"
    assert go(c, "CHECK", "k1") == (0, None)
    rc, res = go(c, "CHECK", "nobody")
    assert rc != 0 and res["msg"] == "host-local: Failed to find address added by container nobody"
    assert go(c, "DEL", "k1") == (0, None)
    assert "10.7.0.2" not in files(tmp_path)
    rc, res = go(c, "ADD", "g1")
    assert addr(res) == "10.7.0.3/28"  # Go continues kanal's round robin


def test_interleaved_adds_are_unique_and_round_robin(tmp_path: Path) -> None:
    c = make_conf(tmp_path)
    got = []
    for i in range(12):
        run = go if i % 2 else kanal
        rc, res = run(c, "ADD", f"c{i}")
        assert rc == 0, res
        got.append(addr(res))
    assert got == [f"10.7.0.{i}/28" for i in range(2, 14)]
    # both see the range as full, with the same message
    kanal(c, "ADD", "c12")
    rc_go, err_go = go(c, "ADD", "x")
    rc_k, err_k = kanal(c, "ADD", "x")
    assert rc_go != 0 and rc_k != 0
    assert (
        err_k["msg"]
        == err_go["msg"]
        == (
            "failed to allocate for range 0: no IP addresses available in range set: "
            "10.7.0.1-10.7.0.14"
        )
    )
    # free some through each plugin, then both allocate around the ring
    assert go(c, "DEL", "c0")[0] == 0
    assert kanal(c, "DEL", "c5")[0] == 0
    assert addr(kanal(c, "ADD", "n1")[1]) == "10.7.0.2/28"
    assert addr(go(c, "ADD", "n2")[1]) == "10.7.0.7/28"


def test_duplicate_detected_across_implementations(tmp_path: Path) -> None:
    c = make_conf(tmp_path)
    kanal(c, "ADD", "c1")
    rc, res = go(c, "ADD", "c1")
    assert rc != 0
    go_msg = res["msg"]
    go(c, "ADD", "c2")
    rc, res = kanal(c, "ADD", "c2")
    assert rc != 0
    assert go_msg == (
        "failed to allocate for range 0: 10.7.0.2 has been allocated to c1, "
        "duplicate allocation is not allowed"
    )
    assert res["msg"] == go_msg.replace("10.7.0.2", "10.7.0.3").replace("c1", "c2")


def test_requested_ip_errors_match_go(tmp_path: Path) -> None:
    c = make_conf(tmp_path)
    go(c, "ADD", "g1", args="IP=10.7.0.9")
    for run in (go, kanal):
        rc, res = run(c, "ADD", "x", args="IP=10.7.0.9")
        assert rc != 0
        assert res["msg"] == (
            "failed to allocate for range 0: requested IP address 10.7.0.9 is not "
            "available in range set 10.7.0.1-10.7.0.14"
        )
        rc, res = run(c, "ADD", "y", args="IP=10.7.0.1")
        assert (
            res["msg"]
            == "failed to allocate for range 0: requested ip 10.7.0.1 is subnet's gateway"
        )


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0"])
def test_results_match_go(tmp_path: Path, version: str) -> None:
    rc_file = tmp_path / "resolv.conf"
    rc_file.write_text(
        "nameserver 10.0.0.53\nsearch a.example\noptions ndots:2\ndomain d.example\n"
    )
    ranges = [[{"subnet": "10.7.0.0/28", "gateway": "10.7.0.14"}]]
    if version != "0.2.0":
        ranges.append([{"subnet": "2001:db8::/120", "rangeStart": "2001:db8::10"}])
    results = []
    for i, run in enumerate((go, kanal)):
        c = make_conf(
            tmp_path / str(i),
            ranges,
            routes=[{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.7.0.14"}],
            resolvConf=str(rc_file),
        )
        c["cniVersion"] = version
        rc, res = run(c, "ADD", "c1")
        assert rc == 0, res
        results.append(res)
    assert results[1] == results[0]


def test_kanal_gc_releases_go_reservations(tmp_path: Path) -> None:
    c = make_conf(tmp_path)
    for i in range(3):
        go(c, "ADD", f"g{i}")
    gc_conf = dict(c, cniVersion="1.1.0")
    gc_conf["cni.dev/valid-attachments"] = [{"containerID": "g1", "ifname": "eth0"}]
    assert kanal(gc_conf, "GC", "") == (0, None)
    assert sorted(files(tmp_path)) == ["10.7.0.3", "last_reserved_ip.0"]


def test_go_and_kanal_concurrently(tmp_path: Path) -> None:
    c = make_conf(tmp_path, [[{"subnet": "10.8.0.0/24"}]])
    results: dict[str, str] = {}
    errors: list[Any] = []
    lock = threading.Lock()

    def loop(run: Any, prefix: str, n: int) -> None:
        for i in range(n):
            cid = f"{prefix}-{i}"
            rc, res = run(c, "ADD", cid)
            with lock:
                if rc:
                    errors.append(res)
                else:
                    results[cid] = addr(res)

    threads = [threading.Thread(target=loop, args=(go, f"g{t}", 15)) for t in range(4)]
    threads += [threading.Thread(target=loop, args=(kanal, f"k{t}", 30)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 120
    assert len(set(results.values())) == 120
    on_disk = files(tmp_path)
    for cid, a in results.items():
        assert on_disk[a.split("/")[0]] == f"{cid}\r\neth0".encode()
    for i, cid in enumerate(sorted(results)):
        rc, _ = (go if i % 2 else kanal)(c, "DEL", cid)
        assert rc == 0
    assert sorted(files(tmp_path)) == ["last_reserved_ip.0"]
