"""kanald's firewall metrics: nftables transactions and the elements of kanal's sets.

Transactions are counted where they run (:data:`kanal.firewall.nftables.nfnl.TX_STATS`,
plain numbers, by way: ``netlink`` for the element batches kanal packs itself,
``libnftables`` for the rest); the elements of every set and map of kanal's table
are read from the kernel at each scrape (one ``list table``).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from kanal.firewall.nftables import nfnl
from kanal.firewall.nftables.state import table_json

__all__ = ["FirewallCollector"]


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
            acc, buckets = 0, []
            for bound, n in zip((*nfnl.TX_BUCKETS, float("inf")), list(st.buckets)):
                acc += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), acc))
            latency.add_metric([way], buckets, st.seconds)
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
