"""``kanal graph`` (issue 15): the DOT of a known topology — a bridge network with a
published port and an alias, a macvlan network on a parent link — parsed back and
checked node by node and edge by edge; drift the test makes in the kernel behind
kanald's back is drawn red; the output formats and their errors."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.private_kanald import PrivateNetnsDaemon, private_daemon
from tests.helpers import nsexec, unique

Dot = tuple[dict[str, dict[str, str]], set[frozenset[str]], dict[frozenset[str], dict[str, str]]]

_ID = r'(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_.]+))'
_ATTRS = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s\]]+))')
_NODE = re.compile(rf"^\s*{_ID}\s*\[(.*)\]$")
_EDGE = re.compile(rf"^\s*{_ID} -- {_ID}(?:\s*\[(.*)\])?$")


def parse_dot(text: str) -> Dot:
    """Nodes (id → attributes, labels with real newlines), undirected edges and their
    attributes, from the DOT the graphviz package writes (one statement a line)."""
    nodes: dict[str, dict[str, str]] = {}
    edges: set[frozenset[str]] = set()
    edge_attrs: dict[frozenset[str], dict[str, str]] = {}

    def attrs(s: str | None) -> dict[str, str]:
        out = {}
        for k, quoted, bare in _ATTRS.findall(s or ""):
            out[k] = quoted.replace('\\"', '"').replace("\\n", "\n") if quoted else bare
        return out

    for line in text.splitlines():
        if m := _EDGE.match(line):
            a, b = m.group(1) or m.group(2), m.group(3) or m.group(4)
            key = frozenset((a, b))
            edges.add(key)
            edge_attrs[key] = attrs(m.group(5))
        elif (m := _NODE.match(line)) and (m.group(1) or m.group(2)) not in (
            "graph",
            "node",
            "edge",
        ):
            nodes[m.group(1) or m.group(2)] = attrs(m.group(3))
    return nodes, edges, edge_attrs


@pytest.fixture
def gd(host_ns: str, tmp_path: Path) -> Iterator[PrivateNetnsDaemon]:
    yield from private_daemon(host_ns, tmp_path)


def graph(
    d: PrivateNetnsDaemon, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*d.cli("graph", *args)], capture_output=True, text=True, timeout=60, env=env
    )


def test_known_topology_and_drift(gd: PrivateNetnsDaemon) -> None:
    parent = unique("kgp", 15)
    nsexec(gd.host, "ip", "link", "add", parent, "type", "veth", "peer", "name", unique("kgq", 15))
    nsexec(gd.host, "ip", "link", "set", parent, "up")
    gd.kanal("create", "--subnet", "10.86.0.0/24", "gbr")
    gd.kanal("create", "-d", "macvlan", "-o", f"parent={parent}", "--subnet", "10.87.0.0/24", "gmv")
    gd.k(
        "run", "-d", "--name", "g1", "--network", "gbr", "--ip", "10.86.0.5", "--alias", "www",
        "-p", "127.0.0.1:18123:80", "--", "sleep", "300",
    )  # fmt: skip
    gd.k("run", "-d", "--name", "g2", "--network", "gmv", "--ip", "10.87.0.7", "--", "sleep", "300")
    net = {n: gd.call("GET", f"/networks/{n}") for n in ("gbr", "gmv")}
    [ep1] = [e for e in gd.call("GET", "/endpoints") if e["Network"] == "gbr"]

    p = graph(gd)
    assert p.returncode == 0, p.stderr
    nodes, edges, eattrs = parse_dot(p.stdout)
    gbr, gmv = f"net_{net['gbr']['Id'][:12]}", f"net_{net['gmv']['Id'][:12]}"
    assert nodes[gbr]["label"].splitlines()[:3] == [
        "network gbr",
        "bridge (local)",
        "10.86.0.0/24 gw 10.86.0.1",
    ]
    assert nodes[gmv]["label"].splitlines()[:2] == ["network gmv", "macvlan (local)"]
    bridges = [n for n, a in nodes.items() if a["label"].startswith("bridge ")]
    assert len(bridges) >= 1
    bridge = next(b for b in bridges if frozenset((gbr, b)) in edges)
    assert "10.86.0.1/24" in nodes[bridge]["label"]
    sb1 = next(n for n, a in nodes.items() if n.startswith("if_") and "10.86.0.5/24" in a["label"])
    lines = nodes[sb1]["label"].splitlines()
    assert (
        lines[0] == "eth0" and "publish 127.0.0.1:18123->80/tcp" in lines and "alias www" in lines
    )
    veth = next(n for n in nodes if n.startswith("dev_") and frozenset((sb1, n)) in edges)
    assert eattrs[frozenset((sb1, veth))]["label"] == "veth pair"
    assert frozenset((veth, bridge)) in edges
    sb2 = next(n for n, a in nodes.items() if n.startswith("if_") and "10.87.0.7/24" in a["label"])
    assert frozenset((sb2, f"dev_{parent}")) in edges
    assert eattrs[frozenset((sb2, f"dev_{parent}"))]["label"] == "macvlan"
    assert frozenset((gmv, f"dev_{parent}")) in edges
    # a known topology without drift: nothing red, no note
    assert not [n for n, a in nodes.items() if a.get("color") == "red"], p.stdout
    assert "drift" not in nodes
    assert ep1["Name"] == "g1"

    # --network: that network and its sandboxes only
    only, _, _ = parse_dot(graph(gd, "--network", "gmv").stdout)
    assert gmv in only and gbr not in only and sb1 not in only and sb2 in only

    # drift behind kanald's back: a foreign port on kanal's bridge, the macvlan's
    # parent gone (and with it the sandbox's macvlan)
    stray = unique("kgs", 15)
    bridge_name = nodes[bridge]["label"].splitlines()[0].split()[1]
    nsexec(gd.host, "ip", "link", "add", stray, "type", "veth", "peer", "name", unique("kgt", 15))
    nsexec(gd.host, "ip", "link", "set", stray, "master", bridge_name)
    nsexec(gd.host, "ip", "link", "del", parent)
    nodes, edges, _ = parse_dot(graph(gd).stdout)
    assert (
        nodes[f"dev_{stray}"]["color"] == "red"
        and "(kernel only)" in nodes[f"dev_{stray}"]["label"]
    )
    assert frozenset((bridge, f"dev_{stray}")) in edges
    assert (
        nodes[f"dev_{parent}"]["color"] == "red" and "(missing)" in nodes[f"dev_{parent}"]["label"]
    )
    assert nodes[sb2]["color"] == "red" and "(missing)" in nodes[sb2]["label"]
    note = nodes["drift"]["label"]
    assert nodes["drift"]["color"] == "red"
    assert f"port {stray} of {bridge_name} belongs to no endpoint" in note
    assert f"macvlan parent {parent} of network gmv is missing" in note
    assert nodes[sb1].get("color") != "red"  # the rest is as it was


def test_output_files_and_their_errors(gd: PrivateNetnsDaemon, tmp_path: Path) -> None:
    gd.kanal("create", "--subnet", "10.88.0.0/24", "gout")
    dot = tmp_path / "t.dot"
    assert graph(gd, "-o", str(dot)).returncode == 0
    assert dot.read_text() == graph(gd).stdout and dot.read_text().startswith("graph kanal {")
    svg, png = tmp_path / "t.svg", tmp_path / "t.png"
    assert graph(gd, "-o", str(svg)).returncode == 0
    assert b"<svg" in svg.read_bytes() and b"network gout" in svg.read_bytes()
    assert graph(gd, "-o", str(png)).returncode == 0
    assert png.read_bytes().startswith(b"\x89PNG\r\n")
    # no dot program: rendering says so in one line; DOT still works
    env = {**os.environ, "PATH": str(tmp_path / "empty")}
    svg.unlink()
    p = graph(gd, "-o", str(svg), env=env)
    assert p.returncode == 1 and not svg.exists()
    assert p.stderr.count("\n") == 1 and "needs Graphviz's dot program" in p.stderr
    assert graph(gd, "-o", str(tmp_path / "u.dot"), env=env).returncode == 0
    for bad, msg in (
        (("-o", str(tmp_path / "t.gif")), "want FILE.dot, FILE.svg or FILE.png"),
        (("-o", str(tmp_path / "noext")), "want FILE.dot"),
        (("--network", "nosuch"), "nosuch"),
    ):
        p = graph(gd, *bad)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and msg in p.stderr, p.stderr
    assert not (tmp_path / "t.gif").exists()
