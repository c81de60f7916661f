"""``kanal network``: docker network's commands, against kanald's API.

kanal network create [-d DRIVER] [--subnet CIDR]... [--ip-range CIDR]...
                     [--gateway IP]... [--aux-address NAME=IP]... [--ipv6]
                     [--ipv4=false] [--internal] [--attachable] [-o K=V]...
                     [--label K=V]... [--scope local|global] [--config-only]
                     [--config-from NET] NAME
kanal network ls [-f KEY=VALUE]... [--format table|table TEMPLATE|json|TEMPLATE] [-q]
                 [--no-trunc]
kanal network inspect [-f json|TEMPLATE] [-v] NETWORK...
kanal network rm [-f] NETWORK...
kanal network prune [-f] [--filter KEY=VALUE]...
kanal network connect [--ip IP] [--ip6 IP] [--alias NAME]... [--link NAME[:ALIAS]]...
                      [--link-local-ip IP]... [--driver-opt K=V]... NETWORK CONTAINER
kanal network disconnect [-f] NETWORK CONTAINER
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kanal.cli.flags import add_bool
from kanal.errors import InvalidConfig, KanalError

__all__ = ["register"]


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not k:
            raise InvalidConfig(f"invalid {what} {item!r}: want KEY=VALUE")
        out[k] = v
    return out


def _client(args: argparse.Namespace) -> Any:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.daemon.client import ApiClient

    return ApiClient(args.host)


def cmd_create(args: argparse.Namespace) -> int:
    if (args.gateway or args.ip_range or args.aux_address) and not args.subnet:
        raise InvalidConfig("every --gateway, --ip-range and --aux-address needs a --subnet")
    if len(args.gateway) > len(args.subnet) or len(args.ip_range) > len(args.subnet):
        raise InvalidConfig("every --gateway and --ip-range needs a --subnet")
    aux = _kv(args.aux_address, "--aux-address")
    config: list[dict[str, Any]] = []
    for i, sub in enumerate(args.subnet):
        c: dict[str, Any] = {"Subnet": sub}
        if i < len(args.gateway):
            c["Gateway"] = args.gateway[i]
        if i < len(args.ip_range):
            c["IPRange"] = args.ip_range[i]
        config.append(c)
    for k, v in aux.items():
        # Each goes with the subnet that holds it; one no subnet holds is sent with the
        # first, as typed, and kanald says what is wrong with it (nothing is dropped).
        c = next((c for c in config if _in_subnet(v, c["Subnet"])), config[0])
        c.setdefault("AuxiliaryAddresses", {})[k] = v
    body = {
        "Name": args.name,
        "Driver": args.driver,
        "IPAM": {
            "Driver": args.ipam_driver,
            "Config": config,
            "Options": _kv(args.ipam_opt, "--ipam-opt"),
        },
        "EnableIPv4": args.ipv4,
        "EnableIPv6": args.ipv6,
        "Internal": args.internal,
        "Attachable": args.attachable,
        "Options": _kv(args.opt, "--opt"),
        "Labels": _kv(args.label, "--label"),
    }
    if args.scope:
        body["Scope"] = args.scope
    if args.config_only:
        body["ConfigOnly"] = True
    if args.config_from:
        body["ConfigFrom"] = {"Network": args.config_from}
    out = _client(args).request("POST", "/networks/create", body)
    print(out["Id"])
    return 0


def _in_subnet(ip: str, subnet: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        return False


def _filters(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq:
            raise InvalidConfig(f"bad format of filter (expected name=value): {item}")
        out.setdefault(k.strip(), []).append(v)
    return out


def _row(net: dict[str, Any], trunc: bool) -> dict[str, Any]:
    """The fields ``ls --format`` templates see: docker's network list context.

    Keys in sorted order, as docker marshals the context for ``{{json .}}``;
    ``.Label "k"`` is a method (``__Label``); ``__`` keys are hidden from JSON.
    """
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import go_time

    labels = net.get("Labels") or {}
    return {
        "CreatedAt": go_time(str(net["Created"])),
        "Driver": net["Driver"],
        "ID": net["Id"][:12] if trunc else net["Id"],
        "IPv4": str(net.get("EnableIPv4", True)).lower(),
        "IPv6": str(net["EnableIPv6"]).lower(),
        "Internal": str(net["Internal"]).lower(),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Name": net["Name"],
        "Scope": net["Scope"],
        "__Label": lambda k: labels.get(k, ""),
        "__type": "*network.networkContext",  # docker's name, for its error wording
    }


HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv4": "IPV4",
    "IPv6": "IPV6",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}
DEFAULT_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


def cmd_ls(args: argparse.Namespace) -> int:
    import json

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import render_table

    filters = _filters(args.filter)
    nets = _client(args).request(
        "GET", "/networks", query={"filters": json.dumps(filters)} if filters else None
    )
    nets.sort(key=lambda n: n["Name"])
    rows = [_row(n, not args.no_trunc) for n in nets]
    if args.quiet and args.format in ("", "table"):  # docker: a custom --format wins over -q
        for r in rows:
            print(r["ID"])
        return 0
    if args.format in ("", "table"):  # docker's default table, without the template engine
        table = [["NETWORK ID", "NAME", "DRIVER", "SCOPE"]]
        table += [[r["ID"], r["Name"], r["Driver"], r["Scope"]] for r in rows]
        print(render_table(table))
        return 0
    from kanal.cli.fmt import format_list

    sys.stdout.write(format_list(args.format, rows, HEADERS, DEFAULT_TABLE))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    client = _client(args)
    found, failed = [], False
    from urllib.parse import quote

    # docker's --verbose adds what only swarm networks have; kanal's overlay
    # networks show their other hosts' endpoints (Peers) with or without it
    query = {"verbose": "true"} if args.verbose else None
    for ref in args.networks:
        try:
            found.append(client.request("GET", f"/networks/{quote(ref, safe='')}", query=query))
        except KanalError as e:
            sys.stderr.write(f"kanal: {e}\n")
            failed = True
    if args.format == "json":  # docker's -f json: the networks as one JSON array
        # lazy: a kanal command loads only what it runs (the CLI starts for every call)
        from kanal.cli.fmt import inspect_json

        print(inspect_json(found))
    elif args.format:
        from kanal.cli.fmt import render_template

        # all rendered before any is printed: a template error prints nothing
        for text in [render_template(args.format, n) for n in found]:
            print(text)
    else:
        print(json.dumps(found, indent=4))
    return 1 if failed else 0


def cmd_rm(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.cli.fmt import Progress

    client = _client(args)
    failed = False
    progress = Progress(len(args.networks), "removing networks")
    for ref in args.networks:
        progress.step()
        try:
            client.request("DELETE", f"/networks/{quote(ref, safe='')}")
            print(ref)
        except KanalError as e:
            if args.force and getattr(e, "http_status", 0) == 404:
                continue
            sys.stderr.write(f"kanal: {e}\n")
            failed = True
    return 1 if failed else 0


def cmd_prune(args: argparse.Namespace) -> int:
    import json

    if not args.force:
        sys.stderr.write(
            "WARNING! This will remove all custom networks not used by at least one container.\n"
            "Are you sure you want to continue? [y/N] "
        )
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    filters = _filters(args.filter)
    out = _client(args).request(
        "POST", "/networks/prune", query={"filters": json.dumps(filters)} if filters else None
    )
    deleted = out.get("NetworksDeleted") or []
    if deleted:
        print("Deleted Networks:")
        for name in deleted:
            print(name)
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    body: dict[str, Any] = {"Container": args.container, "EndpointConfig": {}}
    ipam = {}
    if args.ip:
        ipam["IPv4Address"] = args.ip
    if args.ip6:
        ipam["IPv6Address"] = args.ip6
    if ipam:
        body["EndpointConfig"]["IPAMConfig"] = ipam
    if args.link_local_ip:
        ipam["LinkLocalIPs"] = args.link_local_ip
        body["EndpointConfig"]["IPAMConfig"] = ipam
    if args.alias:
        body["EndpointConfig"]["Aliases"] = args.alias
    if args.link:
        body["EndpointConfig"]["Links"] = args.link
    if args.driver_opt:
        body["EndpointConfig"]["DriverOpts"] = _kv(args.driver_opt, "--driver-opt")
    _client(args).request("POST", f"/networks/{quote(args.network, safe='')}/connect", body)
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    body = {"Container": args.container, "Force": args.force}
    _client(args).request("POST", f"/networks/{quote(args.network, safe='')}/disconnect", body)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("network", help="manage networks (docker network's commands)")
    p.add_argument("-H", "--host", default=None, help="kanald's API socket (or $KANAL_HOST)")
    sub = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=type(p))
    p.set_defaults(handler=None, _parser=p)

    c = sub.add_parser("create", help="create a network")
    c.add_argument("name", metavar="NETWORK")
    c.add_argument("-d", "--driver", default="bridge")
    c.add_argument("--subnet", action="append", default=[])
    c.add_argument("--ip-range", action="append", default=[])
    c.add_argument("--gateway", action="append", default=[])
    c.add_argument("--aux-address", action="append", default=[])
    c.add_argument("--ipam-driver", default="default")
    c.add_argument("--ipam-opt", action="append", default=[])
    add_bool(c, "--ipv4", default=True, help="enable IPv4 (--ipv4=false: IPv6 only)")
    add_bool(c, "--ipv6", help="enable IPv6")
    add_bool(c, "--internal", help="no way out of the network")
    add_bool(c, "--attachable")
    c.add_argument("-o", "--opt", action="append", default=[])
    c.add_argument("--label", action="append", default=[])
    c.add_argument("--scope", default="", help="local (or global: overlay)")
    add_bool(c, "--config-only", help="only a configuration, for --config-from")
    c.add_argument("--config-from", default="", help="take the configuration of this network")
    c.set_defaults(handler=cmd_create)

    ls = sub.add_parser("ls", aliases=["list"], help="list networks")
    ls.add_argument("-f", "--filter", action="append", default=[])
    ls.add_argument("--format", default="", help="table, table TEMPLATE, json or a Go TEMPLATE")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--no-trunc", action="store_true")
    ls.set_defaults(handler=cmd_ls)

    i = sub.add_parser("inspect", help="show networks as JSON")
    i.add_argument("networks", nargs="+", metavar="NETWORK")
    i.add_argument("-f", "--format", default="", help="json or a Go TEMPLATE")
    add_bool(i, "-v", "--verbose", help="also what only global networks have")
    i.set_defaults(handler=cmd_inspect)

    r = sub.add_parser("rm", aliases=["remove"], help="remove networks")
    r.add_argument("networks", nargs="+", metavar="NETWORK")
    r.add_argument("-f", "--force", action="store_true", help="no error if it does not exist")
    r.set_defaults(handler=cmd_rm)

    pr = sub.add_parser("prune", help="remove every unused custom network")
    pr.add_argument("-f", "--force", action="store_true")
    pr.add_argument(
        "--filter", action="append", default=[], help="until=TIME|DURATION, label=K[=V], label!=K"
    )
    pr.set_defaults(handler=cmd_prune)

    cn = sub.add_parser("connect", help="connect a container to a network")
    cn.add_argument("network", metavar="NETWORK")
    cn.add_argument("container", metavar="CONTAINER")
    cn.add_argument("--ip", default="")
    cn.add_argument("--ip6", default="")
    cn.add_argument("--alias", action="append", default=[])
    cn.add_argument("--link", action="append", default=[], help="NAME[:ALIAS]")
    cn.add_argument("--link-local-ip", action="append", default=[])
    cn.add_argument("--driver-opt", action="append", default=[], help="KEY=VALUE")
    cn.set_defaults(handler=cmd_connect)

    d = sub.add_parser("disconnect", help="disconnect a container from a network")
    d.add_argument("network", metavar="NETWORK")
    d.add_argument("container", metavar="CONTAINER")
    d.add_argument("-f", "--force", action="store_true")
    d.set_defaults(handler=cmd_disconnect)
