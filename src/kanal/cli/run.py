"""``kanal run / ps / exec / stop / rm``: sandboxes with docker's habits.

    kanal run [-d] [--rm] [--name N] [--network NET]... [--ip A] [--ip6 A]
              [--alias X]... [-p SPEC]... [--dns IP]... [--dns-search D]...
              [--dns-option O]... [--add-host NAME:IP|NAME:host-gateway]...
              [--hostname H] [-e K=V]... [-w DIR] [--expose PORT[-END][/PROTO]]...
              [-P] [--mac-address MAC] [--link NAME[:ALIAS]]... [--pid host] -- CMD [ARG...]
    kanal ps [-a] [-q] [--no-trunc] [--format table|table TEMPLATE|json|TEMPLATE]
             [-f|--filter KEY=VALUE]...
    kanal exec SANDBOX CMD [ARG...]
    kanal stop [-t SECONDS] SANDBOX...
    kanal rm [-f] SANDBOX...

Without ``-d`` the command runs in the foreground with this terminal's stdin and
stdout, and ``kanal run`` exits with its status (``--rm`` removes the sandbox
afterwards). The first ``--network`` gets ``--ip``, ``--alias`` and ``-p``. The
command runs in a PID namespace of its own, so what it leaves running in the
background ends with it (``--pid host``: in kanald's). ``start``, ``restart``,
``kill``, ``wait`` and ``logs`` are :mod:`kanal.cli.lifecycle`'s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kanal.cli.flags import add_bool
from kanal.errors import KanalError

__all__ = ["register"]


def _client(args: argparse.Namespace) -> Any:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.daemon.client import ApiClient

    return ApiClient(args.host)


def _q(ref: str) -> str:
    from urllib.parse import quote

    return quote(ref, safe="")


def cmd_run(args: argparse.Namespace) -> int:
    import os
    import subprocess

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import InvalidConfig

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise InvalidConfig("kanal run needs a command: kanal run [OPTIONS] -- CMD [ARG...]")
    env: dict[str, str] = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for item in args.env:
        k, eq, v = item.partition("=")
        if not k:
            raise InvalidConfig(f"invalid -e {item!r}: want KEY=VALUE")
        env[k] = v if eq else os.environ.get(k, "")
    networks = args.network or ["bridge"]
    mode = networks[0]
    nets = []
    if mode not in ("host", "none") and not mode.startswith("container:"):
        for i, n in enumerate(networks):
            nets.append(
                {
                    "Name": n,
                    **({"IPv4Address": args.ip, "IPv6Address": args.ip6} if i == 0 else {}),
                    **({"Aliases": args.alias} if i == 0 else {}),
                }
            )
    body = {
        "Name": args.name,
        "Cmd": cmd,
        "Env": env,
        "Hostname": args.hostname,
        "NetworkMode": mode,
        "Networks": nets,
        "Publish": args.publish,
        "Dns": args.dns,
        "DnsSearch": args.dns_search,
        "DnsOptions": args.dns_option,
        "ExtraHosts": args.add_host,
        "WorkingDir": args.workdir,
        **({"PidMode": args.pid} if args.pid else {}),
    }
    body.update(_docker_run_flags(args))
    c = _client(args)
    if args.detach:
        # One request: kanald creates and starts it, or leaves nothing behind.
        sb = c.request("POST", "/sandboxes/create", {**body, "Start": True})
        _warn(sb)
        print(sb["Id"])
        return 0
    sb = c.request("POST", "/sandboxes/create", body)
    _warn(sb)
    sid = sb["Id"]
    launch = c.request("GET", f"/sandboxes/{sid}/launch")
    argv = launch["Argv"]
    _check_mount_ns(c, sid, launch)
    env_launch = dict(os.environ)
    env_launch["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.Popen(argv, env=env_launch)
    c.request("POST", f"/sandboxes/{sid}/running", {"Pid": proc.pid})
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    code = code if code >= 0 else 128 - code
    c.request("POST", f"/sandboxes/{sid}/exited", {"ExitCode": code})
    if args.rm:
        c.request("DELETE", f"/sandboxes/{sid}", query={"force": "1"})
    return code


def _expose(spec: str) -> list[str]:
    """``--expose PORT[-END][/PROTO]`` as ``PORT/PROTO`` items."""
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import InvalidConfig

    ports, _, proto = spec.partition("/")
    lo, _, hi = ports.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("", "tcp", "udp", "sctp"):
        raise InvalidConfig(f"invalid range format for --expose: {spec}")
    a, b = int(lo), int(hi or lo)
    if not 1 <= a <= b <= 65535:
        raise InvalidConfig(f"invalid range format for --expose: {spec}")
    return [f"{p}/{proto or 'tcp'}" for p in range(a, b + 1)]


def _docker_run_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The body fields of ``--expose``, ``-P``, ``--mac-address`` and ``--link``.

    ``-P`` publishes every exposed port that no ``-p`` publishes to a random host
    port (docker's rule; kanal has no images, so the ports are those of
    ``--expose`` and ``-p``)."""
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.engine.ports import parse_publish

    exposed: list[str] = []
    for spec in args.expose:
        exposed += [p for p in _expose(spec) if p not in exposed]
    published = {
        f"{b.container_port}/{b.protocol}" for spec in args.publish for b in parse_publish(spec)
    }
    out: dict[str, Any] = {}
    if args.publish_all:
        out["Publish"] = list(args.publish) + [p for p in exposed if p not in published]
    exposed += sorted(published - set(exposed))  # docker: a published port is exposed
    if exposed:
        out["ExposedPorts"] = exposed
    if args.mac_address:
        out["MacAddress"] = args.mac_address
    if args.link:
        out["Links"] = list(args.link)
    return out


