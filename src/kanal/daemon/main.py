"""``kanald``: the CNI fast path and the network manager's engine + REST API.

Everything kanald keeps is under ``--state-dir`` (the store, the engine's CNI
cache and plugin shims); its sockets are root-only (0600) unless told otherwise.
``--no-engine`` serves only the CNI fast path (what a CNI-only node needs).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kanal.daemon.api import ApiServer
    from kanal.daemon.metrics import Metrics

from kanal.fastpath.install import DEFAULT_SOCKET

__all__ = ["DEFAULT_API_SOCKET", "DEFAULT_STATE_DIR", "main"]

DEFAULT_STATE_DIR = "/var/lib/kanal"
DEFAULT_API_SOCKET = "/run/kanal/kanal.sock"
#: --log-level's values (kanal.daemon.runtimeenv sets the logging up)
LEVELS = ("debug", "info", "warning", "error", "critical")


def _warm_up() -> None:
    # lazy (all of this function): it *is* the warm-up. Import everything a plugin
    # request touches now, not on the first ADD.
    from kanal.plugins.registry import PLUGINS, load_plugin

    for name in PLUGINS:
        try:
            load_plugin(name)
        except Exception:  # one broken plugin must not take the others down
            logging.exception("plugin %s does not load", name)
    import kanal.netlink.handle
    import kanal.spec.convert  # noqa: F401


def _host_gateway_ip(value: str) -> str:
    import ipaddress

    if not value:
        return ""  # the default: the gateway of the sandbox's first network
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IP address {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """kanald's options (one per engine part they configure)."""
    ap = argparse.ArgumentParser(prog="kanald", description="the kanal daemon")
    ap.add_argument("--socket", default=DEFAULT_SOCKET, help="fast-path socket for CNI plugins")
    ap.add_argument("--socket-mode", default="0600", help="permissions of the socket (octal)")
    ap.add_argument(
        "--log-level",
        default="warning",
        type=str.lower,
        choices=LEVELS,
        help="the least severe records logged: " + ", ".join(LEVELS) + " (default: warning)",
    )
    ap.add_argument("--log-file", default="", help="log here (appended, 0600), not to stderr")
    ap.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text: a timestamped line per record; json: one JSON object per line",
    )
    ap.add_argument("--no-engine", action="store_true", help="serve only the CNI fast path")
    ap.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="the engine's state")
    ap.add_argument("--api-socket", default=DEFAULT_API_SOCKET, help="the REST API socket")
    ap.add_argument("--api-socket-mode", default="0600", help="permissions of the API socket")
    ap.add_argument(
        "--api-idle-timeout",
        type=float,
        default=60.0,
        help="seconds an idle API connection is kept open",
    )
    ap.add_argument("--store", default="", help="state store URL (default: sqlite in state dir)")
    ap.add_argument("--default-bridge", default="kanal0", help="bridge of the 'bridge' network")
    ap.add_argument("--default-subnet", default="", help="subnet of the 'bridge' network")
    ap.add_argument(
        "--host-gateway-ip",
        default="",
        type=_host_gateway_ip,
        metavar="IP",
        help="what --add-host NAME:host-gateway means "
        "(default: the gateway of the sandbox's first network)",
    )
    ap.add_argument(
        "--netns-dir", default="/run/netns", help="named namespaces usable as sandboxes"
    )
    ap.add_argument(
        "--cni-conf-dir",
        default="/etc/cni/net.d",
        help="configuration lists that become 'cni' networks",
    )
    ap.add_argument(
        "--cni-path",
        default="/opt/cni/bin:/usr/lib/cni",
        help="where plugins of 'cni' networks are found, after kanal's own",
    )
    ap.add_argument(
        "--default-address-pool",
        action="append",
        default=[],
        metavar="base=CIDR,size=N",
        help="pool for networks without --subnet (repeatable; docker's defaults otherwise)",
    )
    ap.add_argument(
        "--docker-plugin-socket",
        default="/run/docker/plugins/kanal.sock",
        help="serve the Docker network + IPAM plugin protocol here ('' or 'none': off)",
    )
    ap.add_argument("--docker-plugin-socket-mode", default="0600")
    ap.add_argument(
        "--docker-plugin-spec",
        default="",
        help="also write a dockerd .spec discovery file here (e.g. /etc/docker/plugins/kanal.spec)",
    )
    ap.add_argument(
        "--plugin-dir",
        action="append",
        default=[],
        help="where remote Docker plugins are discovered (repeatable; dockerd's dirs otherwise)",
    )
    _add_cluster_options(ap)
    _add_metrics_options(ap)
    return ap


def _add_metrics_options(ap: argparse.ArgumentParser) -> None:
    """Where Prometheus metrics are served besides the API socket's ``/metrics``."""
    ap.add_argument(
        "--metrics-addr",
        default="",
        metavar="IP:PORT",
        help="also serve Prometheus metrics over HTTP here (always on the API socket's /metrics)",
    )


