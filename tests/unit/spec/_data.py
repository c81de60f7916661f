"""A result that sets every field, and its wire form per version derived from the Go structs.

The literals follow pkg/types/{020,040,100} field order and omitempty rules:
- 0.1.0/0.2.0: ip4/ip6 {ip, gateway?, routes?}; routes keep dst/gw only after conversion;
  dns always printed.
- 0.3.x/0.4.0: interfaces {name, mac?, sandbox?}; ips {version, interface?, address,
  gateway?}; routes are the shared types.Route (1.1 fields kept); dns always printed.
- 1.0.0/1.1.0: interfaces {name, mac?, mtu?, sandbox?, socketPath?, pciID?}; ips
  {interface?, address, gateway?}; dns omitted when empty.
"""

from __future__ import annotations

from typing import Any

from kanal.spec.types import DNS, Interface, IPConfig, Result, Route, parse_cidr, parse_ip
from kanal.spec.versions import ALL_VERSIONS

V02 = ("0.1.0", "0.2.0")
V04 = ("0.3.0", "0.3.1", "0.4.0")
V1 = ("1.0.0", "1.1.0")
assert V02 + V04 + V1 == ALL_VERSIONS


def full_result() -> Result:
    return Result(
        interfaces=[
            Interface(
                name="eth0",
                mac="00:11:22:33:44:55",
                sandbox="/proc/3553/ns/net",
                mtu=1500,
                socket_path="/path/to/vhost/fd",
                pci_id="8086:9a01",
            ),
            Interface(name="veth1", mac="aa:bb:cc:dd:ee:ff"),
        ],
        ips=[
            IPConfig(parse_cidr("1.2.3.30/24"), parse_ip("1.2.3.1"), interface=0),
            IPConfig(parse_cidr("abcd:1234:ffff::cdde/64"), parse_ip("abcd:1234:ffff::1"), 0),
            IPConfig(parse_cidr("10.9.9.9/8"), interface=1),
        ],
        routes=[
            Route(parse_cidr("15.5.6.0/24"), parse_ip("15.5.6.8")),
            Route(parse_cidr("1111:dddd::/80"), parse_ip("1111:dddd::aaaa")),
            Route(
                parse_cidr("0.0.0.0/0"),
                parse_ip("1.2.3.1"),
                mtu=1400,
                advmss=1360,
                priority=10,
                table=100,
                scope=0,
            ),
        ],
        dns=DNS(
            nameservers=["1.2.3.4", "1::cafe"],
            domain="acompany.com",
            search=["somedomain.com", "otherdomain.net"],
            options=["foo", "bar"],
        ),
    )


DNS_WIRE = {
    "nameservers": ["1.2.3.4", "1::cafe"],
    "domain": "acompany.com",
    "search": ["somedomain.com", "otherdomain.net"],
    "options": ["foo", "bar"],
}

ROUTE_FULL_WIRE = {
    "dst": "0.0.0.0/0",
    "gw": "1.2.3.1",
    "mtu": 1400,
    "advmss": 1360,
    "priority": 10,
    "table": 100,
    "scope": 0,
}


def wire_020(v: str) -> dict[str, Any]:
    return {
        "cniVersion": v,
        "ip4": {
            "ip": "1.2.3.30/24",
            "gateway": "1.2.3.1",
            "routes": [
                {"dst": "15.5.6.0/24", "gw": "15.5.6.8"},
                {"dst": "0.0.0.0/0", "gw": "1.2.3.1"},
            ],
        },
        "ip6": {
            "ip": "abcd:1234:ffff::cdde/64",
            "gateway": "abcd:1234:ffff::1",
            "routes": [{"dst": "1111:dddd::/80", "gw": "1111:dddd::aaaa"}],
        },
        "dns": DNS_WIRE,
    }


def wire_040(v: str) -> dict[str, Any]:
    return {
        "cniVersion": v,
        "interfaces": [
            {"name": "eth0", "mac": "00:11:22:33:44:55", "sandbox": "/proc/3553/ns/net"},
            {"name": "veth1", "mac": "aa:bb:cc:dd:ee:ff"},
        ],
        "ips": [
            {"version": "4", "interface": 0, "address": "1.2.3.30/24", "gateway": "1.2.3.1"},
            {
                "version": "6",
                "interface": 0,
                "address": "abcd:1234:ffff::cdde/64",
                "gateway": "abcd:1234:ffff::1",
            },
            {"version": "4", "interface": 1, "address": "10.9.9.9/8"},
        ],
        "routes": [
            {"dst": "15.5.6.0/24", "gw": "15.5.6.8"},
            {"dst": "1111:dddd::/80", "gw": "1111:dddd::aaaa"},
            ROUTE_FULL_WIRE,
        ],
        "dns": DNS_WIRE,
    }


def wire_100(v: str) -> dict[str, Any]:
    return {
        "cniVersion": v,
        "interfaces": [
            {
                "name": "eth0",
                "mac": "00:11:22:33:44:55",
                "mtu": 1500,
                "sandbox": "/proc/3553/ns/net",
                "socketPath": "/path/to/vhost/fd",
                "pciID": "8086:9a01",
            },
            {"name": "veth1", "mac": "aa:bb:cc:dd:ee:ff"},
        ],
        "ips": [
            {"interface": 0, "address": "1.2.3.30/24", "gateway": "1.2.3.1"},
            {
                "interface": 0,
                "address": "abcd:1234:ffff::cdde/64",
                "gateway": "abcd:1234:ffff::1",
            },
            {"interface": 1, "address": "10.9.9.9/8"},
        ],
        "routes": [
            {"dst": "15.5.6.0/24", "gw": "15.5.6.8"},
            {"dst": "1111:dddd::/80", "gw": "1111:dddd::aaaa"},
            ROUTE_FULL_WIRE,
        ],
        "dns": DNS_WIRE,
    }


def full_wire(v: str) -> dict[str, Any]:
    """The wire form of full_result() rendered at ``v``."""
    if v in V02:
        return wire_020(v)
    if v in V04:
        return wire_040(v)
    return wire_100(v)


def ordered(obj: Any) -> Any:
    """A nested structure with dict key order made significant (for == comparisons)."""
    if isinstance(obj, dict):
        return [(k, ordered(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [ordered(v) for v in obj]
    return obj
