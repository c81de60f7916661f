"""``kanal node ls``: the hosts of the cluster kanald is in (``--cluster-store``).

The TLS column says how each host reaches etcd, as it recorded in its node entry:
``mutual`` (TLS with a client certificate), ``tls`` (TLS, no client certificate)
or ``none`` (plain HTTP).
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


HEADERS = {
    "Name": "NAME",
    "Addr": "ADDRESS",
    "Status": "STATUS",
    "TLS": "TLS",
    "Started": "STARTED",
    "Lease": "LEASE",
    "Self": "SELF",
    "Healthy": "HEALTHY",
    "Error": "ERROR",
}
DEFAULT_TABLE = "table {{.Name}}\t{{.Addr}}\t{{.Status}}\t{{.TLS}}\t{{.Started}}"


def _status(n: dict[str, Any]) -> str:
    if n.get("Self"):
        return "ready (self)" if n.get("Healthy", True) else f"degraded: {n.get('Error')}"
    return "ready"


def cmd_ls(args: argparse.Namespace) -> int:
    import sys

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import render_table

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.daemon.client import ApiClient

    nodes: list[dict[str, Any]] = ApiClient(args.host).request("GET", "/nodes")
    if args.quiet and args.format in ("", "table"):  # docker: a custom --format wins over -q
        for n in nodes:
            print(n["Name"])
        return 0
    rows = [{**n, "Status": _status(n), "TLS": str(n.get("TLS", "none"))} for n in nodes]
    if args.format in ("", "table"):
        table = [["NAME", "ADDRESS", "STATUS", "TLS", "STARTED"]]
        table += [
            [r["Name"], r["Addr"], r["Status"], r["TLS"], str(r.get("Started", ""))] for r in rows
        ]
        print(render_table(table))
        return 0
    from kanal.cli.fmt import format_list

    sys.stdout.write(format_list(args.format, rows, HEADERS, DEFAULT_TABLE))
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("node", help="the hosts of kanald's cluster")
    p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
    sub = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=None, _parser=p)
    ls = sub.add_parser("ls", aliases=["list"], help="list the cluster's hosts")
    ls.add_argument("--format", default="", help="table, table TEMPLATE, json or a Go TEMPLATE")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.set_defaults(handler=cmd_ls)
