"""``kanal start / restart / kill / wait / logs``: a sandbox's life as docker's.

    kanal start SANDBOX...
    kanal restart [-t SECONDS] SANDBOX...
    kanal kill [-s SIGNAL] SANDBOX...
    kanal wait SANDBOX...
    kanal logs [-f] [-n|--tail N] SANDBOX

A stopped sandbox holds no addresses and no host ports (docker's habit): ``start``
joins its networks again, with the same ``--ip`` when one was given, and
publishes its ports again. ``kill`` sends one signal (SIGKILL by default) to the
sandbox's first process; ``wait`` prints each sandbox's exit status once it
stops. ``logs`` shows what a detached sandbox (``run -d``) wrote, ``-f`` then
follows it until the sandbox stops.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _q(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


def _each(args: argparse.Namespace, action: str, query: dict[str, str] | None = None) -> int:
    """POST /sandboxes/REF/ACTION for each sandbox; prints the ref as docker does."""
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.daemon.client import ApiClient
    from kanal.errors import KanalError

    c, failed = ApiClient(args.host), False
    for ref in args.sandboxes:
        try:
            c.request("POST", f"/sandboxes/{_q(ref)}/{action}", query=query)
            print(ref)
        except KanalError as e:
            sys.stderr.write(f"kanal: {e}\n")
            failed = True
    return 1 if failed else 0


def cmd_start(args: argparse.Namespace) -> int:
    return _each(args, "start")


def cmd_restart(args: argparse.Namespace) -> int:
    return _each(args, "restart", {"t": str(args.time)})


def cmd_kill(args: argparse.Namespace) -> int:
    return _each(args, "kill", {"signal": args.signal})


def cmd_wait(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.daemon.client import ApiClient
    from kanal.errors import KanalError

    c, failed = ApiClient(args.host, timeout=10**7), False  # a wait may take days
    for ref in args.sandboxes:
        try:
            print(c.request("POST", f"/sandboxes/{_q(ref)}/wait")["StatusCode"], flush=True)
        except KanalError as e:
            sys.stderr.write(f"kanal: {e}\n")
            failed = True
    return 1 if failed else 0


def cmd_logs(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.daemon.client import ApiClient

    query = {"follow": "1" if args.follow else "0", "tail": args.tail}
    out = sys.stdout.buffer
    try:
        for chunk in ApiClient(args.host).stream(f"/sandboxes/{_q(args.sandbox)}/logs", query):
            out.write(chunk)
            out.flush()
    except BrokenPipeError:
        return 0  # kanal logs | head: the reader had enough
    return 0


def register(subparsers: Any) -> None:
    def add(name: str, help: str) -> Any:
        p = subparsers.add_parser(name, help=help)
        p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
        return p

    s = add("start", "start stopped sandboxes (their networks and ports taken again)")
    s.add_argument("sandboxes", nargs="+", metavar="SANDBOX")
    s.set_defaults(handler=cmd_start)

    r = add("restart", "stop, then start sandboxes")
    r.add_argument("-t", "--time", type=float, default=10.0, help="seconds before SIGKILL")
    r.add_argument("sandboxes", nargs="+", metavar="SANDBOX")
    r.set_defaults(handler=cmd_restart)

    k = add("kill", "send a signal to sandboxes' first process")
    k.add_argument("-s", "--signal", default="KILL", help="a name (TERM, SIGHUP) or number")
    k.add_argument("sandboxes", nargs="+", metavar="SANDBOX")
    k.set_defaults(handler=cmd_kill)

    w = add("wait", "wait until sandboxes stop; print their exit status")
    w.add_argument("sandboxes", nargs="+", metavar="SANDBOX")
    w.set_defaults(handler=cmd_wait)

    lg = add("logs", "what a detached sandbox wrote (stdout and stderr)")
    lg.add_argument("-f", "--follow", action="store_true", help="then follow it")
    lg.add_argument("-n", "--tail", default="all", help="only the last N lines")
    lg.add_argument("sandbox", metavar="SANDBOX")
    lg.set_defaults(handler=cmd_logs)
