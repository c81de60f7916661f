"""``kanal cni``: run network configurations like Go's ``cnitool``, and install plugins.

``kanal cni add|check|del|gc|status NETNAME NETNS [-i IFNAME]`` behaves as
``cnitool`` (``cnitool/cmd/root.go``):

- the configuration is loaded from ``$NETCONFPATH`` (default ``/etc/cni/net.d``)
  with libcni's lookup rules; plugins are searched in ``$CNI_PATH``;
- ``$CAP_ARGS`` is a JSON object of capability arguments; ``$CNI_ARGS`` is
  ``K=V;K2=V2``, every pair with a non-empty key and value;
- the interface is ``-i``, else ``$CNI_IFNAME``, else ``eth0``;
- the container ID is ``cnitool-`` + hex of the first 10 bytes of SHA-512 of the
  absolute netns path, so kanal and cnitool address the same attachment;
- ``add`` prints the result as cnitool does (indented JSON); ``gc`` deletes every
  cached attachment of the network (no valid list) then sends GC; ``status`` exits 0
  when every plugin is ready.

kanal additions: ``--conf-dir``, ``--cni-path`` (":"-separated) and ``--cache-dir``
(default ``/var/lib/cni``) override the environment and defaults; ``add`` and
``check`` refuse a NETNS that is not a network namespace before running anything;
``gc --valid CONTAINERID:IFNAME`` (repeatable) keeps those attachments; NETNS is
optional for ``gc`` and ``status``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kanal.runtime.libcni import CNIConfig, RuntimeConf
    from kanal.spec.netconf import ConfList

__all__ = ["DEFAULT_CACHE_DIR", "DEFAULT_CONF_DIR", "container_id_for", "register"]

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CACHE_DIR = "/var/lib/cni"


def register(subparsers: Any) -> None:
    """Add ``cni`` and its subcommands to the top-level parser."""
    cni = subparsers.add_parser(
        "cni",
        help="run CNI network configurations (cnitool-compatible), install plugins",
        description="Run a CNI network configuration against a network namespace, "
        "as cnitool does. Environment: NETCONFPATH, CNI_PATH, CAP_ARGS, CNI_ARGS, CNI_IFNAME.",
    )
    cni.set_defaults(handler=None, _parser=cni)
    ops = cni.add_subparsers(title="commands", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-i", "--ifname", default="", help="interface name (default: $CNI_IFNAME or eth0)"
    )
    common.add_argument(
        "--conf-dir",
        metavar="DIR",
        help=f"configuration directory (default: $NETCONFPATH or {DEFAULT_CONF_DIR})",
    )
    common.add_argument(
        "--cni-path", metavar="DIRS", help="plugin directories, ':'-separated (default: $CNI_PATH)"
    )
    common.add_argument(
        "--cache-dir",
        metavar="DIR",
        default=DEFAULT_CACHE_DIR,
        help=f"result cache directory (default: {DEFAULT_CACHE_DIR})",
    )

    helps = {
        "add": "add the container in NETNS to network NETNAME; prints the result",
        "check": "check the container's attachment (config version >= 0.4.0)",
        "del": "delete the container's attachment",
        "gc": "delete stale cached attachments of the network, then send GC",
        "status": "check that every plugin of the network is ready (>= 1.1.0)",
    }
    for op, text in helps.items():
        p = ops.add_parser(op, parents=[common], help=text, description=text)
        p.add_argument("network", metavar="NETNAME")
        if op in ("gc", "status"):
            p.add_argument("netns", metavar="NETNS", nargs="?", default="")
        else:
            p.add_argument("netns", metavar="NETNS", help="path of the network namespace")
        if op == "gc":
            p.add_argument(
                "--valid",
                metavar="CONTAINERID:IFNAME",
                action="append",
                default=None,
                help="an attachment to keep (repeatable); without any, all are collected",
            )
        p.set_defaults(handler=_run, op=op)

    install = ops.add_parser(
        "install",
        help="install kanal's CNI plugin executables into a directory",
        description="Write one executable per kanal CNI plugin into DIR.",
    )
    install.add_argument("--dir", required=True, metavar="DIR", help="destination directory")
    install.add_argument("--socket", metavar="PATH", help="kanald socket the plugins use")
    install.set_defaults(handler=_install)


def container_id_for(netns: str) -> str:
    """cnitool's container ID for a netns path: ``cnitool-`` + sha512(abs path)[:10] in hex."""
    import hashlib

    digest = hashlib.sha512(_go_abs(netns).encode("utf-8", "surrogateescape")).digest()
    return "cnitool-" + digest[:10].hex()


