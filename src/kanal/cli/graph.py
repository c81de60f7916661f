"""``kanal graph``: the topology kanald has, as the kernel and the store hold it, drawn
with Graphviz.

kanald reads both (``GET /topology``); this command draws what it answers:
networks, their bridges (Linux or OVS), VXLAN devices and the remote VTEPs their
FDB sends to, macvlan parents, each sandbox with its interfaces (addresses,
published ports, aliases) and the veth pair to the bridge. What the store and the
kernel disagree on is red, labelled with why (``missing``: in the store, not in
the kernel; ``kernel only``: the other way round), and listed in a red note.

The DOT text goes to stdout, or ``-o FILE.dot``; ``-o FILE.svg`` and ``-o FILE.png``
are rendered by Graphviz's ``dot`` program (Debian's ``graphviz``), which only
those need.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kanal.errors import InvalidConfig, Unavailable

__all__ = ["build_dot", "register"]

RED = "red"
FORMATS = ("dot", "svg", "png")


def _bad(state: str) -> dict[str, str]:
    return {} if state == "ok" else {"color": RED, "fontcolor": RED, "penwidth": "2"}


def _label(*lines: str) -> str:
    # DOT's escape for a line break (a quoted label keeps its backslashes)
    return "\\n".join(x.replace("\\", "\\\\") for x in lines if x)


def _id(kind: str, name: str) -> str:
    """A node id: never a ":" (in an edge, DOT reads "a:b" as node a, port b)."""
    return f"{kind}_{name.replace(':', '_')}"


def _state(state: str) -> str:
    return "" if state == "ok" else f"({state})"


def build_dot(model: dict[str, Any]) -> str:
    """The DOT source of a ``GET /topology`` answer."""
    # lazy: only kanal graph draws
    import graphviz

    g = graphviz.Graph("kanal", graph_attr={"rankdir": "LR", "fontname": "sans-serif"})
    g.attr("node", fontname="sans-serif", fontsize="10")
    g.attr("edge", fontname="sans-serif", fontsize="9")
    host = model.get("Host", "")
    with g.subgraph(name="cluster_host") as h:
        h.attr(label=f"host {host}", style="rounded", color="gray40")
        for n in model.get("Networks", []):
            _network(h, g, n)
        for sb in model.get("Sandboxes", []):  # the host ends of veth pairs live here
            for veth in (i["HostVeth"] for i in sb["Interfaces"] if i.get("HostVeth")):
                h.node(
                    _id("dev", veth["Name"]),
                    _label(f"veth {veth['Name']}", _state(veth["State"])),
                    shape="cds",
                    **_bad(veth["State"]),
                )
    # where a sandbox's interface attaches, per network: its device, or the network
    anchors: dict[str, str] = {}
    for n in model.get("Networks", []):
        dev, parent = n.get("Device"), n.get("Parent")
        anchor = _id("dev", dev["Name"]) if dev else _id("dev", parent["Name"]) if parent else ""
        anchors[n["Id"]] = anchor or _id("net", n["Id"][:12])
    for sb in model.get("Sandboxes", []):
        _sandbox(g, sb, anchors)
    drift = model.get("Drift", [])
    if drift:
        g.node(
            "drift",
            _label(f"store and kernel disagree ({len(drift)})", *drift),
            shape="note",
            color=RED,
            fontcolor=RED,
        )
    return str(g.source)


def _network(h: Any, g: Any, n: dict[str, Any]) -> None:
    nid = _id("net", n["Id"][:12])
    subnets = [
        f"{s['Subnet']}" + (f" gw {s['Gateway']}" if s["Gateway"] else "") for s in n["Subnets"]
    ]
    flags = "internal" if n.get("Internal") else ""
    h.node(
        nid,
        _label(f"network {n['Name']}", f"{n['Driver']} ({n['Scope']})", *subnets, flags),
        shape="box",
        style="filled",
        fillcolor="lightblue",
    )
    dev = n.get("Device")
    if dev:
        did = _id("dev", dev["Name"])
        h.node(
            did,
            _label(f"{dev['Kind']} {dev['Name']}", *dev["Addresses"], _state(dev["State"])),
            shape="component",
            **_bad(dev["State"]),
        )
        h.edge(nid, did, style="dashed", **_bad(dev["State"]))
        for s in n.get("Stray", []):
            sid = _id("dev", s["Name"])
            h.node(
                sid,
                _label(f"{s['Kind'] or 'link'} {s['Name']}", _state(s["State"])),
                **_bad(s["State"]),
            )
            h.edge(did, sid, **_bad(s["State"]))
    parent = n.get("Parent")
    if parent:
        pid = _id("dev", parent["Name"])
        h.node(
            pid,
            _label(f"parent {parent['Name']}", _state(parent["State"])),
            shape="component",
            **_bad(parent["State"]),
        )
        h.edge(nid, pid, style="dashed", **_bad(parent["State"]))
    vx = n.get("Vxlan")
    if vx:
        vid = _id("dev", vx["Name"])
        h.node(
            vid,
            _label(f"vxlan {vx['Name']}", f"VNI {vx['Vni']}", _state(vx["State"])),
            shape="component",
            **_bad(vx["State"]),
        )
        h.edge(_id("dev", dev["Name"]) if dev else nid, vid, **_bad(vx["State"]))
        for t in vx["Vteps"]:
            tid = _id("vtep", t["Addr"])
            g.node(
                tid,
                _label(f"VTEP {t['Addr']}", t["Host"], _state(t["State"])),
                shape="doubleoctagon",
                **_bad(t["State"]),
            )
            g.edge(
                vid,
                tid,
                label=f"{t['Macs']} MAC{'s' if t['Macs'] != 1 else ''}",
                style="dotted",
                **_bad(t["State"]),
            )


def _sandbox(g: Any, sb: dict[str, Any], anchors: dict[str, str]) -> None:
    with g.subgraph(name=f"cluster_sb_{sb['Id'][:12]}") as c:
        c.attr(
            label=_label(f"sandbox {sb['Name']}", sb["State"]), style="rounded", color="darkgreen"
        )
        if not sb["Interfaces"]:
            c.node(_id("sb", sb["Id"][:12]), "(no interfaces)", shape="plaintext")
        for i in sb["Interfaces"]:
            iid = _id("if", f"{sb['Id'][:12]}_{i['Name']}")
            addrs = i["KernelAddresses"] if i["State"] == "ok" else i["Addresses"]
            ports = [f"publish {p}" for p in i["Ports"]]
            aliases = [f"alias {', '.join(i['Aliases'])}"] if i["Aliases"] else []
            c.node(
                iid,
                _label(i["Name"], *addrs, i["Mac"], *ports, *aliases, _state(i["State"])),
                shape="ellipse",
                **_bad(i["State"]),
            )
            veth = i.get("HostVeth")
            anchor = anchors.get(i["Network"], _id("net", i["Network"][:12]))
            if veth:
                vid = _id("dev", veth["Name"])
                g.edge(iid, vid, label="veth pair", style="bold", **_bad(i["State"]))
                g.edge(vid, anchor, **_bad(veth["State"]))
            else:  # macvlan (on its parent), or a driver without a device of ours
                g.edge(iid, anchor, label=i["Kind"], **_bad(i["State"]))


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("graph", help="draw the topology (Graphviz: DOT, svg, png)")
    p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
    p.add_argument("--network", action="append", default=[], help="only this network (repeatable)")
    p.add_argument(
        "-o", "--output", default="", metavar="FILE", help="FILE.dot, FILE.svg or FILE.png"
    )
    p.set_defaults(handler=cmd_graph)


def cmd_graph(args: argparse.Namespace) -> int:
    fmt = "dot"
    if args.output:
        fmt = args.output.rpartition(".")[2].lower()
        if "." not in args.output or fmt not in FORMATS:
            raise InvalidConfig(
                f"cannot write {args.output!r}: want FILE.dot, FILE.svg or FILE.png"
            )
    if fmt != "dot":
        import shutil  # lazy: only when rendering

        if shutil.which("dot") is None:
            raise Unavailable(
                f"rendering {args.output} needs Graphviz's dot program (apt-get install graphviz); "
                "-o FILE.dot writes the graph without it"
            )
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from urllib.parse import urlencode

    from kanal.daemon.client import ApiClient

    query = "?" + urlencode([("network", n) for n in args.network]) if args.network else ""
    model = ApiClient(args.host).request("GET", "/topology" + query)
    source = build_dot(model)
    if not args.output:
        sys.stdout.write(source)
        return 0
    if fmt == "dot":
        data = source.encode()
    else:
        import graphviz  # lazy: only kanal graph draws

        data = graphviz.Source(source).pipe(format=fmt)
    with open(args.output, "wb") as f:
        f.write(data)
    return 0
