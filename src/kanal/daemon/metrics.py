"""kanald's Prometheus metrics: one registry per daemon, served on ``GET /metrics``.

Only kanald imports this module (a plugin exec never does: the fast path server and
the engine are handed plain callables, and the embedded DNS and overlay agent keep
plain integer counters read at scrape time). Each :class:`Metrics` has its own
:class:`~prometheus_client.CollectorRegistry`, never the library's global one, so
several daemons in one process (tests) do not collide. See docs/observability.md.

What is measured:

- CNI plugin execs, by plugin, command and way (``fastpath``: a shim's request
  served by kanald; ``inprocess``: the engine running kanal's plugins itself;
  ``exec``: the engine starting another plugin), their latency, errors by CNI code;
- engine operations (network create/delete, connect/disconnect, sandbox
  create/remove): latency and failures;
- at scrape time: networks, endpoints, sandboxes by state, each network's address
  use; the embedded DNS's queries, answers by source and rcode, refusals, forwards
  in flight and forward latency; the overlay's peers, etcd errors (watch reconnects), reconciles;
- nftables: transactions by way, their failures and latency, and the elements of
  each of kanal's sets and maps (:mod:`kanal.daemon.layermetrics`);
- the process: memory, CPU, open fds (the library's process collector) and threads.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, start_http_server
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from kanal.daemon.layermetrics import FirewallCollector, overlay_extras
from kanal.engine.dns.stats import FORWARD_BUCKETS, RCODES
from kanal.errors import InvalidConfig

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.dns.server import DnsService
    from kanal.engine.sandboxes import SandboxManager

__all__ = ["CONTENT_TYPE", "Metrics", "parse_addr"]

log = logging.getLogger("kanal.metrics")
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: the CNI commands kept as label values; anything else is counted as "other"
COMMANDS = frozenset({"ADD", "DEL", "CHECK", "STATUS", "VERSION", "GC"})
#: latency buckets (seconds) of CNI execs and engine operations
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _command(cmd: str) -> str:
    return cmd if cmd in COMMANDS else "other"


def _wire_code(exit_code: int, stdout: bytes) -> int:
    """The CNI error code of a failed exec: its stdout's ``code``, else 999."""
    if exit_code == 0:
        return 0
    try:
        code = json.loads(stdout).get("code")
    except (ValueError, AttributeError):
        return 999
    return code if isinstance(code, int) and not isinstance(code, bool) else 999


