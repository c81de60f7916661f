"""kanald's metrics of the lower layers: the firewall, the overlay agent, the etcd client.

Each layer counts in plain numbers where the work happens (no Prometheus below the
daemon): nftables transactions in :data:`kanal.firewall.nftables.nfnl.TX_STATS` (by
way: ``netlink`` for the element batches kanal packs itself, ``libnftables`` for the
rest), the agent's :class:`~kanal.cluster.agentstats.AgentStats`, the etcd client's
``request_stats``. What the kernel holds — the elements of kanal's sets and maps, the
VXLAN devices' forwarding and neighbour entries — is read at each scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kanal.cluster.agentstats import PROGRAM_BUCKETS
from kanal.engine.model import Network
from kanal.firewall.nftables import nfnl
from kanal.firewall.nftables.state import table_json
from kanal.netlink import inspect
from kanal.store.etcdwire import REQUEST_BUCKETS

__all__ = ["FirewallCollector", "overlay_extras"]


class FirewallCollector(Collector):
    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        count = CounterMetricFamily(
            "kanal_nft_transactions", "nftables transactions run by kanald", labels=["way"]
        )
        errors = CounterMetricFamily(
            "kanal_nft_transaction_errors",
            "nftables transactions the kernel refused",
            labels=["way"],
        )
        for way, st in nfnl.TX_STATS.items():
            count.add_metric([way], st.count)
            errors.add_metric([way], st.errors)
        yield count
        yield errors
        latency = HistogramMetricFamily(
            "kanal_nft_transaction_seconds", "nftables transaction latency", labels=["way"]
        )
        for way, st in nfnl.TX_STATS.items():
            latency.add_metric([way], _cumulative(nfnl.TX_BUCKETS, st.buckets), st.seconds)
        yield latency
        elements = GaugeMetricFamily(
            "kanal_nft_set_elements",
            "elements of each set and map in kanal's nftables table (inet kanal)",
            labels=["set"],
        )
        for obj in table_json() or []:
            body = obj.get("set") or obj.get("map")
            if body:
                elements.add_metric([str(body.get("name"))], len(body.get("elem") or []))
        yield elements


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    acc = 0
    out: list[tuple[str, float]] = []
    for bound, n in zip((*bounds, float("inf")), list(counts)):
        acc += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), acc))
    return out


def overlay_extras(cluster: Any, networks: Iterable[Network]) -> Iterator[Metric]:
    """The overlay agent's drift and programming latency, the VXLAN devices' entries
    and the etcd client's request latency (``cluster``: kanald's cluster member)."""
    agent = cluster.agent
    st = agent.stats
    yield CounterMetricFamily(
        "kanal_overlay_drift_repairs",
        "kernel entries (FDB, neighbour) a full programming found wrong and repaired",
        value=st.drift_repairs,
    )
    h = HistogramMetricFamily(
        "kanal_overlay_program_seconds",
        "from a watch batch's arrival to the kernel programmed (etcd's delivery not included)",
        buckets=_cumulative(PROGRAM_BUCKETS, st.program_buckets),
        sum_value=st.program_seconds,
    )
    yield h
    names = {n.id: n.name for n in networks}
    fdb = GaugeMetricFamily(
        "kanal_overlay_fdb_entries",
        "forwarding entries of a network's VXLAN device",
        labels=["network"],
    )
    neigh = GaugeMetricFamily(
        "kanal_overlay_neighbour_entries",
        "neighbour entries of a network's VXLAN device",
        labels=["network"],
    )
    for net, dev in sorted(agent.devices().items()):
        label = names.get(net, net)
        fdb.add_metric([label], len(inspect.fdb(dev)))
        neigh.add_metric([label], len(inspect.neighbours(dev)))
    yield fdb
    yield neigh
    req = HistogramMetricFamily(
        "kanal_etcd_request_seconds",
        "etcd requests of this kanald (failover and retries included), by gateway path",
        labels=["path"],
    )
    errors = CounterMetricFamily(
        "kanal_etcd_request_errors", "etcd requests that failed", labels=["path"]
    )
    for path, (_count, failed, seconds, buckets) in sorted(cluster.store.request_stats.items()):
        req.add_metric([path], _cumulative(REQUEST_BUCKETS, buckets), seconds)
        errors.add_metric([path], failed)
    yield req
    yield errors