def _warn(sb: dict[str, Any]) -> None:
    """What kanald warns about a new sandbox, in docker's words."""
    for w in sb.get("Warnings") or []:
        sys.stderr.write(f"WARNING: {w}\n")


def _check_mount_ns(c: Any, sid: str, launch: dict[str, Any]) -> None:
    """An attached run executes kanald's argv here: that needs the sandbox's
    namespace mount (/run/netns/...) visible in this mount namespace. When it is
    not (kanald or this CLI started with ``ip netns exec``, which makes a mount
    namespace per call), the sandbox is removed again and the error says why."""
    import os

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import Unavailable

    path = launch.get("Netns") or ""
    theirs = launch.get("MountNamespace") or ""
    ours = os.readlink("/proc/self/ns/mnt")
    if not path or not theirs or _is_netns(path):
        return
    c.request("DELETE", f"/sandboxes/{sid}", query={"force": "1"})
    why = (
        f"this kanal runs in mount namespace {ours}, kanald in {theirs}"
        if ours != theirs
        else "it is not a mounted network namespace"
    )
    raise Unavailable(
        f"the sandbox's network namespace {path} is not visible here ({why}); start kanald "
        "and kanal with 'nsenter --net=/run/netns/NAME ...' rather than 'ip netns exec' "
        "(which makes a new mount namespace per call), or run with -d"
    )


def _is_netns(path: str) -> bool:
    """Whether ``path`` is a network namespace as seen from here."""
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.runtime.netnscheck import check_netns

    try:
        check_netns(path)
    except KanalError:
        return False
    return True


PS_HEADERS = {
    "ID": "SANDBOX ID",
    "Names": "NAMES",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "State": "STATE",
    "Status": "STATUS",
    "Networks": "NETWORKS",
    "Ports": "PORTS",
}
PS_TABLE = "table {{.ID}}\t{{.Names}}\t{{.Command}}\t{{.Status}}\t{{.Networks}}\t{{.Ports}}"


def _ps_status(s: dict[str, Any]) -> str:
    if s.get("Error"):
        return "broken"  # inspect (GET /sandboxes/ID) says why
    return s["State"] if s["ExitCode"] is None else f"{s['State']} ({s['ExitCode']})"