class Metrics:
    """One daemon's metrics and their registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.cni_execs = Counter(
            "kanal_cni_execs",
            "CNI plugin execs run, by plugin, command and way (fastpath, inprocess, exec)",
            ["plugin", "command", "via"],
            registry=r,
        )
        self.cni_seconds = Histogram(
            "kanal_cni_exec_seconds",
            "CNI plugin exec latency",
            ["plugin", "command", "via"],
            buckets=BUCKETS,
            registry=r,
        )
        self.cni_errors = Counter(
            "kanal_cni_errors",
            "CNI plugin execs that failed, by CNI error code",
            ["plugin", "command", "code"],
            registry=r,
        )
        self.op_seconds = Histogram(
            "kanal_engine_operation_seconds",
            "engine operation latency (network_create, network_delete, connect, "
            "disconnect, sandbox_create, sandbox_remove)",
            ["operation"],
            buckets=BUCKETS,
            registry=r,
        )
        self.op_errors = Counter(
            "kanal_engine_operation_errors",
            "engine operations that failed",
            ["operation"],
            registry=r,
        )
        ProcessCollector(registry=r)
        r.register(_ThreadsCollector())
        r.register(FirewallCollector())
        self._engine: _EngineCollector | None = None

    # --- told by the fast path and the engine ------------------------------------------

    def observe_fastpath(
        self, plugin: str, command: str, exit_code: int, stdout: bytes, seconds: float
    ) -> None:
        """A request served on the CNI fast path (kanal.fastpath.server's observer)."""
        self._cni(plugin, command, "fastpath", seconds, _wire_code(exit_code, stdout))

    def observe_engine_exec(self, plugin: str, command: str, seconds: float, code: int) -> None:
        """A plugin the engine ran in this process (EngineContext.on_cni_exec)."""
        self._cni(plugin, command, "inprocess", seconds, code)

    def observe_child_exec(self, plugin: str, command: str, seconds: float, code: int) -> None:
        """A plugin the engine started as a process (not kanal's)."""
        self._cni(plugin, command, "exec", seconds, code)

    def _cni(self, plugin: str, command: str, via: str, seconds: float, code: int) -> None:
        cmd = _command(command)
        self.cni_execs.labels(plugin, cmd, via).inc()
        self.cni_seconds.labels(plugin, cmd, via).observe(seconds)
        if code:
            self.cni_errors.labels(plugin, cmd, str(code)).inc()

    def observe_operation(self, operation: str, seconds: float, ok: bool) -> None:
        """An engine operation (EngineContext.on_operation)."""
        self.op_seconds.labels(operation).observe(seconds)
        if not ok:
            self.op_errors.labels(operation).inc()

    def watch_engine(
        self, controller: Controller, manager: SandboxManager | None, dns: DnsService | None
    ) -> None:
        """Report the engine's state (read at each scrape) from now on."""
        if self._engine is None:
            self._engine = _EngineCollector(controller, manager, dns)
            self.registry.register(self._engine)

    # --- serving ----------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition of every metric now."""
        return generate_latest(self.registry)

    def serve(self, addr: str) -> None:
        """Also serve ``GET /metrics`` over HTTP on ``HOST:PORT`` (a daemon thread).

        Raises InvalidConfig (a malformed address) or OSError (cannot bind)."""
        host, port = parse_addr(addr)
        start_http_server(port, addr=host, registry=self.registry)


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` → (host, port). Raises InvalidConfig."""
    host, sep, port = addr.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
        # an IPv6 address only in brackets: "::1:80" could be either
        n = int(port) if bracketed == (ip.version == 6) else -1
    except ValueError:
        n = -1
    if not sep or not port.isdigit() or not 0 < n < 65536:
        raise InvalidConfig(f"invalid metrics address {addr!r}: want IP:PORT (e.g. 127.0.0.1:9323)")
    return host, n


class _ThreadsCollector(Collector):
    """``process_threads``: the kernel's count (threads outside Python's ``threading`` too)."""

    def collect(self) -> Iterable[Metric]:
        n = threading.active_count()
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("Threads:"):
                        n = int(line.split()[1])
                        break
        except (OSError, ValueError, IndexError):
            pass
        yield GaugeMetricFamily("process_threads", "threads of the kanald process", value=n)


class _EngineCollector(Collector):
    """The engine's state, read when scraped (no bookkeeping on the hot paths)."""

    def __init__(
        self, controller: Controller, manager: SandboxManager | None, dns: DnsService | None
    ) -> None:
        self.ctrl = controller
        self.manager = manager
        self.dns = dns

    def collect(self) -> Iterable[Metric]:
        # A failing part of a scrape drops its own metrics, not the whole answer.
        for part in (self._networks, self._sandboxes, self._dns, self._overlay):
            try:
                yield from part()
            except Exception:
                log.exception("metrics: %s", part.__name__)

    def _networks(self) -> Iterator[Metric]:
        nets = [n for n in self.ctrl.networks() if not n.driver_state.get("deleting")]
        by_kind: dict[tuple[str, str], int] = {}
        for n in nets:
            by_kind[(n.driver, n.scope)] = by_kind.get((n.driver, n.scope), 0) + 1
        g = GaugeMetricFamily("kanal_networks", "networks", labels=["driver", "scope"])
        for (driver, scope), count in sorted(by_kind.items()):
            g.add_metric([driver, scope], count)
        yield g
        eps: dict[str, int] = {}
        for ep in self.ctrl.endpoints():
            eps[ep.network_id] = eps.get(ep.network_id, 0) + 1
        e = GaugeMetricFamily("kanal_endpoints", "endpoints on this host", labels=["network"])
        used = GaugeMetricFamily(
            "kanal_network_addresses_used",
            "addresses handed out in a network's subnet",
            labels=["network", "subnet"],
        )
        size = GaugeMetricFamily(
            "kanal_network_addresses_size",
            "addresses a network's subnet can hand out (without network, broadcast, gateway)",
            labels=["network", "subnet"],
        )
        for n in nets:
            e.add_metric([n.name], eps.get(n.id, 0))
            if not n.ipam:
                continue
            taken = [ipaddress.ip_address(a) for a in self.ctrl.ipam.in_use(n.id)]
            for cfg in n.ipam:
                sub = ipaddress.ip_network(cfg.subnet, strict=False)
                reserved = len(self.ctrl.ipam.reserved(n, cfg))
                used.add_metric([n.name, cfg.subnet], sum(1 for a in taken if a in sub))
                size.add_metric([n.name, cfg.subnet], max(0, sub.num_addresses - reserved))
        yield e
        yield used
        yield size

    def _sandboxes(self) -> Iterator[Metric]:
        if self.manager is None:
            return
        states = {"created": 0, "running": 0, "exited": 0}
        for sb in self.manager.list_all():
            states[sb.state] = states.get(sb.state, 0) + 1
        g = GaugeMetricFamily("kanal_sandboxes", "sandboxes by state", labels=["state"])
        for state, count in sorted(states.items()):
            g.add_metric([state], count)
        yield g

    def _dns(self) -> Iterator[Metric]:
        if self.dns is None:
            return
        s = self.dns.stats
        yield CounterMetricFamily(
            "kanal_dns_queries", "queries to the embedded DNS (all sandboxes)", value=s.queries
        )
        a = CounterMetricFamily(
            "kanal_dns_answers",
            "answers sent, by source (local: ours; forwarded: an upstream's) and rcode",
            labels=["source", "rcode"],
        )
        for rc, n in sorted(s.local_answers().items()):
            a.add_metric(["local", RCODES.get(rc, str(rc))], n)
        for (src, rc), n in sorted(s.answers.items()):
            if src != "local":
                a.add_metric([src, RCODES.get(rc, str(rc))], n)
        yield a
        yield CounterMetricFamily(
            "kanal_dns_cache_hits", "local answers sent from the packed cache", value=s.cache_hits
        )
        yield CounterMetricFamily(
            "kanal_dns_refused", "queries refused: too many forwards in flight", value=s.refused
        )
        yield CounterMetricFamily(
            "kanal_dns_dropped", "queries dropped as garbage (no answer)", value=s.dropped
        )
        yield GaugeMetricFamily(
            "kanal_dns_forwards_in_flight",
            "forwards waiting for an upstream",
            value=self.dns.inflight,
        )
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip((*FORWARD_BUCKETS, float("inf")), list(s.forward_buckets)):
            acc += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), acc))
        yield HistogramMetricFamily(
            "kanal_dns_forward_seconds",
            "latency of forwarded queries (to the answer sent)",
            buckets=buckets,
            sum_value=s.forward_seconds,
        )

    def _overlay(self) -> Iterator[Metric]:
        cluster: Any = self.ctrl.cluster
        if cluster is None:
            return
        agent = cluster.agent
        peers = [n for n in cluster.nodes() if not n["Self"]]  # one etcd listing
        yield GaugeMetricFamily(
            "kanal_overlay_peer_hosts", "other hosts registered in the cluster", value=len(peers)
        )
        g = GaugeMetricFamily(
            "kanal_overlay_remote_endpoints",
            "other hosts' endpoints on a global network (from the agent's model)",
            labels=["network"],
        )
        for n in self.ctrl.networks():
            if n.scope == "global":
                remote = [r for r in agent.endpoints(n.id) if r.host != cluster.node]
                g.add_metric([n.name], len(remote))
        yield g
        yield CounterMetricFamily(
            "kanal_overlay_etcd_errors",
            "etcd errors the overlay agent met (each followed by a retry: the watch "
            "reconnects to the next member, a listing or reconcile is tried again)",
            value=agent.stats.etcd_errors,
        )
        yield CounterMetricFamily(
            "kanal_overlay_reconciles", "full overlay reconciles run", value=agent.stats.reconciles
        )
        yield from overlay_extras(cluster, self.ctrl.networks())
