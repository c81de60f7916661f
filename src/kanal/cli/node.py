"""``kanal node ls``: the hosts of the cluster kanald is in (``--cluster-store``).

The TLS column says how each host reaches etcd, as it recorded in its node entry:
``mutual`` (TLS with a client certificate), ``tls`` (TLS, no client certificate)
or ``none`` (plain HTTP).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def cmd_ls(args: argparse.Namespace) -> int:
    from kanal.cli.client import ApiClient
    from kanal.cli.fmt import render_table, render_template

    nodes: list[dict[str, Any]] = ApiClient(args.host).request("GET", "/nodes")
    if args.quiet:
        for n in nodes:
            print(n["Name"])
        return 0
    if args.format == "json":
        for n in nodes:
            print(render_template("{{json .}}", n))
        return 0
    table = [["NAME", "ADDRESS", "STATUS", "TLS", "STARTED"]]
    for n in nodes:
        status = "ready"
        if n.get("Self"):
            status = "ready (self)" if n.get("Healthy", True) else f"degraded: {n.get('Error')}"
        tls = str(n.get("TLS", "none"))
        table.append([n["Name"], n["Addr"], status, tls, str(n.get("Started", ""))])
    print(render_table(table))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("node", help="the hosts of kanald's cluster")
    p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
    sub = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=None, _parser=p)
    ls = sub.add_parser("ls", aliases=["list"], help="list the cluster's hosts")
    ls.add_argument("--format", default="", help="table (default) or json")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.set_defaults(handler=cmd_ls)