def _add_cluster_options(ap: argparse.ArgumentParser) -> None:
    """Multi-host: the cluster store, this host, and the reconcile periods."""
    ap.add_argument(
        "--cluster-store",
        default="",
        metavar="etcds://HOST:PORT[,HOST:PORT...][/PREFIX]",
        help="join a cluster: global (overlay) networks and hosts in this etcd "
        "(etcds:// or https://: TLS; etcd:// plain)",
    )
    ap.add_argument(
        "--cluster-store-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE...]",
        help="kv.cacertfile, kv.certfile, kv.keyfile (TLS), kv.username with kv.password "
        "or kv.passwordfile (etcd's users); repeatable",
    )
    ap.add_argument("--advertise-addr", default="", help="this host's underlay address (VTEP)")
    ap.add_argument("--node-name", default="", help="this host's name in the cluster")
    ap.add_argument("--node-ttl", type=int, default=15, help="the node lease's TTL (s)")
    ap.add_argument(
        "--cluster-grace",
        type=float,
        default=60.0,
        help="seconds a gone host's address blocks are kept before they are freed",
    )
    ap.add_argument(
        "--cluster-resync",
        type=float,
        default=30.0,
        help="seconds between full overlay reconciles (and garbage collections)",
    )
    ap.add_argument(
        "--reconcile-interval",
        type=float,
        default=10.0,
        help="seconds between full checks that the kernel still has what live objects "
        "need (outside changes are also noticed at once, from kernel notifications)",
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.docker_plugin_socket == "none":
        args.docker_plugin_socket = ""
    # lazy: the CLI imports this module (for DEFAULT_API_SOCKET); only kanald
    # itself pays for the fast path, the engine and the netlink layer
    from kanal.daemon import runtimeenv

    try:
        runtimeenv.require_root()
        runtimeenv.setup_logging(args.log_level, args.log_file, args.log_format)
        # one kanald per state (and per fast-path socket, which --no-engine has alone)
        lock_path = (
            f"{args.socket}.pid"
            if args.no_engine
            else os.path.join(args.state_dir, runtimeenv.LOCK_FILE)
        )
        lock = runtimeenv.hold_instance_lock(lock_path)
        if not args.no_engine:  # before the engine makes anything
            runtimeenv.check_socket_free(args.api_socket)
            runtimeenv.check_socket_free(args.docker_plugin_socket)
    except runtimeenv.StartError as e:
        print(f"kanald: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    _serve(args)
    lock.close()


def _serve(args: argparse.Namespace) -> None:
    # lazy: as in main()
    from kanal.errors import KanalError
    from kanal.fastpath.server import FastPathServer

    _warm_up()
    from kanal.netlink import reaper

    left = reaper.reap_leftovers()
    if left:
        logging.warning("removed %d interfaces a previous kanald left to delete", left)
    reaper.enable()
    from kanal.daemon.metrics import Metrics  # lazy: the CLI imports this module

    metrics = Metrics()
    server = FastPathServer(args.socket, mode=int(args.socket_mode, 8))
    server.observe = metrics.observe_fastpath
    try:
        server.bind()
    except KanalError as e:  # another daemon serves this socket (and keeps it)
        print(f"kanald: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    try:
        if args.metrics_addr:
            _serve_metrics(metrics, args.metrics_addr)
        api = None if args.no_engine else _start_engine(args, metrics)
    except KanalError as e:
        # A configuration kanald cannot run with (a malformed store URL, unusable
        # certificates, etcd refusing our certificate or user, an API socket
        # another daemon serves): one line, exit 1.
        server.shutdown()
        print(f"kanald: {e}", file=sys.stderr, flush=True)
        sys.exit(1)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()
        if api is not None:
            threading.Thread(target=api.shutdown, daemon=True).start()
            if api.plugin is not None:
                threading.Thread(target=api.plugin.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"kanald: serving CNI plugins on {args.socket}", file=sys.stderr, flush=True)
    server.serve_forever()
    if api is not None:
        api.server_close()
        if api.plugin is not None:
            api.plugin.server_close()


def _start_engine(args: argparse.Namespace, metrics: Metrics) -> ApiServer:
    from kanal.daemon.engine import start_engine  # lazy: as in main()

    return start_engine(args, metrics)


def _serve_metrics(metrics: Metrics, addr: str) -> None:
    """``--metrics-addr``. Raises InvalidConfig (bad address, or it cannot be bound)."""
    from kanal.errors import InvalidConfig  # lazy: as in main()

    try:
        metrics.serve(addr)
    except OSError as e:
        raise InvalidConfig(f"cannot serve metrics on {addr}: {e.strerror or e}") from None
    print(f"kanald: metrics on http://{addr}/metrics", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
