"""``kanal system check``: kanald's invariants against its store and the kernel.

Prints each leak or inconsistency found (see kanal.engine.check) and exits 1 if
there is any, 0 with "no problems found" otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def cmd_check(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.daemon.client import ApiClient

    problems: list[str] = ApiClient(args.host).request("GET", "/system/check")["Problems"]
    for p in problems:
        print(p)
    if problems:
        print(f"kanal: {len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print("no problems found")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("system", help="kanald's own state")
    p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
    sub = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=None, _parser=p)
    check = sub.add_parser(
        "check", help="look for leaks and inconsistencies (exit 1 when one is found)"
    )
    check.set_defaults(handler=cmd_check)
