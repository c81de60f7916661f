"""DHCP wire format and lease timing (pure logic)."""

from __future__ import annotations

import ipaddress

import pytest

from kanal.dhcp import packet as P
from kanal.dhcp.client import Lease
from kanal.errors import DecodeError


def test_message_round_trip_and_long_options() -> None:
    m = P.Message(1, 0x12345678, bytes.fromhex("020000aabbcc"), flags=0x8000)
    m.options = {P.OPT_MSG_TYPE: bytes((P.DISCOVER,)), P.OPT_CLIENT_ID: b"\0" + b"x" * 300}
    data = m.encode()
    assert len(data) >= 300 and data[236:240] == P.MAGIC
    back = P.Message.decode(data)
    assert back.xid == 0x12345678 and back.chaddr == bytes.fromhex("020000aabbcc")
    assert back.flags == 0x8000 and back.msg_type == P.DISCOVER
    assert back.options[P.OPT_CLIENT_ID] == b"\0" + b"x" * 300  # split over 2 options, joined


def test_classless_routes() -> None:
    routes = [
        (ipaddress.IPv4Network("10.97.0.0/16"), ipaddress.IPv4Address("10.96.0.1")),
        (ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv4Address("10.96.0.254")),
        (ipaddress.IPv4Network("192.0.2.128/25"), ipaddress.IPv4Address("10.96.0.2")),
    ]
    raw = P.encode_classless_routes(routes)
    assert raw[:7] == bytes([16, 10, 97, 10, 96, 0, 1])  # RFC 3442: only significant octets
    assert P.decode_classless_routes(raw) == routes
    with pytest.raises(DecodeError):
        P.decode_classless_routes(bytes([33, 1, 2, 3, 4, 5, 6, 7, 8]))
    with pytest.raises(DecodeError):
        P.Message.decode(b"\0" * 100)


def test_lease_times() -> None:
    lease = Lease(
        "c-eth0", "/run/netns/x", "eth0", "n", "id", "02:00:00:00:00:01", "10.0.0.5/24", "10.0.0.1"
    )
    lease.obtained, lease.lease_time = 1000.0, 120
    assert lease.renew_at() == 1060 and lease.rebind_at() == 1105 and lease.expires_at() == 1120
    lease.t1, lease.t2 = 30, 90
    assert lease.renew_at() == 1030 and lease.rebind_at() == 1090
    assert Lease.from_json(lease.to_json()) == lease
    assert str(lease.ip) == "10.0.0.5"
