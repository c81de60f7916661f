"""The ``dhcp`` IPAM plugin: addresses from a DHCP server, through kanal's DHCP daemon.

As the reference (Go ``plugins/ipam/dhcp``), the plugin is a thin client of a
long-running daemon that runs the DHCP exchange inside the container's
namespace and renews the lease for as long as the container lives. Start it
with ``kanal dhcp daemon`` (or ``python -m kanal.dhcp``). The socket is
``ipam.daemonSocketPath`` (Go's key), else ``$KANAL_DHCP_SOCKET``, else
/run/kanal/dhcp.sock. kanal's daemon speaks JSON, not Go's RPC: pair kanal's
plugin with kanal's daemon. ``ipam.timeout`` (seconds) bounds the exchange;
``ipam.provide`` ``host-name`` sets option 12.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from kanal.errors import Internal, InvalidConfig, KanalError, Unavailable
from kanal.plugins import _conf as c
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.dispatcher import plugin_main
from kanal.spec import gotypes
from kanal.spec.gojson import BOOL, FLOAT64, INT, STRING, Ptr, Slice, Struct
from kanal.spec.types import Result
from kanal.spec.versions import ALL_VERSIONS

__all__ = ["PLUGIN", "main"]

DEFAULT_SOCKET = "/run/kanal/dhcp.sock"


_OPTION = Struct("ProvideOption", [("option", STRING), ("value", STRING), ("fromArg", STRING)])
IPAM_CONFIG = Struct(
    "IPAMConfig",
    [
        ("type", STRING),
        ("daemonSocketPath", STRING),
        ("provide", Slice(_OPTION)),
        (
            "request",
            Slice(Struct("RequestOption", [("skipDefault", BOOL), ("option", STRING)])),
        ),
        ("priority", INT),
        ("timeout", Ptr(FLOAT64)),  # kanal's: seconds for the exchange
    ],
)
NETCONF = gotypes.NETCONF.extend("NetConf", [("ipam", Ptr(IPAM_CONFIG))])


def _conf(args: CmdArgs, *, lenient: bool = False) -> dict[str, Any]:
    conf = c.load(NETCONF, args, lenient=lenient)
    if conf["ipam"] is None:
        conf["ipam"] = IPAM_CONFIG.zero()
    return conf


def _socket_path(args: CmdArgs, conf: dict[str, Any]) -> str:
    return args.abspath(
        conf["ipam"]["daemonSocketPath"] or args.env.get("KANAL_DHCP_SOCKET", "") or DEFAULT_SOCKET
    )


def _call(path: str, req: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except OSError as e:
            raise Unavailable(
                f"error dialing DHCP daemon at {path}: is the dhcp daemon running "
                "(kanal dhcp daemon)?",
                e.strerror or str(e),
            ) from None
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except TimeoutError as e:
        raise Internal("the DHCP daemon did not answer in time") from e
    finally:
        s.close()
    try:
        reply: dict[str, Any] = json.loads(buf)
    except ValueError as e:
        raise Internal("bad answer from the DHCP daemon", str(e)) from e
    err = reply.get("error")
    if err:
        raise KanalError(str(err.get("msg")), str(err.get("details") or ""), code=err.get("code"))
    return reply


def _req(op: str, args: CmdArgs, conf: dict[str, Any]) -> dict[str, Any]:
    """The daemon's request; ``ipam`` as decoded (Go's key matching applied)."""
    ipam = dict(conf["ipam"])
    if ipam["timeout"] is None:
        ipam["timeout"] = 10
    elif ipam["timeout"] <= 0 and op != "release":
        raise InvalidConfig("ipam.timeout must be a positive number of seconds")
    return {
        "op": op,
        "containerID": args.container_id,
        "netns": args.netns_path,
        "ifname": args.ifname,
        "network": conf["name"],
        "ipam": ipam,
    }


def cmd_add(args: CmdArgs) -> Result:
    # lazy: ADD only: DEL need not load the result codecs
    from kanal.spec.convert import parse_result

    conf = _conf(args)
    req = _req("allocate", args, conf)
    reply = _call(_socket_path(args, conf), req, timeout=float(req["ipam"]["timeout"]) + 30)
    result = parse_result(json.dumps(reply["result"]).encode(), "1.0.0")
    result.cni_version = args.cni_version
    return result


def cmd_del(args: CmdArgs) -> None:
    conf = _conf(args, lenient=True)
    try:
        _call(_socket_path(args, conf), _req("release", args, conf))
    except Unavailable:
        pass  # no daemon: no lease is held anywhere, nothing to release


def cmd_check(args: CmdArgs) -> None:
    conf = _conf(args)
    _call(_socket_path(args, conf), _req("check", args, conf))


def cmd_status(args: CmdArgs) -> None:
    _call(_socket_path(args, _conf(args)), {"op": "status"})


def cmd_gc(args: CmdArgs) -> None:
    # lazy: GC only (the conflist reader is not on the ADD/DEL path)
    from kanal.spec.netconf import parse_plugin_conf

    conf = _conf(args)
    valid = parse_plugin_conf(args.conf, require_name=False).valid_attachments
    if valid is None:
        return
    _call(
        _socket_path(args, conf),
        {
            "op": "gc",
            "network": conf["name"],
            "valid": [[a.container_id, a.ifname] for a in valid],
        },
    )


PLUGIN = PluginFuncs(
    about="kanal dhcp plugin",
    versions=ALL_VERSIONS,
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
)


def main() -> None:
    plugin_main(PLUGIN)
