"""``kanal dhcp daemon``: the daemon behind the ``dhcp`` IPAM plugin."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.dhcp.daemon import main

    main(args.rest)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dhcp", help="the DHCP daemon for the dhcp IPAM plugin")
    sub = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=None, _parser=p)
    d = sub.add_parser(
        "daemon",
        help="serve leases: --socket PATH --lease-dir DIR [--socket-mode] [--log-level]",
        add_help=False,
    )
    d.add_argument("rest", nargs=argparse.REMAINDER)
    d.set_defaults(handler=_run)