def _ps_ports(s: dict[str, Any]) -> str:
    # every binding of a port (two -p of one port: both); an exposed one alone
    return ", ".join(
        f"{b['HostIp']}:{b['HostPort']}->{cp}" if b else cp
        for cp, binds in s["Ports"].items()
        for b in (binds if binds is not None else [None])
    )


def _ps_command(s: dict[str, Any], trunc: bool) -> str:
    """COMMAND as docker's ``ps`` shows it: quoted, and cut to 20 characters with an
    ellipsis (never silently) unless ``--no-trunc``."""
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.gotemplate import go_quote

    cmd = " ".join(s["Cmd"])
    if trunc and len(cmd) > 20:  # docker's Ellipsis
        cmd = cmd[:19] + "\u2026"
    return go_quote(cmd)


def _ps_row(s: dict[str, Any], trunc: bool) -> dict[str, Any]:
    """The fields ``ps --format`` templates see, named as docker's ``ps`` names them
    (keys in sorted order, as docker marshals them for ``{{json .}}``)."""
    import re

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import go_time

    return {
        "Command": _ps_command(s, trunc),
        "CreatedAt": go_time(re.sub(r"\.\d+", "", str(s["Created"]))),
        "ID": s["Id"][:12] if trunc else s["Id"],
        "Names": s["Name"],
        "Networks": ",".join(sorted(s["Networks"])),
        "Ports": _ps_ports(s),
        "State": s["State"],
        "Status": _ps_status(s),
        "__type": "*formatter.ContainerContext",  # docker's name, for its error wording
    }


