"""Range and range-set canonicalisation against Go's rules and texts."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from kanal.errors import InvalidConfig
from kanal.ipam.ranges import RangeError, canonical_ip, parse_range, parse_range_set


def test_defaults_v4() -> None:
    r = parse_range({"subnet": "10.1.2.0/24"})
    assert str(r.range_start) == "10.1.2.1"
    assert str(r.range_end) == "10.1.2.254"
    assert str(r.gateway) == "10.1.2.1"
    assert str(r) == "10.1.2.1-10.1.2.254"


def test_defaults_v6_end_is_last_address() -> None:
    r = parse_range({"subnet": "2001:db8:1::/120"})
    assert str(r.range_start) == "2001:db8:1::1"
    assert str(r.range_end) == "2001:db8:1::ff"
    assert str(r.gateway) == "2001:db8:1::1"


def test_explicit_fields_kept() -> None:
    r = parse_range(
        {
            "subnet": "10.1.2.0/24",
            "rangeStart": "10.1.2.10",
            "rangeEnd": "10.1.2.20",
            "gateway": "10.1.2.254",
        }
    )
    assert (str(r.range_start), str(r.range_end), str(r.gateway)) == (
        "10.1.2.10",
        "10.1.2.20",
        "10.1.2.254",
    )


def test_gateway_outside_subnet_is_accepted_like_go() -> None:
    r = parse_range({"subnet": "10.1.2.0/24", "gateway": "192.168.0.1"})
    assert str(r.gateway) == "192.168.0.1"


def test_empty_strings_mean_unset() -> None:
    r = parse_range({"subnet": "10.1.2.0/24", "rangeStart": "", "gateway": ""})
    assert str(r.range_start) == "10.1.2.1"
    assert str(r.gateway) == "10.1.2.1"


@pytest.mark.parametrize(
    ("subnet", "msg"),
    [
        ("10.0.0.0/31", "Network 10.0.0.0/31 too small to allocate from"),
        ("10.0.0.0/32", "Network 10.0.0.0/32 too small to allocate from"),
        ("2001:db8::/127", "Network 2001:db8::/127 too small to allocate from"),
        (
            "10.0.0.5/24",
            "Network has host bits set. For a subnet mask of length 24 the network "
            "address is 10.0.0.0",
        ),
        ("::ffff:10.0.0.0/120", "IPNet IP and Mask version mismatch"),
    ],
)
def test_subnet_errors(subnet: str, msg: str) -> None:
    with pytest.raises(RangeError) as ei:
        parse_range({"subnet": subnet})
    assert str(ei.value) == msg


def test_30_is_the_smallest_allowed() -> None:
    r = parse_range({"subnet": "10.0.0.0/30"})
    assert (str(r.range_start), str(r.range_end)) == ("10.0.0.1", "10.0.0.2")


def test_missing_subnet_is_go_nil_ip_error() -> None:
    with pytest.raises(RangeError, match=r"^IP <nil> not v4 nor v6$"):
        parse_range({"rangeStart": "10.0.0.1"})


@pytest.mark.parametrize("bad", ["10.0.0.0", "10.0.0.0/33", "bogus", "10.0.0.0/24 "])
def test_invalid_cidr(bad: str) -> None:
    with pytest.raises(InvalidConfig, match="invalid CIDR address"):
        parse_range({"subnet": bad})


def test_wrong_json_types() -> None:
    with pytest.raises(InvalidConfig):
        parse_range({"subnet": 10})
    with pytest.raises(InvalidConfig):
        parse_range("10.0.0.0/24")
    with pytest.raises(InvalidConfig, match="invalid IP address: nope"):
        parse_range({"subnet": "10.0.0.0/24", "gateway": "nope"})


@pytest.mark.parametrize(
    ("field", "value", "msg"),
    [
        ("rangeStart", "10.0.1.1", "RangeStart 10.0.1.1 not in network 10.0.0.0/24"),
        ("rangeEnd", "10.0.1.1", "RangeEnd 10.0.1.1 not in network 10.0.0.0/24"),
        ("rangeStart", "2001:db8::1", "RangeStart 2001:db8::1 not in network 10.0.0.0/24"),
    ],
)
def test_range_bounds_outside_subnet(field: str, value: str, msg: str) -> None:
    with pytest.raises(RangeError) as ei:
        parse_range({"subnet": "10.0.0.0/24", field: value})
    assert str(ei.value) == msg


def test_range_end_before_start_rejected() -> None:
    with pytest.raises(RangeError, match="RangeEnd 10.0.0.5 not in network"):
        parse_range({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.5"})
    with pytest.raises(RangeError, match="is after RangeEnd"):
        parse_range({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.255"})


def test_v4_mapped_addresses_are_v4() -> None:
    r = parse_range({"subnet": "10.0.0.0/24", "rangeStart": "::ffff:10.0.0.7"})
    assert r.range_start == IPv4Address("10.0.0.7")
    assert canonical_ip(IPv6Address("::ffff:1.2.3.4")) == IPv4Address("1.2.3.4")
    assert r.contains(IPv6Address("::ffff:10.0.0.8"))


def test_contains_respects_bounds_and_family() -> None:
    r = parse_range({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.20"})
    assert r.contains(ip_address("10.0.0.10"))
    assert r.contains(ip_address("10.0.0.20"))
    assert not r.contains(ip_address("10.0.0.9"))
    assert not r.contains(ip_address("10.0.0.21"))
    assert not r.contains(ip_address("::a00:a"))


def test_range_set_ok_and_str() -> None:
    rs = parse_range_set([{"subnet": "10.0.0.0/30"}, {"subnet": "10.0.1.0/30"}])
    assert str(rs) == "10.0.0.1-10.0.0.2,10.0.1.1-10.0.1.2"
    assert rs.version == 4
    assert str(rs.range_for(ip_address("10.0.1.2")).subnet) == "10.0.1.0/30"
    with pytest.raises(RangeError, match=r"^10\.0\.2\.1 not in range set 10\.0\.0\.1-"):
        rs.range_for(ip_address("10.0.2.1"))


def test_range_set_errors() -> None:
    with pytest.raises(RangeError, match="^empty range set$"):
        parse_range_set([])
    with pytest.raises(RangeError, match="^mixed address families$"):
        parse_range_set([{"subnet": "10.0.0.0/24"}, {"subnet": "2001:db8::/64"}])
    with pytest.raises(RangeError) as ei:
        parse_range_set([{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/16"}])
    assert str(ei.value) == "subnets 10.0.0.1-10.0.0.254 and 10.0.0.1-10.0.255.254 overlap"
    with pytest.raises(InvalidConfig):
        parse_range_set({"subnet": "10.0.0.0/24"})


def test_overlap_is_by_range_not_subnet() -> None:
    rs = parse_range_set(
        [
            {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.1", "rangeEnd": "10.0.0.9"},
            {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.20"},
        ]
    )
    assert len(rs.ranges) == 2
    other = parse_range_set([{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.20"}])
    assert rs.overlaps(other)
    v6 = parse_range_set([{"subnet": "2001:db8::/64"}])
    assert not rs.overlaps(v6)
