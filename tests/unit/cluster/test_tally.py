"""The agent's incremental programming: a Tally fed endpoint by endpoint leaves the
kernel (simulated, with the netlink calls' own semantics) exactly as a full
recomputation (desired_entries) says it should be."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kanal.cluster.vxlan import (
    Changes,
    Desired,
    EndpointRecord,
    Tally,
    contribution,
    desired_entries,
)
from kanal.netlink.vxlan import FLOOD_MAC, FdbEntry, NeighEntry, RouteEntry

VTEPS = {"h1": "192.0.2.1", "h2": "192.0.2.2", "h3": "192.0.2.3"}  # h4 is not live


class Kernel:
    """A VXLAN device's entries, changed as kanal.cluster.vxlan._apply changes them."""

    def __init__(self) -> None:
        self.fdb: set[FdbEntry] = set()
        self.neigh: dict[str, str] = {}  # ip -> mac (one entry per address)
        self.routes: dict[str, str] = {}

    def apply(self, ch: Changes) -> None:
        for r in ch.del_routes:
            self.routes.pop(r.dst, None)
        self.fdb |= set(ch.add_fdb)
        for n in ch.set_neigh:
            self.neigh[n.ip] = n.mac  # replace
        for r in ch.add_routes:
            self.routes[r.dst] = r.via
        for n in ch.del_neigh:
            self.neigh.pop(n.ip, None)  # deleted by address
        self.fdb -= set(ch.del_fdb)

    def as_desired(self) -> Desired:
        return Desired(
            frozenset(self.fdb),
            frozenset(NeighEntry(ip, mac) for ip, mac in self.neigh.items()),
            frozenset(RouteEntry(d, v) for d, v in self.routes.items()),
        )


records = st.builds(
    EndpointRecord,
    ip=st.sampled_from([f"10.0.0.{i}" for i in range(1, 6)]),
    mac=st.sampled_from([f"02:00:00:00:00:0{i}" for i in range(1, 6)]),
    host=st.sampled_from(["h1", "h2", "h3", "h4"]),
    vtep=st.just(""),
)
ops = st.lists(st.tuples(st.sampled_from(["k1", "k2", "k3", "k4", "k5"]), st.none() | records),
               max_size=30)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(ops, st.booleans())
def test_incremental_equals_recomputed(seq: list[tuple[str, EndpointRecord | None]],
                                       routes: bool) -> None:  # fmt: skip
    model: dict[str, EndpointRecord] = {}
    tally, kernel = Tally(), Kernel()
    for key, rec in seq:
        ch = Changes()
        old = model.pop(key, None)
        if old is not None:
            tally.remove(contribution(old, VTEPS, "h1", host_routes=routes), ch)
        if rec is not None:
            model[key] = rec
            tally.add(contribution(rec, VTEPS, "h1", host_routes=routes), ch)
        kernel.apply(tally.finish(ch))
        want = desired_entries(model.values(), VTEPS, "h1", host_routes=routes)
        assert tally.desired() == want
        # the kernel holds every wanted entry; a neighbour two records claim is one of
        # theirs (the kernel keeps one entry per address)
        got = kernel.as_desired()
        assert got.fdb == want.fdb and got.routes == want.routes
        assert {n.ip for n in got.neigh} == {n.ip for n in want.neigh}
        assert got.neigh <= want.neigh


def test_a_flood_entry_goes_with_its_hosts_last_endpoint() -> None:
    a = EndpointRecord("10.0.0.2", "02:00:00:00:00:02", "h2", "")
    b = EndpointRecord("10.0.0.3", "02:00:00:00:00:03", "h2", "")
    t, ch = Tally(), Changes()
    t.add(contribution(a, VTEPS, "h1"), ch)
    t.add(contribution(b, VTEPS, "h1"), ch)
    assert ch.add_fdb.count(FdbEntry(FLOOD_MAC, "192.0.2.2")) == 1
    ch = Changes()
    t.remove(contribution(a, VTEPS, "h1"), ch)
    assert FdbEntry(FLOOD_MAC, "192.0.2.2") not in t.finish(ch).del_fdb
    ch = Changes()
    t.remove(contribution(b, VTEPS, "h1"), ch)
    assert FdbEntry(FLOOD_MAC, "192.0.2.2") in t.finish(ch).del_fdb
    assert contribution(a, VTEPS, "h2") == Desired()  # ours: nothing
    assert (
        contribution(EndpointRecord("10.0.0.9", "02:00:00:00:00:09", "h4", ""), VTEPS, "h1")
        == Desired()
    )
