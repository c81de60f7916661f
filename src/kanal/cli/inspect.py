"""``kanal inspect [-f json|TEMPLATE] SANDBOX...``: sandboxes as docker inspect shows containers.

Each sandbox is docker's container object (``GET /containers/{id}/json``):
``State`` (Status, Running, Pid, ExitCode, StartedAt, FinishedAt),
``NetworkSettings`` (SandboxKey: its namespace's path; Ports; one entry per
network with IPAddress, Gateway, MacAddress, Aliases), ``HostConfig``'s network
fields and ``Config``, so ``-f`` templates written for docker work unchanged
(``{{.State.Pid}}``, ``{{.NetworkSettings.SandboxKey}}``). kanal adds
``LostAddresses``: the overlay addresses a sandbox lost while its host was cut
off from the cluster for longer than the grace period (the cluster freed them;
the sandbox was disconnected from those networks when the host came back).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def cmd_inspect(args: argparse.Namespace) -> int:
    import json
    from urllib.parse import quote

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import inspect_json, render_template
    from kanal.daemon.client import ApiClient
    from kanal.errors import KanalError

    client = ApiClient(args.host)
    found, failed = [], False
    for ref in args.sandboxes:
        try:
            found.append(client.request("GET", f"/sandboxes/{quote(ref, safe='')}/json"))
        except KanalError as e:
            sys.stderr.write(f"kanal: {e}\n")
            failed = True
    if args.format == "json":  # docker's -f json: the objects as one JSON array
        print(inspect_json(found))
    elif args.format:
        out = [render_template(args.format, sb) for sb in found]  # all or nothing
        sys.stdout.write("".join(line + "\n" for line in out))
    else:
        print(json.dumps(found, indent=4))
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("inspect", help="show sandboxes as JSON (docker's container shape)")
    p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
    p.add_argument(
        "-f", "--format", default="", help="json or a Go template, e.g. '{{.State.Pid}}'"
    )
    p.add_argument("sandboxes", nargs="+", metavar="SANDBOX")
    p.set_defaults(handler=cmd_inspect)
