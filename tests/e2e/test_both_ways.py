"""Same answer either way: every case run through kanald and standalone.

The installed plugin executables are run as a runtime runs them (a process with the
runtime's environment, stdin and working directory), once with kanald serving them
and once with no daemon (``KANAL_SOCKET`` naming no socket, so the executable runs the
plugin itself). Exit code and stdout must be the same (results after normalising
what is random), and so must the files made: a relative path is the runtime's, in
kanald as in a plugin process. The kanald side must really have been served.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kanal.fastpath.install import install_plugins
from kanal.spec.args import MAX_CONTAINER_ID_LEN
from tests.helpers import ip_json, kanald_in


@dataclass
class World:
    host: str
    bindir: Path
    tmp: Path
    log: Path
    kanald_cwd: Path

    def run(
        self,
        plugin: str,
        env: dict[str, str],
        stdin: bytes,
        *,
        standalone: bool,
        cwd: Path | None = None,
    ) -> tuple[int, bytes]:
        full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_PATH": str(self.bindir), **env}
        if standalone:
            full["KANAL_SOCKET"] = str(self.tmp / "no-daemon.sock")
        served = self.log.read_text().count("served")
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.host}", str(self.bindir / plugin)],
            input=stdin,
            env=full,
            cwd=cwd or self.tmp,
            capture_output=True,
            timeout=60,
        )
        if not standalone and env.get("CNI_COMMAND") != "VERSION":
            assert self.log.read_text().count("served") > served, "kanald did not serve it"
        return p.returncode, p.stdout

    def both(
        self, plugin: str, env: dict[str, str], stdin: bytes, *, cwd: Path | None = None
    ) -> tuple[int, bytes]:
        """Run both ways; the answers must be byte for byte the same."""
        daemon = self.run(plugin, env, stdin, standalone=False, cwd=cwd)
        alone = self.run(plugin, env, stdin, standalone=True, cwd=cwd)
        assert daemon == alone
        return daemon


@pytest.fixture
def world(host_ns: str, tmp_path: Path) -> Iterator[World]:
    sock = tmp_path / "kanald.sock"
    bindir = tmp_path / "bin"
    install_plugins(str(bindir), socket_path=str(sock))
    log = tmp_path / "kanald.log"
    kanald_cwd = tmp_path / "kanald-cwd"
    kanald_cwd.mkdir()
    with kanald_in(host_ns, sock, log, cwd=kanald_cwd):
        yield World(host_ns, bindir, tmp_path, log, kanald_cwd)


def env(cmd: str, cid: str = "bw1", netns: str = "/run/netns/none", **kw: str) -> dict[str, str]:
    return {"CNI_COMMAND": cmd, "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
            **kw}  # fmt: skip


BRIDGE: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "bothways",
    "type": "bridge",
    "bridge": "kbw0",
    "isGateway": True,
    "ipam": {"type": "host-local", "subnet": "10.69.0.0/24", "dataDir": "state/ipam"},
}


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_relative_data_dir_is_the_runtimes(world: World) -> None:
    """host-local's relative dataDir lands under the runtime's working directory."""
    conf = json.dumps({**BRIDGE, "type": "host-local"}).encode()
    outs = []
    for standalone in (False, True):
        cwd = world.tmp / ("alone" if standalone else "daemon")
        cwd.mkdir()
        code, out = world.run("host-local", env("ADD"), conf, standalone=standalone, cwd=cwd)
        assert code == 0, out
        outs.append(out)
        assert "state/ipam/bothways/10.69.0.2" in files(cwd)
        code, out = world.run("host-local", env("DEL"), conf, standalone=standalone, cwd=cwd)
        assert code == 0, out
        assert [f for f in files(cwd) if f.split("/")[-1][0].isdigit()] == []
    assert outs[0] == outs[1]
    assert files(world.kanald_cwd) == []  # nothing under kanald's own directory


def test_relative_netns_is_the_runtimes(world: World, make_netns: Any) -> None:
    results = []
    for standalone in (False, True):
        ct = make_netns("kbc")
        conf = json.dumps({**BRIDGE, "ipam": {**BRIDGE["ipam"], "dataDir": str(world.tmp)}})
        code, out = world.run(
            "bridge", env("ADD", netns=ct), conf.encode(), standalone=standalone,
            cwd=Path("/run/netns"),
        )  # fmt: skip
        assert code == 0, out
        res = json.loads(out)
        assert res["interfaces"][2]["sandbox"] == ct  # as the runtime gave it
        assert [x["ifname"] for x in ip_json(ct, "link")] == ["lo", "eth0"]
        for itf in res["interfaces"]:
            itf.pop("mac", None)
            itf.pop("sandbox", None)
            if itf["name"].startswith("veth"):
                itf["name"] = "veth"
        results.append(res)
        code, out = world.run(
            "bridge", env("DEL", netns=ct), conf.encode(), standalone=standalone,
            cwd=Path("/run/netns"),
        )  # fmt: skip
        assert code == 0, out
    results[1]["ips"][0]["address"] = results[0]["ips"][0]["address"]  # (.2 then .3)
    assert results[0] == results[1]


LONG_ID = "c" * (MAX_CONTAINER_ID_LEN + 1)


CASES = [
    ("too-large", "bridge", env("ADD"), b" " * (2 << 20) + json.dumps(BRIDGE).encode()),
    ("not-json", "bridge", env("ADD"), b"{nope"),
    ("not-an-object", "portmap", env("ADD"), b"[1, 2]"),
    ("unknown-version", "bridge", env("ADD"), json.dumps({**BRIDGE, "cniVersion": "9.9.9"})),
    ("name-type", "portmap", env("DEL"), b'{"cniVersion": "1.0.0", "name": 5, "type": "x"}'),
    ("no-name", "portmap", env("DEL"), b'{"cniVersion": "1.0.0", "type": "portmap"}'),
    ("go-type-error", "bridge", env("ADD"), json.dumps({**BRIDGE, "mtu": 1.5})),
    ("bad-ifname", "bridge", {**env("ADD"), "CNI_IFNAME": "a/b"}, json.dumps(BRIDGE)),
    ("id-too-long-add", "bridge", env("ADD", cid=LONG_ID), json.dumps(BRIDGE)),
    ("id-too-long-del", "bridge", env("DEL", cid=LONG_ID), json.dumps(BRIDGE)),
    ("missing-netns", "bridge", env("ADD", netns="/run/netns/kbw-absent"),
     json.dumps(BRIDGE)),
    ("version", "bridge", {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}'),
]  # fmt: skip


@pytest.mark.parametrize(("name", "plugin", "cmd_env", "stdin"), CASES, ids=[c[0] for c in CASES])
def test_same_answer_either_way(
    world: World, name: str, plugin: str, cmd_env: dict[str, str], stdin: bytes | str
) -> None:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    code, out = world.both(plugin, cmd_env, data)
    if name != "version":
        assert code == 1 and json.loads(out)["code"] in (1, 3, 4, 6, 7, 999), out
    if name == "too-large":
        assert json.loads(out)["code"] == 6  # not 11 "kanald closed the connection"
    if name.startswith("id-too-long"):
        assert json.loads(out)["code"] == 4
    assert files(world.tmp / "state") == [] if (world.tmp / "state").exists() else True


def test_longest_id_adds_and_deletes_either_way(world: World, make_netns: Any) -> None:
    """The longest ID ADD accepts is one DEL accepts (DEL used to fail on it, code 7)."""
    cid = "d" * MAX_CONTAINER_ID_LEN
    chain: list[dict[str, Any]] = [
        {**BRIDGE, "ipMasq": True, "ipam": {**BRIDGE["ipam"], "dataDir": str(world.tmp)}},
        {"cniVersion": "1.0.0", "name": "bothways", "type": "portmap",
         "runtimeConfig": {"portMappings": [{"hostPort": 18181, "containerPort": 80}]}},
        {"cniVersion": "1.0.0", "name": "bothways", "type": "firewall"},
        {"cniVersion": "1.0.0", "name": "bothways", "type": "tuning", "mtu": 1400,
         "dataDir": str(world.tmp / "tuning")},
    ]  # fmt: skip
    for standalone in (False, True):
        ct = make_netns("kbl")
        prev = None
        for conf in chain:
            c = dict(conf, prevResult=prev) if prev is not None else conf
            code, out = world.run(
                conf["type"], env("ADD", cid=cid, netns=f"/run/netns/{ct}"),
                json.dumps(c).encode(), standalone=standalone,
            )  # fmt: skip
            assert code == 0, (conf["type"], out)
            prev = json.loads(out)
        for conf in reversed(chain):
            for netns in (f"/run/netns/{ct}", ""):
                code, out = world.run(
                    conf["type"], env("DEL", cid=cid, netns=netns),
                    json.dumps({**conf, "prevResult": prev}).encode(), standalone=standalone,
                )  # fmt: skip
                assert code == 0, (conf["type"], out)
        assert not (world.tmp / "tuning").exists() or list((world.tmp / "tuning").iterdir()) == []


def test_del_succeeds_for_what_add_refused(world: World) -> None:
    """A DEL with the capabilities that made ADD fail (containerd's teardown)."""
    bad = {"cniVersion": "1.0.0", "name": "bothways", "type": "portmap",
           "runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": "x"}]},
           "backend": "nonsense", "snat": "maybe"}  # fmt: skip
    code, out = world.both("portmap", env("ADD"), json.dumps(bad).encode())
    assert code == 1, out
    code, out = world.both("portmap", env("DEL"), json.dumps(bad).encode())
    assert (code, out) == (0, b"")
