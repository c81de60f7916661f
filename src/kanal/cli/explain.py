"""``kanal explain SRC DST[:PORT[/PROTO]]``: would a packet get there, and why.

SRC and DST are sandbox names or IDs, addresses, or ``host``. kanald walks the
packet's path through the kernel's real state (routes, bridge ports, kanal's
nftables rules, VXLAN entries) and names the object that decides each step; the
exit status is 0 when the packet would get there, 1 when it would not.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

_MARK = {"pass": "ok  ", "drop": "DROP", "note": "    "}


def cmd_explain(args: argparse.Namespace) -> int:
    import json
    from urllib.parse import urlencode

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import render_template
    from kanal.daemon.client import ApiClient

    answer = ApiClient(args.host).request(
        "GET", "/explain?" + urlencode({"src": args.src, "dst": args.dst})
    )
    if args.format == "json":
        print(json.dumps(answer, indent=4))
    elif args.format:
        print(render_template(args.format, answer))
    else:
        target = answer["Destination"]
        if answer["Port"]:
            target += f" port {answer['Port']}/{answer['Protocol']}"
        verdict = "reachable" if answer["Reachable"] else "NOT reachable"
        print(f"{answer['Source']} -> {target}: {verdict}")
        for s in answer["Steps"]:
            print(f"  {_MARK.get(s['Verdict'], '    ')} {s['Stage']:<8} {s['Text']}")
            if s["Evidence"] and args.verbose:
                print(f"       {'':<8} [{s['Evidence']}]")
    return 0 if answer["Reachable"] else 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("explain", help="whether a packet from SRC reaches DST, and why")
    p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
    p.add_argument("-f", "--format", default="", help="'json' or a Go template")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show the kernel object behind each step"
    )
    p.add_argument("src", metavar="SRC", help="a sandbox, an address or 'host'")
    p.add_argument("dst", metavar="DST[:PORT[/PROTO]]", help="a sandbox, an address or 'host'")
    p.set_defaults(handler=cmd_explain)