def _filtered(args: argparse.Namespace, sbs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``ps --filter KEY=VALUE``: kanald matches them (docker's keys and rules,
    ``GET /containers/json?filters=``); without ``-a`` only running ones unless a
    ``status`` or ``exited`` filter asks otherwise, as docker's."""
    import json

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import InvalidConfig

    f: dict[str, list[str]] = {}
    for item in args.filter:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise InvalidConfig(f"bad format of filter (expected name=value): {item}")
        f.setdefault(k.strip().lower(), []).append(v)
    query = {"filters": json.dumps(f), "all": "1" if args.all else "0"}
    ids = {c["Id"] for c in _client(args).request("GET", "/containers/json", query=query)}
    return [s for s in sbs if s["Id"] in ids]


def cmd_ps(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import render_table

    sbs = _client(args).request("GET", "/sandboxes")
    if args.filter:
        sbs = _filtered(args, sbs)
    elif not args.all:
        sbs = [s for s in sbs if s["State"] == "running"]
    sbs.sort(key=lambda x: x["Created"], reverse=True)
    trunc = not args.no_trunc
    if args.quiet:
        if args.format:  # docker's words, and docker's choice: -q wins
            sys.stderr.write(
                "WARNING: Ignoring custom format, because both --format and --quiet are set.\n"
            )
        sys.stdout.write("".join((s["Id"][:12] if trunc else s["Id"]) + "\n" for s in sbs))
        return 0
    if args.format not in ("", "table"):
        from kanal.cli.fmt import format_list

        rows = [_ps_row(s, trunc) for s in sbs]
        sys.stdout.write(format_list(args.format, rows, PS_HEADERS, PS_TABLE))
        return 0
    table = [["SANDBOX ID", "NAME", "COMMAND", "STATUS", "NETWORKS", "PORTS"]]
    for s in sbs:
        nets = (
            ",".join(f"{k}={v['IPAddress']}" for k, v in s["Networks"].items()) or s["NetworkMode"]
        )
        table.append(
            [
                s["Id"][:12] if trunc else s["Id"],
                s["Name"],
                _ps_command(s, trunc),
                _ps_status(s),
                nets,
                _ps_ports(s),
            ]
        )
    print(render_table(table))
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    import subprocess

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import Conflict, InvalidConfig

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise InvalidConfig("kanal exec needs a command")
    sb = _client(args).request("GET", f"/sandboxes/{_q(args.sandbox)}/json")
    if not sb["State"]["Running"] or not sb["State"]["Pid"]:
        raise Conflict(f"container {sb['Name'].lstrip('/')} is not running")
    # The sandbox process's own namespaces: network, mounts (its /etc files), hostname,
    # and its PID namespace unless it shares kanald's (--pid host).
    pid = ["--pid"] if sb["HostConfig"]["PidMode"] != "host" else []
    return subprocess.call(
        ["nsenter", "--target", str(sb["State"]["Pid"]), "--net", "--mount", "--uts", *pid,
         "--", *cmd]
    )  # fmt: skip


def cmd_stop(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import Progress

    c, failed = _client(args), False
    progress = Progress(len(args.sandboxes), "stopping")
    for ref in args.sandboxes:
        progress.step()
        try:
            c.request("POST", f"/sandboxes/{_q(ref)}/stop", query={"t": str(args.time)})
            print(ref)
        except KanalError as e:
            sys.stderr.write(f"kanal: {e}\n")
            failed = True
    return 1 if failed else 0


def cmd_rm(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import Progress

    c, failed = _client(args), False
    progress = Progress(len(args.sandboxes), "removing")
    for ref in args.sandboxes:
        progress.step()
        try:
            c.request(
                "DELETE", f"/sandboxes/{_q(ref)}", query={"force": "1" if args.force else "0"}
            )
            print(ref)
        except KanalError as e:
            sys.stderr.write(f"kanal: {e}\n")
            failed = True
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    def add(name: str, help: str) -> Any:
        p = subparsers.add_parser(name, help=help)
        p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
        return p

    r = add("run", "run a command in a new sandbox")
    r.add_argument("-d", "--detach", action="store_true")
    r.add_argument("--rm", action="store_true")
    r.add_argument("--name", default="")
    r.add_argument("--network", "--net", action="append", default=[])
    r.add_argument("--ip", default="")
    r.add_argument("--ip6", default="")
    r.add_argument("--alias", "--network-alias", action="append", default=[])
    r.add_argument("-p", "--publish", action="append", default=[])
    r.add_argument("--dns", action="append", default=[])
    r.add_argument("--dns-search", action="append", default=[])
    r.add_argument("--dns-option", action="append", default=[])
    r.add_argument("--add-host", action="append", default=[])
    r.add_argument("--hostname", default="")
    r.add_argument("-e", "--env", action="append", default=[])
    r.add_argument("-w", "--workdir", default="")
    r.add_argument("--expose", action="append", default=[], help="expose PORT[-END][/PROTO]")
    add_bool(r, "-P", "--publish-all", help="publish every exposed port to a random host port")
    r.add_argument("--mac-address", default="", help="the first network's interface MAC")
    r.add_argument(
        "--link", action="append", default=[], help="NAME[:ALIAS]: ALIAS resolves to NAME"
    )
    r.add_argument("--pid", default="", help="host: no PID namespace of its own")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    r.set_defaults(handler=cmd_run)

    ps = add("ps", "list sandboxes")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.add_argument("--no-trunc", action="store_true")
    ps.add_argument("--format", default="", help="table, table TEMPLATE, json or a Go TEMPLATE")
    ps.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        help="KEY=VALUE: id, name, status, " "network, exited, publish (docker's)",
    )
    ps.set_defaults(handler=cmd_ps)

    ex = add("exec", "run a command in a running sandbox")
    ex.add_argument("sandbox")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    ex.set_defaults(handler=cmd_exec)

    st = add("stop", "stop sandboxes (SIGTERM, then SIGKILL)")
    st.add_argument("-t", "--time", type=float, default=10.0)
    st.add_argument("sandboxes", nargs="+")
    st.set_defaults(handler=cmd_stop)

    rm = add("rm", "remove sandboxes")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("sandboxes", nargs="+")
    rm.set_defaults(handler=cmd_rm)
