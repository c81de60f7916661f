"""A standalone DEL leaves the veth's unregistering to a detached child process.

What must hold (kanal.netlink.reaper): when DEL returns, the container's interface
name is free (a new ADD may take it at once), the host end is off the bridge, and
the child is neither in the runtime's process group nor holding its pipes (the
runtime's read of stdout ends with the plugin); shortly after, both ends are gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from kanal.fastpath.install import install_plugins
from tests.helpers import ip_json, unique


def _links(ns: str) -> list[dict[str, Any]]:
    return [ln for ln in ip_json(ns, "link", "show") if ln["ifname"] != "lo"]


def _exec(host: str, bindir: Path, cmd: str, netns: str, conf: bytes) -> dict[str, Any] | None:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": "det1",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(bindir),
    }
    # Popen + communicate: the call returns only once every writer of the plugin's
    # stdout and stderr has closed them, as a Go runtime's exec does.
    p = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{host}", str(bindir / "bridge")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    out, err = p.communicate(conf, timeout=30)
    assert p.returncode == 0, (cmd, out, err)
    return json.loads(out) if out.strip() else None


def test_del_returns_with_the_name_free_and_the_pair_goes_soon(
    tmp_path: Path, host_ns: str, make_netns: Any
) -> None:
    ct = make_netns("kdd")
    bindir = tmp_path / "bin"
    install_plugins(str(bindir), socket_path=str(tmp_path / "nobody.sock"))
    br = unique("kdb", 15)
    conf = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "det",
            "type": "bridge",
            "bridge": br,
            "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.79.0.0/24", "dataDir": str(tmp_path)},
        }
    ).encode()
    netns = f"/run/netns/{ct}"
    for _ in range(3):  # ADD, DEL, ADD again at once with the same name, ...
        result = _exec(host_ns, bindir, "ADD", netns, conf)
        assert result is not None
        host_end = result["interfaces"][1]["name"]
        assert [ln["ifname"] for ln in _links(ct)] == ["eth0"]
        assert _exec(host_ns, bindir, "DEL", netns, conf) is None
        assert "eth0" not in [ln["ifname"] for ln in _links(ct)]
        ports = [ln["ifname"] for ln in _links(host_ns) if ln.get("master") == br]
        assert host_end not in ports
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _links(ct) and [ln["ifname"] for ln in _links(host_ns)] == [br]:
            break
        time.sleep(0.05)
    assert _links(ct) == []
    assert [ln["ifname"] for ln in _links(host_ns)] == [br]
    # No child is left behind either.
    kids = subprocess.run(["pgrep", "-f", str(bindir / "bridge")], capture_output=True)
    assert kids.stdout.strip() == b"", kids.stdout


def test_in_process_del_is_still_synchronous(tmp_path: Path, host_ns: str, make_netns: Any) -> None:
    """kanald and the tests' in-process dispatcher (process_exits False) delete the
    link before DEL returns: nothing is left for a child."""
    from tests.netns.cni import PluginRunner

    ct = make_netns("kdd")
    cni = PluginRunner(host_ns, tmp_path)
    conf = {
        "cniVersion": "1.0.0",
        "name": "det",
        "type": "bridge",
        "bridge": unique("kdb", 15),
        "ipam": {"type": "host-local", "subnet": "10.79.1.0/24", "dataDir": str(tmp_path)},
    }
    assert cni("bridge", "ADD", conf, netns=f"/run/netns/{ct}").code == 0
    assert cni("bridge", "DEL", conf, netns=f"/run/netns/{ct}").code == 0
    assert _links(ct) == []
    assert os.path.exists(f"/run/netns/{ct}")


def test_a_del_killed_before_its_child_is_finished_by_the_next_del(
    tmp_path: Path, host_ns: str, make_netns: Any
) -> None:
    """kill -9 between making the link inert and forking: the container end stays,
    renamed and tagged, the host end tagged. The runtime's retried DEL (its name is
    gone) removes what that DEL left, and only that."""
    from kanal.netlink import reaper
    from kanal.netlink.ns import open_netns, run_in_netns
    from tests.helpers import nsexec

    ct = make_netns("kdd")
    bindir = tmp_path / "bin"
    install_plugins(str(bindir), socket_path=str(tmp_path / "nobody.sock"))
    conf = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "det",
            "type": "bridge",
            "bridge": unique("kdb", 15),
            "ipam": {"type": "host-local", "subnet": "10.79.2.0/24", "dataDir": str(tmp_path)},
        }
    ).encode()
    netns = f"/run/netns/{ct}"
    assert _exec(host_ns, bindir, "ADD", netns, conf) is not None
    # Someone else's link in the container, with a name like ours but not our tag.
    nsexec(ct, "ip", "link", "add", "kreap0123456789", "type", "veth", "peer", "name", "other0")
    fd = open_netns(netns)
    try:
        run_in_netns(fd, lambda: reaper._inert_container_end("eth0", None, rename=True))
    finally:
        os.close(fd)
    names = {ln["ifname"] for ln in _links(ct)}
    assert "eth0" not in names and len([n for n in names if n.startswith("kreap")]) == 2
    assert _exec(host_ns, bindir, "DEL", netns, conf) is None
    assert {ln["ifname"] for ln in _links(ct)} == {"kreap0123456789", "other0"}
