"""Go's round-robin candidate order and the allocation rules, over the memory store."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from kanal.errors import Conflict
from kanal.ipam.allocator import allocate, candidates
from kanal.ipam.memory import MemoryStore
from kanal.ipam.ranges import RangeSet, ip_from_int, parse_range_set


def rs(*ranges: dict[str, Any]) -> RangeSet:
    return parse_range_set(list(ranges))


def order(s: RangeSet, last: str | None = None) -> list[str]:
    return [
        str(ip_from_int(s.version, v)) for _, v in candidates(s, ip_address(last) if last else None)
    ]


def test_fresh_order_skips_gateway() -> None:
    assert order(rs({"subnet": "10.0.0.0/29"})) == [f"10.0.0.{i}" for i in range(2, 7)]


def test_gateway_in_middle_is_skipped() -> None:
    s = rs({"subnet": "10.0.0.0/29", "gateway": "10.0.0.4"})
    assert order(s) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.5", "10.0.0.6"]


def test_round_robin_from_last_plus_one_and_wraps() -> None:
    s = rs({"subnet": "10.0.0.0/29"})
    assert order(s, "10.0.0.4") == ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    # last == rangeEnd wraps to the start
    assert order(s, "10.0.0.6")[0] == "10.0.0.2"


def test_last_outside_the_set_starts_fresh() -> None:
    s = rs({"subnet": "10.0.0.0/29"})
    assert order(s, "192.168.0.1") == order(s)
    assert order(s, "2001:db8::1") == order(s)


def test_walk_crosses_ranges_of_a_set() -> None:
    s = rs({"subnet": "10.0.0.0/30"}, {"subnet": "10.0.1.0/30"})
    assert order(s) == ["10.0.0.2", "10.0.1.2"]
    assert order(s, "10.0.0.2") == ["10.0.1.2", "10.0.0.2"]


def test_every_candidate_once_large() -> None:
    s = rs({"subnet": "10.0.0.0/22"}, {"subnet": "10.0.8.0/24", "gateway": "10.0.8.100"})
    got = order(s, "10.0.2.7")
    assert len(got) == len(set(got)) == (1022 - 1) + (254 - 1)


def test_v6_order() -> None:
    s = rs({"subnet": "2001:db8::/126"})
    assert order(s) == ["2001:db8::2", "2001:db8::3"]


def test_allocate_round_robin_and_result() -> None:
    s = rs({"subnet": "10.0.0.0/29"})
    st = MemoryStore()
    with st.locked():
        a = allocate(s, st, 0, "c1", "eth0")
        b = allocate(s, st, 0, "c2", "eth0")
        st.release_by_id("c1", "eth0")
        c = allocate(s, st, 0, "c3", "eth0")
    assert (str(a.address), str(a.gateway), a.interface) == ("10.0.0.2/29", "10.0.0.1", None)
    assert str(b.address) == "10.0.0.3/29"
    # round robin: the freed .2 is not reused before the range wraps
    assert str(c.address) == "10.0.0.4/29"


def test_exhaustion_message() -> None:
    s = rs({"subnet": "10.0.0.0/30"})
    st = MemoryStore()
    with st.locked():
        allocate(s, st, 0, "c1", "eth0")
        with pytest.raises(Conflict) as ei:
            allocate(s, st, 0, "c2", "eth0")
    assert ei.value.msg == "no IP addresses available in range set: 10.0.0.1-10.0.0.2"


def test_duplicate_allocation_refused() -> None:
    s = rs({"subnet": "10.0.0.0/29"})
    st = MemoryStore()
    with st.locked():
        allocate(s, st, 0, "c1", "eth0")
        with pytest.raises(Conflict) as ei:
            allocate(s, st, 0, "c1", "eth0")
        # another ifname of the same container is a different attachment
        allocate(s, st, 0, "c1", "eth1")
    assert ei.value.msg == "10.0.0.2 has been allocated to c1, duplicate allocation is not allowed"


def test_legacy_entry_counts_for_duplicate_check() -> None:
    s = rs({"subnet": "10.0.0.0/29"})
    st = MemoryStore()
    st.put_raw("10.0.0.5", "c1")
    with st.locked(), pytest.raises(Conflict, match="duplicate allocation"):
        allocate(s, st, 0, "c1", "eth0")


def test_requested_ip() -> None:
    s = rs({"subnet": "10.0.0.0/29"})
    st = MemoryStore()
    with st.locked():
        got = allocate(s, st, 0, "c1", "eth0", ip_address("10.0.0.5"))
        assert str(got.address) == "10.0.0.5/29"
        assert st.last_reserved_ip("0") == ip_address("10.0.0.5")
        with pytest.raises(Conflict) as ei:
            allocate(s, st, 0, "c2", "eth0", ip_address("10.0.0.5"))
        assert ei.value.msg == (
            "requested IP address 10.0.0.5 is not available in range set 10.0.0.1-10.0.0.6"
        )
        with pytest.raises(Conflict, match=r"^requested ip 10\.0\.0\.1 is subnet's gateway$"):
            allocate(s, st, 0, "c2", "eth0", ip_address("10.0.0.1"))
        with pytest.raises(
            Conflict, match=r"^10\.0\.1\.1 not in range set 10\.0\.0\.1-10\.0\.0\.6$"
        ):
            allocate(s, st, 0, "c2", "eth0", ip_address("10.0.1.1"))


def test_memory_store_release_exact_then_legacy() -> None:
    st = MemoryStore()
    st.put_raw("10.0.0.2", "c1\r\neth0")
    st.put_raw("10.0.0.3", "c1")
    st.put_raw("10.0.0.4", "")
    with st.locked():
        assert st.find_by_id("c1", "eth9")  # legacy matches any ifname
        assert sorted(map(str, st.get_by_id("c1", "eth0"))) == ["10.0.0.2", "10.0.0.3"]
        assert st.release_by_id("c1", "eth0")
        assert [r.name for r in st.reservations()] == ["10.0.0.3", "10.0.0.4"]
        assert st.release_by_id("c1", "eth0")  # second pass: legacy
        assert not st.release_by_id("c1", "eth0")
        assert st.sweep_empty(0) == ["10.0.0.4"]