def _go_abs(path: str) -> str:
    # Go filepath.Abs: join with the cwd, then Clean (which, unlike normpath, folds "//").
    p = os.path.abspath(path)
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    return p


def _split_paths(value: str) -> list[str]:
    return [p for p in value.split(os.pathsep) if p]


def _check_netns(path: str) -> None:
    """Refuse anything but a network namespace file (before any plugin runs)."""
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.runtime.netnscheck import check_netns

    check_netns(path)


def _capability_args(value: str) -> dict[str, Any]:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import DecodeError
    from kanal.spec.gotext import loads

    if not value:
        return {}
    try:
        caps = loads(value, "invalid CAP_ARGS")
    except DecodeError as e:
        raise DecodeError("invalid CAP_ARGS: not JSON", e.details) from e
    if caps is None:
        return {}
    if not isinstance(caps, dict):
        raise DecodeError("invalid CAP_ARGS", "want a JSON object")
    return caps


def _setup(args: argparse.Namespace) -> tuple[CNIConfig, ConfList, RuntimeConf]:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.runtime.config import load_network_conf
    from kanal.runtime.libcni import CNIConfig, RuntimeConf
    from kanal.spec.args import parse_cni_args

    env = os.environ
    conf_dir = args.conf_dir or env.get("NETCONFPATH") or DEFAULT_CONF_DIR
    conflist = load_network_conf(conf_dir, args.network)
    caps = _capability_args(env.get("CAP_ARGS", ""))
    cni_args = parse_cni_args(env.get("CNI_ARGS", ""), strict=True)
    ifname = args.ifname or env.get("CNI_IFNAME") or "eth0"
    netns = _go_abs(args.netns) if args.netns else ""
    rt = RuntimeConf(
        container_id=container_id_for(netns) if netns else "",
        netns=netns,
        ifname=ifname,
        args=cni_args,
        capability_args=caps,
    )
    cni_path = args.cni_path if args.cni_path is not None else env.get("CNI_PATH", "")
    return CNIConfig(_split_paths(cni_path), args.cache_dir), conflist, rt


def _valid_attachments(values: list[str] | None) -> list[dict[str, str]] | None:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import InvalidConfig

    if values is None:
        return None
    out = []
    for v in values:
        cid, sep, ifname = v.partition(":")
        if not sep or not cid or not ifname:
            raise InvalidConfig(f"invalid --valid {v!r}: want CONTAINERID:IFNAME")
        out.append({"containerID": cid, "ifname": ifname})
    return out


def _run(args: argparse.Namespace) -> int:
    cni, conflist, rt = _setup(args)
    op = args.op
    if op in ("add", "check"):
        _check_netns(rt.netns)
    if op == "add":
        # lazy: a kanal command loads only what it runs (the CLI starts for every call)
        from kanal.spec.convert import dumps, render_result

        result = cni.add_network_list(conflist, rt)
        out = dumps(render_result(result, result.cni_version))
        # cnitool prints no trailing newline; add one only for a human at a terminal.
        sys.stdout.buffer.write(out + (b"\n" if sys.stdout.isatty() else b""))
        sys.stdout.flush()
    elif op == "check":
        cni.check_network_list(conflist, rt)
    elif op == "del":
        cni.del_network_list(conflist, rt)
    elif op == "gc":
        cni.gc_network_list(conflist, _valid_attachments(args.valid))
    elif op == "status":
        cni.get_status_network_list(conflist)
    return 0


def _install(args: argparse.Namespace) -> int:
    # lazy: a kanal command loads only what it runs (the CLI starts for every call)
    from kanal.errors import Unavailable

    try:
        from kanal.fastpath.install import install_plugins
    except ImportError as e:
        raise Unavailable("plugin installation is not available in this build", str(e)) from e
    for path in install_plugins(args.dir, args.socket):
        print(path)
    return 0
