"""The kernel's own answers, as ``ip``/``bridge`` print them, for ``kanal explain``.

``kanal explain`` must say what the kernel would do, not what kanal meant it to do, so
it asks the kernel the way a user would: ``ip route get`` (the routing decision for
one packet, with the rule and table that made it), the bridge ports' flags and the
forwarding database. Each reader runs in the namespace at ``netns`` ("" = this one)
and returns the decoded JSON of iproute2, the evidence ``explain`` quotes.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

__all__ = ["RouteAnswer", "bridge_ports", "fdb", "neighbours", "route_get"]

RouteAnswer = tuple[dict[str, Any] | None, str]


def _run(netns: str, argv: list[str]) -> tuple[int, str, str]:
    cmd = (["nsenter", f"--net={netns}"] if netns else []) + argv
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    return p.returncode, p.stdout, p.stderr.strip()


def route_get(dst: str, *, netns: str = "", src: str = "", iif: str = "") -> RouteAnswer:
    """The route ``ip route get`` picks for a packet to ``dst`` (from ``src``,
    arriving on ``iif`` when given: a forwarded packet); (None, the kernel's error)
    when there is none."""
    argv = ["ip", "-j", "route", "get", dst]
    if src:
        argv += ["from", src]
    if iif:
        argv += ["iif", iif]
    code, out, err = _run(netns, argv)
    if code != 0:
        return None, err or "no route"
    routes = json.loads(out or "[]")
    if not routes:
        return None, "no route"
    route: dict[str, Any] = routes[0]
    if route.get("type") in ("unreachable", "blackhole", "prohibit"):
        return None, f"{route['type']} route to {dst}"
    return route, ""


def bridge_ports(bridge: str, netns: str = "") -> dict[str, dict[str, Any]]:
    """The ports of ``bridge``: name -> their bridge-port attributes (``isolated``...)."""
    code, out, _ = _run(netns, ["ip", "-j", "-d", "link", "show", "master", bridge])
    if code != 0:
        return {}
    ports: dict[str, dict[str, Any]] = {}
    for link in json.loads(out or "[]"):
        info = link.get("linkinfo", {}).get("info_slave_data", {})
        ports[link["ifname"]] = {**info, "kind": link.get("linkinfo", {}).get("info_kind", "")}
    return ports


def fdb(dev: str, netns: str = "") -> list[dict[str, Any]]:
    """The forwarding entries of ``dev`` (a VXLAN device: MAC -> remote VTEP)."""
    return _json_list(netns, ["bridge", "-j", "fdb", "show", "dev", dev])


def neighbours(dev: str, netns: str = "") -> list[dict[str, Any]]:
    """The neighbour entries of ``dev`` (IP -> MAC), as ``ip -j neigh show dev``."""
    return _json_list(netns, ["ip", "-j", "neigh", "show", "dev", dev])


def _json_list(netns: str, argv: list[str]) -> list[dict[str, Any]]:
    code, out, _ = _run(netns, argv)
    if code != 0:
        return []
    entries: list[dict[str, Any]] = json.loads(out or "[]")
    return entries
