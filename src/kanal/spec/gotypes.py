"""The CNI library's Go types (``pkg/types``) as :mod:`kanal.spec.gojson` specs.

Plugins build their config structs from :data:`NETCONF` (Go's embedded
``types.NetConf``) with :meth:`~kanal.spec.gojson.Struct.extend`; the result wire
modules decode with the result structs. Text types: :data:`IP` is ``net.IP`` ("" and
null are unset), :data:`IPNET` is ``types.IPNet`` (a CIDR string keeping host bits;
null or "" is an error, as ``ParseCIDR("")``).
"""

from __future__ import annotations

from kanal.errors import DecodeError
from kanal.spec.gojson import (
    ANY,
    BOOL,
    INT,
    STRING,
    Map,
    Ptr,
    Slice,
    Struct,
    Text,
    Unmarshaler,
)
from kanal.spec.types import IPAddr, IPInterface, parse_cidr, parse_ip

__all__ = [
    "DNS",
    "GC_ATTACHMENT",
    "IP",
    "IPAM",
    "IPNET",
    "NETCONF",
    "RESULT_020",
    "RESULT_040",
    "RESULT_100",
    "ROUTE",
    "STRINGS",
    "VERSION_ONLY",
    "net_ip",
]


def net_ip(s: str) -> IPAddr | None:
    """``net.IP.UnmarshalText``: "" is nil; anything else must be an address."""
    if s == "":
        return None
    try:
        return parse_ip(s)
    except DecodeError:
        raise ValueError(f"invalid IP address: {s}") from None


def _ipnet(s: str) -> IPInterface:
    return parse_cidr(s)  # DecodeError "invalid CIDR address: <s>", Go's text


IP = Text("net.IP", net_ip)
IPNET = Text("types.IPNet", _ipnet, json_unmarshaler=True)
STRINGS = Slice(STRING)

DNS = Struct(
    "DNS",
    [("nameservers", STRINGS), ("domain", STRING), ("search", STRINGS), ("options", STRINGS)],
    pkg="types",
)
IPAM = Struct("IPAM", [("type", STRING)], pkg="types")
GC_ATTACHMENT = Struct("GCAttachment", [("containerID", STRING), ("ifname", STRING)], pkg="types")

# types.NetConf (PluginConf): what every plugin's config embeds.
NETCONF = Struct(
    "NetConf",
    [
        ("cniVersion", STRING),
        ("name", STRING),
        ("type", STRING),
        ("capabilities", Map(BOOL)),
        ("ipam", IPAM),
        ("dns", DNS),
        ("prevResult", Map(ANY)),
        ("cni.dev/valid-attachments", Slice(GC_ATTACHMENT)),
    ],
    pkg="types",
)

# What skel and libcni decode first to learn the version (``create.DecodeVersion``).
VERSION_ONLY = Struct("", [("cniVersion", STRING)], pkg="")

ROUTE = Unmarshaler(
    Struct(
        "route",
        [
            ("dst", IPNET),
            ("gw", IP),
            ("mtu", INT),
            ("advmss", INT),
            ("priority", INT),
            ("table", Ptr(INT)),
            ("scope", Ptr(INT)),
        ],
        pkg="types",
    ),
    "types.Route",
)

RESULT_100 = Struct(
    "Result",
    [
        ("cniVersion", STRING),
        (
            "interfaces",
            Slice(
                Ptr(
                    Struct(
                        "Interface",
                        [
                            ("name", STRING),
                            ("mac", STRING),
                            ("mtu", INT),
                            ("sandbox", STRING),
                            ("socketPath", STRING),
                            ("pciID", STRING),
                        ],
                        pkg="types100",
                    )
                )
            ),
        ),
        (
            "ips",
            Slice(
                Ptr(
                    Unmarshaler(
                        Struct(
                            "ipConfig",
                            [("interface", Ptr(INT)), ("address", IPNET), ("gateway", IP)],
                            pkg="types100",
                        ),
                        "types100.IPConfig",
                    )
                )
            ),
        ),
        ("routes", Slice(Ptr(ROUTE))),
        ("dns", DNS),
    ],
    pkg="types100",
)

RESULT_040 = Struct(
    "Result",
    [
        ("cniVersion", STRING),
        (
            "interfaces",
            Slice(
                Ptr(
                    Struct(
                        "Interface",
                        [("name", STRING), ("mac", STRING), ("sandbox", STRING)],
                        pkg="types040",
                    )
                )
            ),
        ),
        (
            "ips",
            Slice(
                Ptr(
                    Unmarshaler(
                        Struct(
                            "ipConfig",
                            [
                                ("version", STRING),
                                ("interface", Ptr(INT)),
                                ("address", IPNET),
                                ("gateway", IP),
                            ],
                            pkg="types040",
                        ),
                        "types040.IPConfig",
                    )
                )
            ),
        ),
        ("routes", Slice(Ptr(ROUTE))),
        ("dns", DNS),
    ],
    pkg="types040",
)

_IPCONFIG_020 = Unmarshaler(
    Struct(
        "ipConfig",
        [("ip", IPNET), ("gateway", IP), ("routes", Slice(ROUTE))],
        pkg="types020",
    ),
    "types020.IPConfig",
)
RESULT_020 = Struct(
    "Result",
    [
        ("cniVersion", STRING),
        ("ip4", Ptr(_IPCONFIG_020)),
        ("ip6", Ptr(_IPCONFIG_020)),
        ("dns", DNS),
    ],
    pkg="types020",
)
