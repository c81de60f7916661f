"""kanald's engine side: the controller, sandboxes, DNS, repair, the REST API and the
Docker plugin, made from the command line's options and started in order.

The order matters for crash safety (docs/crash-safety.md): operations a killed
kanald left half done are resolved first (recovery), then the built-in and CNI
networks exist, then the kernel is brought back to the store (reconcile); only
then are requests served.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from kanal.daemon.api import ApiServer, serve_in_thread
from kanal.daemon.cniruntime import inprocess_cni
from kanal.daemon.resolvers import ChainedSandboxes, NetnsSandboxes
from kanal.daemon.shapes import container_event
from kanal.daemon.statedir import tighten
from kanal.dockerplugin import serve
from kanal.dockerplugin.server import serve_in_thread as serve_plugin
from kanal.dockerplugin.server import write_spec
from kanal.engine.clusterloss import drop_lost_addresses
from kanal.engine.context import EngineContext
from kanal.engine.controller import Controller
from kanal.engine.dns import DnsService
from kanal.engine.ipam import DEFAULT_POOLS, Pool
from kanal.engine.observe import ObservedController, ObservedSandboxManager
from kanal.engine.recovery import recover
from kanal.engine.remoteplugins import PluginRegistry
from kanal.engine.repair import Repairer
from kanal.engine.sandboxes import SandboxManager
from kanal.engine.watch import KernelWatch
from kanal.errors import InvalidConfig, KanalError, Unavailable
from kanal.store import StoreRefused, open_store

if TYPE_CHECKING:
    from kanal.daemon.metrics import Metrics
    from kanal.engine.cluster import Cluster

__all__ = ["start_engine"]


def start_engine(args: argparse.Namespace, metrics: Metrics | None = None) -> ApiServer:
    """Everything but the CNI fast path, started; the API server (serving).

    ``metrics``: told of the engine's operations and CNI execs, and shown its state
    (served on ``GET /metrics``)."""
    ctrl, manager = _open_engine(args, metrics)
    _recover_and_reconcile(ctrl, manager)
    _start_dns(ctrl, manager)
    if metrics is not None:
        metrics.watch_engine(ctrl, manager, manager.dns)
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
        metrics=metrics,
    )
    manager.lifecycle.append(
        lambda action, sb, attrs: api.events.publish(container_event(action, sb.id, attrs))
    )
    if ctrl.cluster is not None:
        # lazy: only a kanald with --cluster-store watches its peers
        from kanal.daemon.peerevents import watch_peers

        watch_peers(ctrl.cluster, api.events.publish, threading.Event())
    serve_in_thread(api)
    print(f"kanald: engine API on {args.api_socket}", file=sys.stderr, flush=True)
    if args.docker_plugin_socket:
        _serve_docker_plugin(args, ctrl, api)
    return api


def _open_engine(
    args: argparse.Namespace, metrics: Metrics | None = None
) -> tuple[Controller, ObservedSandboxManager]:
    """The store, the context (with its injected runtimes) and the two managers."""
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
        cni_runtime=inprocess_cni,
        # The socket this daemon serves the Docker plugin on is never used as a
        # remote plugin (calling ourselves through the controller's lock would deadlock).
        plugins=PluginRegistry(args.plugin_dir or None, exclude=args.docker_plugin_socket),
    )
    if metrics is not None:
        ctx.on_operation = metrics.observe_operation
        ctx.on_cni_exec = metrics.observe_engine_exec
        ctx.on_cni_child_exec = metrics.observe_child_exec
    if args.cluster_store:
        ctx.cluster = _join_cluster(args)
    elif args.cluster_store_opt:
        raise InvalidConfig("--cluster-store-opt needs --cluster-store")
    pools = _pools(args.default_address_pool) or list(DEFAULT_POOLS)
    ctrl = ObservedController(
        store,
        ctx,
        pools=pools,
        default_bridge=args.default_bridge,
        default_subnet=args.default_subnet,
    )
    manager = ObservedSandboxManager(
        store,
        ctrl,
        state_dir=args.state_dir,
        netns_dir=args.netns_dir,
        host_gateway_ip=getattr(args, "host_gateway_ip", ""),
    )
    return ctrl, manager


def _recover_and_reconcile(ctrl: Controller, manager: SandboxManager) -> None:
    # Operations a killed kanald left half done are finished or undone first.
    recover(ctrl, manager)
    ctrl.ensure_builtin()
    cluster = ctrl.cluster
    if cluster is not None:
        # Addresses freed by the cluster while this host was away are not ours any more.
        cluster.on_rejoin.append(lambda: drop_lost_addresses(ctrl))
        try:
            drop_lost_addresses(ctrl)
        except KanalError as e:
            logging.warning("could not check overlay addresses against the cluster: %s", e)
    ctrl.sync_cni_networks()
    counts = ctrl.reconcile()
    counts.update(manager.reconcile())
    logging.info("engine reconciled: %s", counts)


def _start_dns(ctrl: Controller, manager: SandboxManager) -> None:
    dns = DnsService(manager.lookup, reverse=manager.reverse)
    manager.dns = dns
    dns.start()

    def on_change(event: str, net: object, ep: Any) -> None:
        # Names follow endpoints; a sandbox's /etc/hosts, resolv.conf and DNS its networks.
        manager.invalidate()
        manager.refresh_files(ep.sandbox_id)

    ctrl.listeners.append(on_change)
    cluster = ctrl.cluster
    if cluster is not None:
        # Names published by other hosts change what the embedded DNS answers.
        cluster.agent.subscribe(lambda network: manager.invalidate())
    for sb in manager.list_all():  # the DNS sockets died with the previous daemon
        manager.sync_dns(sb)


def _serve_docker_plugin(args: argparse.Namespace, ctrl: Controller, api: ApiServer) -> None:
    try:
        api.plugin = serve(
            ctrl, args.docker_plugin_socket, mode=int(args.docker_plugin_socket_mode, 8)
        )
    except (KanalError, OSError) as e:
        # The plugin is an extra face: the engine and the CNI fast path go on.
        logging.error("not serving the Docker plugin on %s: %s", args.docker_plugin_socket, e)
        return
    serve_plugin(api.plugin)
    if args.docker_plugin_spec:
        write_spec(args.docker_plugin_spec, args.docker_plugin_socket)
    print(
        f"kanald: Docker plugin 'kanal' on {args.docker_plugin_socket}",
        file=sys.stderr,
        flush=True,
    )


def _join_cluster(args: argparse.Namespace) -> Cluster:
    """This host's Cluster, registered (or registering in the background while
    etcd cannot be reached: local networks must not wait for it)."""
    # lazy: only a kanald with --cluster-store loads the cluster layer (etcd, agent)
    from kanal.engine.cluster import Cluster

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
    out: list[Pool] = []
    for spec in specs:
        fields = dict(kv.partition("=")[::2] for kv in spec.split(","))
        try:
            out.append(Pool(fields["base"], int(fields["size"])))
        except (KeyError, ValueError):
            raise InvalidConfig(f"invalid address pool {spec!r}: want base=CIDR,size=N") from None
    return out
