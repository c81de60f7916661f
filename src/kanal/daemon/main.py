"""``kanald``: the CNI fast path and the network manager's engine + REST API.

Everything kanald keeps is under ``--state-dir`` (the store, the engine's CNI
cache and plugin shims); its sockets are root-only (0600) unless told otherwise.
``--no-engine`` serves only the CNI fast path (what a CNI-only node needs).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kanal.daemon.api import ApiServer
    from kanal.engine.ipam import Pool

from kanal.fastpath.install import DEFAULT_SOCKET

__all__ = ["DEFAULT_API_SOCKET", "DEFAULT_STATE_DIR", "main"]

DEFAULT_STATE_DIR = "/var/lib/kanal"
DEFAULT_API_SOCKET = "/run/kanal/kanal.sock"


def _warm_up() -> None:
    # Import everything a plugin request touches now, not on the first ADD.
    from kanal.plugins.registry import PLUGINS, load_plugin

    for name in PLUGINS:
        try:
            load_plugin(name)
        except Exception:  # one broken plugin must not take the others down
            logging.exception("plugin %s does not load", name)
    import kanal.netlink.handle
    import kanal.spec.convert  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kanald", description="the kanal daemon")
    ap.add_argument("--socket", default=DEFAULT_SOCKET, help="fast-path socket for CNI plugins")
    ap.add_argument("--socket-mode", default="0600", help="permissions of the socket (octal)")
    ap.add_argument("--log-level", default="warning")
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
    args = ap.parse_args(argv)
    if args.docker_plugin_socket == "none":
        args.docker_plugin_socket = ""
    logging.basicConfig(level=args.log_level.upper(), format="kanald: %(message)s")
    from kanal.errors import KanalError
    from kanal.fastpath.server import FastPathServer

    _warm_up()
    from kanal.netlink import reaper

    left = reaper.reap_leftovers()
    if left:
        logging.warning("removed %d interfaces a previous kanald left to delete", left)
    reaper.enable()
    server = FastPathServer(args.socket, mode=int(args.socket_mode, 8))
    server.bind()
    try:
        api = None if args.no_engine else _start_engine(args)
    except KanalError as e:
        # A configuration kanald cannot run with (a malformed store URL, unusable
        # certificates, etcd refusing our certificate or user): one line, exit 1.
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


def _join_cluster(args: argparse.Namespace) -> Any:
    """This host's Cluster, registered (or registering in the background while
    etcd cannot be reached: local networks must not wait for it)."""
    import socket
    import time

    from kanal.engine.cluster import Cluster
    from kanal.errors import InvalidConfig, Unavailable
    from kanal.store import StoreRefused

    if not args.advertise_addr:
        raise InvalidConfig("--cluster-store needs --advertise-addr (this host's underlay IP)")
    cluster = Cluster(
        args.cluster_store,
        args.node_name or socket.gethostname(),
        args.advertise_addr,
        ttl=args.node_ttl,
        grace=args.cluster_grace,
        resync=args.cluster_resync,
        opts=args.cluster_store_opt,
    )
    settings = cluster.store.connector.settings
    if not settings.tls:
        who = "unauthenticated"
        if settings.username:
            who = f"etcd user {settings.username!r}, password in clear"
        logging.warning(
            "the cluster store is plain HTTP (%s): anyone who can reach etcd on the underlay "
            "can read and rewrite every host's overlay records; use etcds:// with "
            "--cluster-store-opt kv.cacertfile=...,kv.certfile=...,kv.keyfile=...",
            who,
        )

    def register() -> None:
        while True:
            try:
                cluster.start()
                logging.info("joined the cluster as %s", cluster.node)
                return
            except Unavailable as e:
                logging.warning("cluster store unavailable, retrying: %s", e)
                time.sleep(2)

    try:
        cluster.start()
    except StoreRefused:
        raise  # etcd answers but refuses us: a configuration problem, kanald stops
    except Unavailable as e:
        logging.warning("cluster store unavailable at start, registering later: %s", e)
        threading.Thread(target=register, name="kanal-cluster-join", daemon=True).start()
    return cluster


def _pools(specs: list[str]) -> list[Pool]:
    from kanal.engine.ipam import Pool
    from kanal.errors import InvalidConfig

    out: list[Pool] = []
    for spec in specs:
        fields = dict(kv.partition("=")[::2] for kv in spec.split(","))
        try:
            out.append(Pool(fields["base"], int(fields["size"])))
        except (KeyError, ValueError):
            raise InvalidConfig(f"invalid address pool {spec!r}: want base=CIDR,size=N") from None
    return out


def _start_engine(args: argparse.Namespace) -> ApiServer:
    import os

    from kanal.daemon.api import ApiServer, serve_in_thread
    from kanal.daemon.statedir import tighten
    from kanal.engine.context import EngineContext
    from kanal.engine.controller import Controller
    from kanal.engine.ipam import DEFAULT_POOLS
    from kanal.errors import InvalidConfig, KanalError
    from kanal.store import open_store

    # The directories parts of the engine make later (some with makedirs' default
    # modes for intermediate directories) exist from the start, root-only.
    for sub in ("bin", "cni-cache", "sandboxes"):
        os.makedirs(os.path.join(args.state_dir, sub), mode=0o700, exist_ok=True)
    if tighten(args.state_dir):
        logging.warning("state directory %s: permissions tightened to root-only", args.state_dir)
    store = open_store(args.store or f"sqlite://{os.path.join(args.state_dir, 'state.db')}")
    ctx = EngineContext(
        state_dir=args.state_dir,
        cni_paths=[p for p in args.cni_path.split(":") if p],
        cni_conf_dir=args.cni_conf_dir,
        plugin_dirs=args.plugin_dir or None,
        own_plugin_socket=args.docker_plugin_socket,
    )
    if args.cluster_store:
        ctx.cluster = _join_cluster(args)
    elif args.cluster_store_opt:
        raise InvalidConfig("--cluster-store-opt needs --cluster-store")
    pools = _pools(args.default_address_pool) or list(DEFAULT_POOLS)
    ctrl = Controller(
        store,
        ctx,
        pools=pools,
        default_bridge=args.default_bridge,
        default_subnet=args.default_subnet,
    )
    from kanal.engine.recovery import recover
    from kanal.engine.sandboxes import SandboxManager

    manager = SandboxManager(store, ctrl, state_dir=args.state_dir, netns_dir=args.netns_dir)
    # Operations a killed kanald left half done are finished or undone first.
    recover(ctrl, manager)
    ctrl.ensure_builtin()
    if ctx.cluster is not None:
        # Addresses freed by the cluster while this host was away are not ours any more.
        ctx.cluster.on_rejoin.append(ctrl.drop_lost_addresses)
        try:
            ctrl.drop_lost_addresses()
        except KanalError as e:
            logging.warning("could not check overlay addresses against the cluster: %s", e)
    ctrl.sync_cni_networks()
    counts = ctrl.reconcile()
    counts.update(manager.reconcile())
    logging.info("engine reconciled: %s", counts)
    from kanal.daemon.api import ChainedSandboxes, NetnsSandboxes
    from kanal.engine.dns import DnsService

    dns = DnsService(manager.lookup, reverse=manager.reverse)
    manager.dns = dns
    dns.start()

    def on_change(event: str, net: object, ep: Any) -> None:
        # Names follow endpoints; a sandbox's /etc/hosts, resolv.conf and DNS its networks.
        manager.invalidate()
        manager.refresh_files(ep.sandbox_id)

    ctrl.listeners.append(on_change)
    if ctx.cluster is not None:
        # Names published by other hosts change what the embedded DNS answers.
        ctx.cluster.agent.subscribe(lambda network: manager.invalidate())
    for sb in manager.list_all():  # the DNS sockets died with the previous daemon
        manager.sync_dns(sb)
    from kanal.engine.repair import Repairer
    from kanal.engine.watch import KernelWatch

    # Outside changes (nft flush, a deleted bridge or veth, an unmounted namespace)
    # are put back, from kernel notifications and every --reconcile-interval.
    repairer = Repairer(ctrl, manager)
    KernelWatch(repairer.run, repairer.watched, interval=args.reconcile_interval).start()
    api = ApiServer(
        args.api_socket,
        ctrl,
        sandboxes=ChainedSandboxes(manager, NetnsSandboxes(args.netns_dir)),
        mode=int(args.api_socket_mode, 8),
        manager=manager,
        idle_timeout=args.api_idle_timeout,
    )
    serve_in_thread(api)
    print(f"kanald: engine API on {args.api_socket}", file=sys.stderr, flush=True)
    if args.docker_plugin_socket:
        from kanal.dockerplugin import serve
        from kanal.dockerplugin.server import serve_in_thread as serve_plugin
        from kanal.dockerplugin.server import write_spec

        try:
            api.plugin = serve(
                ctrl, args.docker_plugin_socket, mode=int(args.docker_plugin_socket_mode, 8)
            )
        except (KanalError, OSError) as e:
            # The plugin is an extra face: the engine and the CNI fast path go on.
            logging.error("not serving the Docker plugin on %s: %s", args.docker_plugin_socket, e)
        else:
            serve_plugin(api.plugin)
            if args.docker_plugin_spec:
                write_spec(args.docker_plugin_spec, args.docker_plugin_socket)
            print(
                f"kanald: Docker plugin 'kanal' on {args.docker_plugin_socket}",
                file=sys.stderr,
                flush=True,
            )
    return api


if __name__ == "__main__":
    main()
