"""Named bad inputs to kanald's REST API: each gets its exact status and a JSON
``message``, and changes nothing (store rows, links, addresses, routes, nft, files).

One daemon for the module (a network ``net1`` and a running sandbox ``sb1`` on it,
publishing a port), a snapshot before and after every case.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.kanald import Kanald, kanald, parse_response, populate
from tests.snapshot import assert_unchanged, settle

pytestmark = pytest.mark.xdist_group("bad-input-api")

NET = "/networks/create"
SB = "/sandboxes/create"
CMD = ["sleep", "1"]


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    body: Any  # JSON-encoded; bytes are sent as they are
    status: int
    message: str  # a regex the message must match


def net(**fields: Any) -> dict[str, Any]:
    return {"Name": "bad", **fields}


def cfg(**c: Any) -> dict[str, Any]:
    return {"Name": "bad", "IPAM": {"Config": [{"Subnet": "10.91.0.0/24", **c}]}}


def sb(**fields: Any) -> dict[str, Any]:
    return {"Cmd": CMD, "Networks": [{"Name": "net1"}], **fields}


CASES: list[Case] = [
    # --- bodies that are not JSON objects ---------------------------------------------
    Case("body-not-json", "POST", NET, b"not json", 400, "invalid JSON"),
    Case("body-truncated", "POST", NET, b'{"Name": "x"', 400, "invalid JSON"),
    Case("body-invalid-utf8", "POST", NET, b'{"Name": "\xff\xfe"}', 400, "not UTF-8"),
    Case("body-utf16", "POST", NET, '{"Name":"x"}'.encode("utf-16"), 400, "not UTF-8"),
    Case("body-nan", "POST", NET, b'{"Name": "x", "Internal": NaN}', 400, "invalid JSON"),
    Case("body-infinity", "POST", NET, b'{"Name": "x", "x": Infinity}', 400, "invalid JSON"),
    Case("body-deep-10000", "POST", NET, b"[" * 10000 + b"]" * 10000, 400, "nested deeper"),
    Case("body-deep-33", "POST", NET, b"[" * 33 + b"]" * 33, 400, "nested deeper"),
    Case("body-deep-objects", "POST", NET, b'{"a":' * 40 + b"1" + b"}" * 40, 400, "nested"),
    Case("body-huge-int", "POST", NET, b'{"Name": "x", "n": ' + b"9" * 5000 + b"}", 400, "JSON"),
    Case("body-array", "POST", NET, [], 400, "must be a JSON object"),
    Case("body-string", "POST", NET, "x", 400, "must be a JSON object"),
    Case("body-number", "POST", NET, 5, 400, "must be a JSON object"),
    Case("body-null", "POST", NET, b"null", 400, "must be a JSON object"),
    Case("body-true", "POST", NET, True, 400, "must be a JSON object"),
    Case("body-trailing-garbage", "POST", NET, b'{"Name": "x"} x', 400, "invalid JSON"),
    Case("body-two-objects", "POST", NET, b'{"Name": "x"}{"Name": "y"}', 400, "invalid JSON"),
    Case("body-single-quotes", "POST", NET, b"{'Name': 'x'}", 400, "invalid JSON"),
    Case("body-bom", "POST", NET, b'\xef\xbb\xbf{"Name": "x"}', 400, "invalid JSON"),
    Case("body-lone-surrogate-name", "POST", NET, b'{"Name": "\\ud800"}', 400, "invalid network"),
    # --- paths and query strings ------------------------------------------------------
    Case("path-unknown", "GET", "/nosuch", None, 404, "page not found"),
    Case("path-unknown-deep", "GET", "/networks/a/b/c", None, 404, "page not found"),
    Case("path-bad-percent-utf8", "GET", "/networks/%ff%fe", None, 400, "not UTF-8"),
    Case("path-newline", "GET", "/networks/net1%0a", None, 400, "control characters"),
    Case("path-nul", "DELETE", "/networks/net1%00", None, 400, "control characters"),
    Case("path-tab", "DELETE", "/sandboxes/sb1%09", None, 400, "control characters"),
    Case("query-bad-utf8", "GET", "/networks?filters=%ff", None, 400, "not UTF-8"),
    Case("query-too-many", "GET", "/networks?" + "&".join(["a=1"] * 100), None, 400, "query"),
    Case("filters-not-json", "GET", "/networks?filters=nope", None, 400, "invalid JSON"),
    Case("filters-array", "GET", "/networks?filters=%5B%5D", None, 400, "want an object"),
    Case("filters-unknown-key", "GET", '/networks?filters={"bogus":["x"]}', None, 400, "filter"),
    Case("filters-string-value", "GET", '/networks?filters={"name":"x"}', None, 400, "filter"),
    Case("filters-number-item", "GET", '/networks?filters={"name":[1]}', None, 400, "filter"),
    Case("filters-map-not-bool", "GET", '/networks?filters={"name":{"x":1}}', None, 400, "filter"),
    Case("filters-bad-type", "GET", '/networks?filters={"type":["x"]}', None, 400, "type=x"),
    Case("filters-bad-dangling", "GET", '/networks?filters={"dangling":["m"]}', None, 400, "dang"),
    Case("filters-deep", "GET", "/networks?filters=" + "[" * 50 + "]" * 50, None, 400, "deeper"),
    Case("prune-filters-bad", "POST", "/networks/prune?filters=x", None, 400, "invalid JSON"),
    Case("prune-filters-key", "POST", '/networks/prune?filters={"x":["1"]}', None, 400, "filter"),
    Case("prune-filters-type", "POST", '/networks/prune?filters={"type":["z"]}', None, 400, "type"),
    # --- POST /networks/create: the name ----------------------------------------------
    Case("net-no-name", "POST", NET, {}, 400, "name is required"),
    Case("net-name-empty", "POST", NET, {"Name": ""}, 400, "name is required"),
    Case("net-name-number", "POST", NET, {"Name": 5}, 400, "name is required"),
    Case("net-name-null", "POST", NET, {"Name": None}, 400, "name is required"),
    Case("net-name-list", "POST", NET, {"Name": ["x"]}, 400, "name is required"),
    Case("net-name-slash", "POST", NET, {"Name": "a/b"}, 400, "invalid network name"),
    Case("net-name-trailing-newline", "POST", NET, {"Name": "web\n"}, 400, "invalid network"),
    Case("net-name-leading-newline", "POST", NET, {"Name": "\nweb"}, 400, "invalid network"),
    Case("net-name-inner-newline", "POST", NET, {"Name": "a\nb"}, 400, "invalid network name"),
    Case("net-name-space", "POST", NET, {"Name": "a b"}, 400, "invalid network name"),
    Case("net-name-dash-first", "POST", NET, {"Name": "-web"}, 400, "invalid network name"),
    Case("net-name-dot-first", "POST", NET, {"Name": ".web"}, 400, "invalid network name"),
    Case("net-name-underscore-first", "POST", NET, {"Name": "_w"}, 400, "invalid network"),
    Case("net-name-dotdot", "POST", NET, {"Name": ".."}, 400, "invalid network name"),
    Case("net-name-129", "POST", NET, {"Name": "a" * 129}, 400, "at most 128"),
    Case("net-name-unicode", "POST", NET, {"Name": "wéb"}, 400, "invalid network name"),
    Case("net-name-u2028", "POST", NET, {"Name": "a\u2028b"}, 400, "invalid network name"),
    Case("net-name-nul", "POST", NET, {"Name": "a\u0000b"}, 400, "invalid network name"),
    Case("net-name-colon", "POST", NET, {"Name": "a:b"}, 400, "invalid network name"),
    Case("net-name-star", "POST", NET, {"Name": "a*"}, 400, "invalid network name"),
    Case("net-name-taken", "POST", NET, {"Name": "net1"}, 409, "already exists"),
    Case("net-name-builtin", "POST", NET, {"Name": "bridge"}, 409, "already exists"),
    # --- the driver and flags ---------------------------------------------------------
    Case("net-driver-number", "POST", NET, net(Driver=5), 400, "invalid Driver"),
    Case("net-driver-unknown", "POST", NET, net(Driver="nosuch"), 400, "nosuch"),
    Case("net-driver-empty", "POST", NET, net(Driver=""), 400, "Driver"),
    Case("net-driver-false", "POST", NET, net(Driver=False), 400, "Driver"),
    Case("ipam-empty-list", "POST", NET, net(IPAM=[]), 400, "invalid IPAM"),
    Case("ipam-zero", "POST", NET, net(IPAM=0), 400, "invalid IPAM"),
    Case("ipam-driver-empty", "POST", NET, net(IPAM={"Driver": ""}), 400, "IPAM.Driver"),
    Case("net-driver-newline", "POST", NET, net(Driver="bri\ndge"), 400, "control characters"),
    Case("net-ipv6-string", "POST", NET, net(EnableIPv6="yes"), 400, "EnableIPv6"),
    Case("net-ipv4-number", "POST", NET, net(EnableIPv4=0), 400, "EnableIPv4"),
    Case("net-internal-number", "POST", NET, net(Internal=1), 400, "Internal"),
    Case("net-attachable-string", "POST", NET, net(Attachable="true"), 400, "Attachable"),
    Case("net-no-ip-at-all", "POST", NET, net(EnableIPv4=False), 400, "IPv4|IPv6|address"),
    # --- options and labels -----------------------------------------------------------
    Case("net-options-list", "POST", NET, net(Options=["a"]), 400, "invalid Options"),
    Case("net-options-number", "POST", NET, net(Options={"a": 1}), 400, "invalid Options"),
    Case("net-options-key-newline", "POST", NET, net(Options={"a\nb": "1"}), 400, "control"),
    Case("net-options-val-newline", "POST", NET, net(Options={"a": "1\n2"}), 400, "control"),
    Case("net-options-key-empty", "POST", NET, net(Options={"": "1"}), 400, "empty key"),
    Case(
        "net-mtu-word",
        "POST",
        NET,
        net(Options={"com.docker.network.driver.mtu": "abc"}),
        400,
        "(?i)mtu",
    ),  # fmt: skip
    Case(
        "net-mtu-negative",
        "POST",
        NET,
        net(Options={"com.docker.network.driver.mtu": "-1"}),
        400,
        "(?i)mtu",
    ),  # fmt: skip
    Case(
        "net-bridge-name-space",
        "POST",
        NET,
        net(Options={"com.docker.network.bridge.name": "a b"}),
        400,
        "bridge name|interface",
    ),  # fmt: skip
    Case(
        "net-bridge-name-long",
        "POST",
        NET,
        net(Options={"com.docker.network.bridge.name": "b" * 16}),
        400,
        "bridge name|interface",
    ),  # fmt: skip
    Case(
        "net-bridge-name-newline",
        "POST",
        NET,
        net(Options={"com.docker.network.bridge.name": "br\n"}),
        400,
        "control",
    ),  # fmt: skip
    Case(
        "net-icc-word",
        "POST",
        NET,
        net(Options={"com.docker.network.bridge.enable_icc": "maybe"}),
        400,
        "enable_icc",
    ),  # fmt: skip
    Case("net-labels-list", "POST", NET, net(Labels=["a=b"]), 400, "invalid Labels"),
    Case("net-labels-number", "POST", NET, net(Labels={"a": 2}), 400, "invalid Labels"),
    Case("net-labels-null-value", "POST", NET, net(Labels={"a": None}), 400, "invalid Labels"),
    Case("net-labels-key-newline", "POST", NET, net(Labels={"a\n": "b"}), 400, "control"),
    Case("net-labels-val-newline", "POST", NET, net(Labels={"a": "b\r"}), 400, "control"),
    Case("net-labels-val-esc", "POST", NET, net(Labels={"a": "\x1b[31m"}), 400, "control"),
    # --- IPAM -------------------------------------------------------------------------
    Case("ipam-string", "POST", NET, net(IPAM="x"), 400, "invalid IPAM"),
    Case("ipam-config-object", "POST", NET, net(IPAM={"Config": {}}), 400, "IPAM"),
    Case("ipam-config-string", "POST", NET, net(IPAM={"Config": "x"}), 400, "IPAM.Config"),
    Case("ipam-config-item-string", "POST", NET, net(IPAM={"Config": ["x"]}), 400, r"Config\[0\]"),
    Case("ipam-no-subnet", "POST", NET, net(IPAM={"Config": [{}]}), 400, "no Subnet"),
    Case("ipam-subnet-number", "POST", NET, cfg(Subnet=5), 400, "no Subnet"),
    Case("ipam-subnet-word", "POST", NET, cfg(Subnet="abc"), 400, "invalid subnet"),
    Case("ipam-subnet-prefix-33", "POST", NET, cfg(Subnet="10.91.0.0/33"), 400, "invalid subnet"),
    Case("ipam-subnet-host-bits", "POST", NET, cfg(Subnet="10.91.0.5/24"), 400, "should be"),
    Case("ipam-subnet-too-small", "POST", NET, cfg(Subnet="10.91.0.0/31"), 400, "too small"),
    Case("ipam-subnet-newline", "POST", NET, cfg(Subnet="10.91.0.0/24\n"), 400, "subnet"),
    Case("ipam-subnet-overlap", "POST", NET, cfg(Subnet="10.90.0.0/16"), 409, "overlaps"),
    Case("ipam-subnet-same", "POST", NET, cfg(Subnet="10.90.1.0/24"), 409, "overlaps"),
    Case("ipam-gw-outside", "POST", NET, cfg(Gateway="10.92.0.1"), 400, "no matching subnet"),
    Case("ipam-gw-network", "POST", NET, cfg(Gateway="10.91.0.0"), 400, "network address"),
    Case("ipam-gw-broadcast", "POST", NET, cfg(Gateway="10.91.0.255"), 400, "broadcast"),
    Case(
        "ipam-gw-is-aux",
        "POST",
        NET,
        cfg(Gateway="10.91.0.9", AuxiliaryAddresses={"r": "10.91.0.9"}),
        400,
        "aux-address",
    ),  # fmt: skip
    Case(
        "ipam-default-gw-is-aux",
        "POST",
        NET,
        cfg(AuxiliaryAddresses={"r": "10.91.0.1"}),
        400,
        "aux-address",
    ),  # fmt: skip
    Case("ipam-gw-word", "POST", NET, cfg(Gateway="gw"), 400, "invalid gateway"),
    Case("ipam-gw-number", "POST", NET, cfg(Gateway=5), 400, "Gateway and IPRange"),
    Case("ipam-gw-v6-in-v4", "POST", NET, cfg(Gateway="fd00::1"), 400, "no matching subnet"),
    Case("ipam-gw-newline", "POST", NET, cfg(Gateway="10.91.0.1\n"), 400, "invalid gateway"),
    Case("ipam-range-outside", "POST", NET, cfg(IPRange="10.92.0.0/25"), 400, "range"),
    Case("ipam-range-word", "POST", NET, cfg(IPRange="x"), 400, "invalid ip-range"),
    Case("ipam-range-bigger", "POST", NET, cfg(IPRange="10.91.0.0/23"), 400, "range"),
    Case("ipam-range-number", "POST", NET, cfg(IPRange=24), 400, "Gateway and IPRange"),
    Case("ipam-aux-list", "POST", NET, cfg(AuxiliaryAddresses=["x"]), 400, "AuxiliaryAddresses"),
    Case(
        "ipam-aux-outside",
        "POST",
        NET,
        cfg(AuxiliaryAddresses={"r": "10.92.0.2"}),
        400,
        "no matching subnet for aux",
    ),  # fmt: skip
    Case("ipam-aux-word", "POST", NET, cfg(AuxiliaryAddresses={"r": "x"}), 400, "auxiliary"),
    Case("ipam-aux-number", "POST", NET, cfg(AuxiliaryAddresses={"r": 1}), 400, "Auxiliary"),
    Case(
        "ipam-aux-key-newline",
        "POST",
        NET,
        cfg(AuxiliaryAddresses={"r\n": "10.91.0.3"}),
        400,
        "control",
    ),  # fmt: skip
    Case("ipam-driver-number", "POST", NET, net(IPAM={"Driver": 1}), 400, "IPAM.Driver"),
    Case("ipam-driver-newline", "POST", NET, net(IPAM={"Driver": "d\n"}), 400, "control"),
    Case("ipam-options-list", "POST", NET, net(IPAM={"Options": []}), 400, "IPAM.Options"),
    Case("ipam-options-number", "POST", NET, net(IPAM={"Options": {"a": 1}}), 400, "IPAM"),
    Case(
        "ipam-v6-subnet-v4-gw",
        "POST",
        NET,
        net(EnableIPv6=True, IPAM={"Config": [{"Subnet": "fd91::/64", "Gateway": "10.0.0.1"}]}),
        400,
        "no matching subnet",
    ),  # fmt: skip
    Case(
        "ipam-v6-gw-network",
        "POST",
        NET,
        net(EnableIPv6=True, IPAM={"Config": [{"Subnet": "fd91::/64", "Gateway": "fd91::"}]}),
        400,
        "network address",
    ),  # fmt: skip
    Case(
        "ipam-second-config-bad",
        "POST",
        NET,
        net(IPAM={"Config": [{"Subnet": "10.91.0.0/24"}, {"Subnet": "y"}]}),
        400,
        "invalid subnet",
    ),  # fmt: skip
    # --- inspect / delete -------------------------------------------------------------
    Case("net-inspect-nosuch", "GET", "/networks/nosuch", None, 404, "nosuch"),
    Case("net-delete-nosuch", "DELETE", "/networks/nosuch", None, 404, "nosuch"),
    Case("net-delete-builtin", "DELETE", "/networks/bridge", None, 403, "bridge"),
    Case("net-delete-host", "DELETE", "/networks/host", None, 403, "host"),
    Case("net-delete-none", "DELETE", "/networks/none", None, 403, "none"),
    Case("net-delete-in-use", "DELETE", "/networks/net1", None, 409, "active endpoints"),
    # --- connect ----------------------------------------------------------------------
    Case("conn-body-array", "POST", "/networks/net1/connect", [], 400, "JSON object"),
    Case("conn-no-container", "POST", "/networks/net1/connect", {}, 400, "Container is required"),
    Case(
        "conn-container-number",
        "POST",
        "/networks/net1/connect",
        {"Container": 5},
        400,
        "Container is required",
    ),  # fmt: skip
    Case(
        "conn-container-newline",
        "POST",
        "/networks/net1/connect",
        {"Container": "sb1\n"},
        400,
        "control",
    ),  # fmt: skip
    Case(
        "conn-container-nosuch",
        "POST",
        "/networks/net1/connect",
        {"Container": "nosuch"},
        404,
        "No such container",
    ),  # fmt: skip
    Case(
        "conn-container-path-outside",
        "POST",
        "/networks/net1/connect",
        {"Container": "/etc/passwd"},
        404,
        "No such container",
    ),  # fmt: skip
    Case(
        "conn-container-dotdot",
        "POST",
        "/networks/net1/connect",
        {"Container": "../../etc"},
        400,
        "invalid container name",
    ),  # fmt: skip
    Case(
        "conn-network-nosuch",
        "POST",
        "/networks/nosuch/connect",
        {"Container": "sb1"},
        404,
        "nosuch",
    ),  # fmt: skip
    Case(
        "conn-already",
        "POST",
        "/networks/net1/connect",
        {"Container": "sb1"},
        409,
        "already exists",
    ),  # fmt: skip
    Case(
        "conn-epcfg-list",
        "POST",
        "/networks/net1/connect",
        {"Container": "sb1", "EndpointConfig": []},
        400,
        "EndpointConfig",
    ),  # fmt: skip
    Case(
        "conn-ipamcfg-string",
        "POST",
        "/networks/net1/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": "x"}},
        400,
        "IPAMConfig",
    ),  # fmt: skip
    Case(
        "conn-ip-number",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": 5}}},
        400,
        "IPv4Address",
    ),  # fmt: skip
    Case(
        "conn-ip-word",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "x"}}},
        400,
        "IPv4Address",
    ),  # fmt: skip
    Case(
        "conn-ip-newline",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.90.2.9\n"}}},
        400,
        "IPv4Address",
    ),  # fmt: skip
    Case(
        "conn-ip-outside",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.99.0.9"}}},
        400,
        "no configured subnet",
    ),  # fmt: skip
    Case(
        "conn-ip-network-addr",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.90.2.0"}}},
        400,
        "reserved",
    ),  # fmt: skip
    Case(
        "conn-ip-gateway",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.90.2.1"}}},
        400,
        "reserved",
    ),  # fmt: skip
    Case(
        "conn-ip-broadcast",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.90.2.255"}}},
        400,
        "reserved",
    ),  # fmt: skip
    Case(
        "conn-ip6-on-v4-net",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"IPAMConfig": {"IPv6Address": "fd00::5"}}},
        400,
        "IPv6",
    ),  # fmt: skip
    Case(
        "conn-aliases-string",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"Aliases": "x"}},
        400,
        "Aliases",
    ),  # fmt: skip
    Case(
        "conn-aliases-number",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"Aliases": [5]}},
        400,
        "Aliases",
    ),  # fmt: skip
    Case(
        "conn-alias-space",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"Aliases": ["a b"]}},
        400,
        "invalid alias",
    ),  # fmt: skip
    Case(
        "conn-alias-newline",
        "POST",
        "/networks/net2/connect",
        {"Container": "sb1", "EndpointConfig": {"Aliases": ["db\n"]}},
        400,
        "invalid alias",
    ),  # fmt: skip
    # --- disconnect -------------------------------------------------------------------
    Case("disc-no-container", "POST", "/networks/net1/disconnect", {}, 400, "Container"),
    Case(
        "disc-force-string",
        "POST",
        "/networks/net1/disconnect",
        {"Container": "sb1", "Force": "yes"},
        400,
        "Force",
    ),  # fmt: skip
    Case(
        "disc-nosuch-container",
        "POST",
        "/networks/net1/disconnect",
        {"Container": "nosuch"},
        404,
        "No such container",
    ),  # fmt: skip
    Case(
        "disc-nosuch-network",
        "POST",
        "/networks/nosuch/disconnect",
        {"Container": "sb1"},
        404,
        "nosuch",
    ),  # fmt: skip
    Case(
        "disc-not-connected",
        "POST",
        "/networks/bridge/disconnect",
        {"Container": "sb1"},
        404,
        "not connected|no endpoint|No such",
    ),  # fmt: skip
    # --- POST /sandboxes/create: command, name, environment ---------------------------
    Case("sb-no-cmd", "POST", SB, {"Networks": [{"Name": "net1"}]}, 400, "Cmd"),
    Case("sb-cmd-empty", "POST", SB, sb(Cmd=[]), 400, "Cmd"),
    Case("sb-cmd-string", "POST", SB, sb(Cmd="sleep 1"), 400, "Cmd"),
    Case("sb-cmd-number", "POST", SB, sb(Cmd=[1]), 400, "Cmd"),
    Case("sb-cmd-empty-prog", "POST", SB, sb(Cmd=[""]), 400, "Cmd"),
    Case("sb-cmd-nul", "POST", SB, sb(Cmd=["sle\u0000ep"]), 400, "Cmd"),
    Case("sb-cmd-surrogate", "POST", SB, sb(Cmd=["echo", "\udcff"]), 400, "Cmd"),
    Case("sb-name-slash", "POST", SB, sb(Name="a/b"), 400, "invalid container name"),
    Case("sb-name-newline", "POST", SB, sb(Name="x\n"), 400, "invalid container name"),
    Case("sb-name-number", "POST", SB, sb(Name=5), 400, "Name"),
    Case("sb-name-taken", "POST", SB, sb(Name="sb1"), 409, "already in use"),
    Case("sb-env-list", "POST", SB, sb(Env=["A=1"]), 400, "Env"),
    Case("sb-env-number", "POST", SB, sb(Env={"A": 5}), 400, "value of 'A'"),
    Case("sb-env-key-empty", "POST", SB, sb(Env={"": "x"}), 400, "environment variable"),
    Case("sb-env-key-equals", "POST", SB, sb(Env={"A=B": "x"}), 400, "environment variable"),
    Case("sb-env-key-newline", "POST", SB, sb(Env={"A\n": "x"}), 400, "environment variable"),
    Case("sb-env-value-nul", "POST", SB, sb(Env={"A": "a\u0000b"}), 400, "NUL"),
    Case("sb-workdir-relative", "POST", SB, sb(WorkingDir="rel"), 400, "absolute"),
    Case("sb-workdir-newline", "POST", SB, sb(WorkingDir="/a\nb"), 400, "control"),
    Case("sb-workdir-number", "POST", SB, sb(WorkingDir=5), 400, "WorkingDir"),
    Case("sb-start-string", "POST", SB, sb(Start="yes"), 400, "Start"),
    # --- hostname, resolver, hosts ----------------------------------------------------
    Case("sb-hostname-newline", "POST", SB, sb(Hostname="a\nb"), 400, "control"),
    Case("sb-hostname-65", "POST", SB, sb(Hostname="a" * 65), 400, "longer than"),
    Case("sb-hostname-label-64", "POST", SB, sb(Hostname="a" * 64), 400, "longer than"),
    Case(
        "sb-hostname-fqdn-70",
        "POST",
        SB,
        sb(Hostname="a" * 30 + "." + "b" * 30 + ".example"),
        400,
        "longer than 64",
    ),  # fmt: skip
    Case("sb-hostname-254", "POST", SB, sb(Hostname=".".join(["a" * 50] * 5)), 400, "longer"),
    Case("sb-hostname-dash-first", "POST", SB, sb(Hostname="-a"), 400, "labels"),
    Case("sb-hostname-dash-last", "POST", SB, sb(Hostname="a-"), 400, "labels"),
    Case("sb-hostname-underscore", "POST", SB, sb(Hostname="a_b"), 400, "labels"),
    Case("sb-hostname-empty-label", "POST", SB, sb(Hostname="a..b"), 400, "labels"),
    Case("sb-hostname-trailing-dot", "POST", SB, sb(Hostname="a."), 400, "trailing dot"),
    Case("sb-hostname-space", "POST", SB, sb(Hostname="a b"), 400, "labels"),
    Case("sb-hostname-number", "POST", SB, sb(Hostname=5), 400, "Hostname"),
    Case("sb-hostname-tab", "POST", SB, sb(Hostname="a\tb"), 400, "control"),
    Case("sb-dns-word", "POST", SB, sb(Dns=["x"]), 400, "DNS server"),
    Case("sb-dns-string", "POST", SB, sb(Dns="1.1.1.1"), 400, "Dns"),
    Case("sb-dns-number", "POST", SB, sb(Dns=[5]), 400, "Dns"),
    Case("sb-dns-newline", "POST", SB, sb(Dns=["192.0.2.1\nnameserver 6.6.6.6"]), 400, "DNS"),
    Case("sb-dns-zone-newline", "POST", SB, sb(Dns=["fe80::1%a\nb"]), 400, "DNS server"),
    Case("sb-dns-zone-space", "POST", SB, sb(Dns=["fe80::1%a b"]), 400, "DNS server"),
    Case(
        "sb-search-inject",
        "POST",
        SB,
        sb(DnsSearch=["a\nnameserver 6.6.6.6"]),
        400,
        "control",
    ),  # fmt: skip
    Case("sb-search-space", "POST", SB, sb(DnsSearch=["a b"]), 400, "search domain"),
    Case("sb-search-empty", "POST", SB, sb(DnsSearch=[""]), 400, "search domain"),
    Case("sb-search-label-64", "POST", SB, sb(DnsSearch=["a" * 64 + ".com"]), 400, "longer"),
    Case("sb-search-254", "POST", SB, sb(DnsSearch=[".".join(["a" * 60] * 5)]), 400, "longer"),
    Case("sb-search-number", "POST", SB, sb(DnsSearch=[5]), 400, "DnsSearch"),
    Case("sb-search-string", "POST", SB, sb(DnsSearch="a.com"), 400, "DnsSearch"),
    Case("sb-search-dotdot", "POST", SB, sb(DnsSearch=["a..com"]), 400, "search domain"),
    Case(
        "sb-option-inject",
        "POST",
        SB,
        sb(DnsOptions=["ndots:1\nnameserver 6.6.6.6"]),
        400,
        "control",
    ),  # fmt: skip
    Case("sb-option-space", "POST", SB, sb(DnsOptions=["ndots: 1"]), 400, "DNS option"),
    Case("sb-option-empty", "POST", SB, sb(DnsOptions=[""]), 400, "DNS option"),
    Case("sb-option-colon-first", "POST", SB, sb(DnsOptions=[":x"]), 400, "DNS option"),
    Case("sb-option-long", "POST", SB, sb(DnsOptions=["x" * 65]), 400, "DNS option"),
    Case("sb-option-number", "POST", SB, sb(DnsOptions=[1]), 400, "DnsOptions"),
    Case("sb-host-no-ip", "POST", SB, sb(ExtraHosts=["db"]), 400, "add-host"),
    Case("sb-host-bad-ip", "POST", SB, sb(ExtraHosts=["db:x"]), 400, "add-host"),
    Case("sb-host-no-name", "POST", SB, sb(ExtraHosts=[":192.0.2.1"]), 400, "add-host"),
    Case("sb-host-space", "POST", SB, sb(ExtraHosts=["d b:192.0.2.1"]), 400, "add-host"),
    Case("sb-host-newline-name", "POST", SB, sb(ExtraHosts=["db\n:192.0.2.1"]), 400, "add-host"),
    Case("sb-host-newline-ip", "POST", SB, sb(ExtraHosts=["db:192.0.2.1\n"]), 400, "add-host"),
    Case("sb-host-number", "POST", SB, sb(ExtraHosts=[1]), 400, "ExtraHosts"),
    # --- networks, modes, ports -------------------------------------------------------
    Case("sb-networks-string", "POST", SB, sb(Networks="net1"), 400, "Networks"),
    Case("sb-networks-item-number", "POST", SB, sb(Networks=[5]), 400, "Networks"),
    Case("sb-networks-no-name", "POST", SB, sb(Networks=[{}]), 400, "Networks"),
    Case("sb-networks-name-number", "POST", SB, sb(Networks=[{"Name": 5}]), 400, "Networks"),
    Case("sb-networks-name-bad", "POST", SB, sb(Networks=[{"Name": "a b"}]), 400, "network name"),
    Case("sb-networks-nosuch", "POST", SB, sb(Networks=[{"Name": "nosuch"}]), 404, "nosuch"),
    Case(
        "sb-networks-second-nosuch",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1"}, {"Name": "nosuch"}]),
        404,
        "nosuch",
    ),  # fmt: skip
    Case(
        "sb-ip-word",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1", "IPv4Address": "x"}]),
        400,
        "IPv4Address",
    ),  # fmt: skip
    Case(
        "sb-ip-number",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1", "IPv4Address": 5}]),
        400,
        "IPv4Address",
    ),  # fmt: skip
    Case(
        "sb-ip-outside",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1", "IPv4Address": "10.99.0.5"}]),
        400,
        "no configured subnet",
    ),  # fmt: skip
    Case(
        "sb-ip-taken",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1", "IPv4Address": "10.90.1.10"}]),
        409,
        "in use",
    ),  # fmt: skip
    Case(
        "sb-ip-gateway",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1", "IPv4Address": "10.90.1.1"}]),
        400,
        "reserved",
    ),  # fmt: skip
    Case(
        "sb-ip-second-net-taken",
        "POST",
        SB,
        sb(Networks=[{"Name": "net2"}, {"Name": "net1", "IPv4Address": "10.90.1.10"}]),
        409,
        "in use",
    ),  # fmt: skip
    Case(
        "sb-ip6-word",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1", "IPv6Address": "x"}]),
        400,
        "IPv6Address",
    ),  # fmt: skip
    Case(
        "sb-alias-bad",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1", "Aliases": ["a b"]}]),
        400,
        "invalid alias",
    ),  # fmt: skip
    Case(
        "sb-aliases-string",
        "POST",
        SB,
        sb(Networks=[{"Name": "net1", "Aliases": "a"}]),
        400,
        "Aliases",
    ),  # fmt: skip
    Case("sb-mode-number", "POST", SB, sb(NetworkMode=5), 400, "NetworkMode"),
    Case("sb-mode-space", "POST", SB, sb(Networks=[], NetworkMode="a b"), 400, "network name"),
    Case("sb-mode-nosuch", "POST", SB, sb(Networks=[], NetworkMode="nosuch"), 404, "nosuch"),
    Case(
        "sb-mode-container-nosuch",
        "POST",
        SB,
        sb(Networks=[], NetworkMode="container:nosuch"),
        404,
        "No such container",
    ),  # fmt: skip
    Case(
        "sb-mode-container-bad",
        "POST",
        SB,
        sb(Networks=[], NetworkMode="container:a/b"),
        400,
        "invalid container name",
    ),  # fmt: skip
    Case(
        "sb-mode-container-publish",
        "POST",
        SB,
        sb(Networks=[], NetworkMode="container:sb1", Publish=["80"]),
        400,
        "conflicting",
    ),  # fmt: skip
    Case(
        "sb-mode-container-hostname",
        "POST",
        SB,
        sb(Networks=[], NetworkMode="container:sb1", Hostname="h"),
        400,
        "conflicting",
    ),  # fmt: skip
    Case("sb-publish-string", "POST", SB, sb(Publish="80"), 400, "Publish"),
    Case("sb-publish-number", "POST", SB, sb(Publish=[80]), 400, "Publish"),
    Case("sb-publish-word", "POST", SB, sb(Publish=["abc"]), 400, "port specification"),
    Case("sb-publish-zero", "POST", SB, sb(Publish=["0"]), 400, "port range"),
    Case("sb-publish-70000", "POST", SB, sb(Publish=["70000"]), 400, "port range"),
    Case("sb-publish-icmp", "POST", SB, sb(Publish=["80/icmp"]), 400, "protocol"),
    Case("sb-publish-bad-ip", "POST", SB, sb(Publish=["1.2.3:80:80"]), 400, "host IP"),
    Case("sb-publish-ranges", "POST", SB, sb(Publish=["80-81:90-92"]), 400, "ranges"),
    Case("sb-publish-reversed", "POST", SB, sb(Publish=["90-80"]), 400, "port range"),
    Case("sb-publish-bracket", "POST", SB, sb(Publish=["[::1:80"]), 400, "port specification"),
    Case("sb-publish-newline", "POST", SB, sb(Publish=["80\n"]), 400, "port specification"),
    Case(
        "sb-publish-taken",
        "POST",
        SB,
        sb(Publish=["127.0.0.1:18555:80"]),
        409,
        "already allocated",
    ),  # fmt: skip
    Case(
        "sb-publish-taken-any",
        "POST",
        SB,
        sb(Publish=["18555:80"]),
        409,
        "already allocated",
    ),  # fmt: skip
    Case(
        "sb-publish-twice",
        "POST",
        SB,
        sb(Publish=["18556:80", "18556:81"]),
        409,
        "already allocated",
    ),  # fmt: skip
    # --- sandbox operations -----------------------------------------------------------
    Case("sb-get-nosuch", "GET", "/sandboxes/nosuch", None, 404, "No such container"),
    Case("sb-delete-nosuch", "DELETE", "/sandboxes/nosuch", None, 404, "No such container"),
    Case("sb-delete-running", "DELETE", "/sandboxes/sb1", None, 409, "running container"),
    Case("sb-delete-force-word", "DELETE", "/sandboxes/sb1?force=maybe", None, 400, "force"),
    Case("sb-delete-force-empty", "DELETE", "/sandboxes/sb1?force=", None, 400, "force"),
    Case("sb-start-running", "POST", "/sandboxes/sb1/start", None, 409, "already running"),
    Case("sb-start-nosuch", "POST", "/sandboxes/nosuch/start", None, 404, "No such"),
    Case("sb-stop-t-word", "POST", "/sandboxes/sb1/stop?t=abc", None, 400, "invalid t"),
    Case("sb-stop-t-negative", "POST", "/sandboxes/sb1/stop?t=-1", None, 400, "invalid t"),
    Case("sb-stop-t-nan", "POST", "/sandboxes/sb1/stop?t=nan", None, 400, "invalid t"),
    Case("sb-stop-t-inf", "POST", "/sandboxes/sb1/stop?t=inf", None, 400, "invalid t"),
    Case("sb-stop-t-huge", "POST", "/sandboxes/sb1/stop?t=1e9", None, 400, "invalid t"),
    Case("sb-stop-t-empty", "POST", "/sandboxes/sb1/stop?t=", None, 400, "invalid t"),
    Case("sb-stop-nosuch", "POST", "/sandboxes/nosuch/stop", None, 404, "No such"),
    Case("sb-running-no-pid", "POST", "/sandboxes/sb1/running", {}, 400, "Pid"),
    Case("sb-running-pid-word", "POST", "/sandboxes/sb1/running", {"Pid": "x"}, 400, "Pid"),
    Case("sb-running-pid-negative", "POST", "/sandboxes/sb1/running", {"Pid": -1}, 400, "Pid"),
    Case("sb-running-pid-zero", "POST", "/sandboxes/sb1/running", {"Pid": 0}, 400, "Pid"),
    Case("sb-running-pid-float", "POST", "/sandboxes/sb1/running", {"Pid": 1.5}, 400, "Pid"),
    Case("sb-running-pid-bool", "POST", "/sandboxes/sb1/running", {"Pid": True}, 400, "Pid"),
    Case("sb-running-pid-huge", "POST", "/sandboxes/sb1/running", {"Pid": 2**40}, 400, "Pid"),
    Case("sb-running-body-list", "POST", "/sandboxes/sb1/running", [1], 400, "JSON object"),
    Case("sb-exited-code-word", "POST", "/sandboxes/sb1/exited", {"ExitCode": "x"}, 400, "Exit"),
    Case("sb-exited-code-neg", "POST", "/sandboxes/sb1/exited", {"ExitCode": -1}, 400, "Exit"),
    Case("sb-exited-code-256", "POST", "/sandboxes/sb1/exited", {"ExitCode": 256}, 400, "Exit"),
    Case("sb-exited-code-float", "POST", "/sandboxes/sb1/exited", {"ExitCode": 1.0}, 400, "Exit"),
    Case("sb-action-unknown", "POST", "/sandboxes/sb1/bogus", None, 404, "page not found"),
    Case("sb-launch-nosuch", "GET", "/sandboxes/nosuch/launch", None, 404, "No such"),
]

# Malformed HTTP, sent byte for byte: (id, request, status, message regex)
H = b"Host: k\r\n"
RAW: list[tuple[str, bytes, int, str]] = [
    (
        "len-word",
        b"POST " + NET.encode() + b" HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n"
        b'{"Name":"r1"}',
        400,
        "Content-Length",
    ),
    (
        "len-negative",
        b"POST /networks/create HTTP/1.1\r\n" + H + b"Content-Length: -5\r\n\r\n" b'{"Name":"r2"}',
        400,
        "Content-Length",
    ),
    (
        "len-plus",
        b"POST /networks/create HTTP/1.1\r\n" + H + b"Content-Length: +13\r\n\r\n" b'{"Name":"r3"}',
        400,
        "Content-Length",
    ),
    (
        "len-float",
        b"POST /networks/create HTTP/1.1\r\n" + H + b"Content-Length: 13.0\r\n\r\n"
        b'{"Name":"r4"}',
        400,
        "Content-Length",
    ),
    (
        "len-hex",
        b"POST /networks/create HTTP/1.1\r\n" + H + b"Content-Length: 0xd\r\n\r\n" b'{"Name":"r5"}',
        400,
        "Content-Length",
    ),
    (
        "len-20-digits",
        b"POST /networks/create HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999\r\n\r\n",
        400,
        "Content-Length",
    ),
    (
        "len-too-large",
        b"POST /networks/create HTTP/1.1\r\n" + H + b"Content-Length: 2000000\r\n\r\n{",
        413,
        "too large",
    ),
    (
        "len-conflicting",
        b"POST /networks/create HTTP/1.1\r\n"
        + H
        + b"Content-Length: 13\r\nContent-Length: 5\r\n\r\n"
        + b'{"Name":"r6"}',
        400,
        "conflicting",
    ),
    (
        "len-unicode-digit",
        b"POST /networks/create HTTP/1.1\r\n"
        + H
        + "Content-Length: \u0661\u0663\r\n\r\n".encode()
        + b'{"Name":"r7"}',
        400,
        "Content-Length",
    ),
    (
        "chunked",
        b"POST /networks/create HTTP/1.1\r\n"
        + H
        + b"Transfer-Encoding: chunked\r\n\r\nd\r\n"
        + b'{"Name":"r8"}'
        + b"\r\n0\r\n\r\n",
        400,
        "Transfer-Encoding",
    ),
    ("method-put", b"PUT /networks/net1 HTTP/1.1\r\n" + H + b"\r\n", 501, "Unsupported method"),
    ("method-patch", b"PATCH /networks/net1 HTTP/1.1\r\n" + H + b"\r\n", 501, "method"),
    ("request-line-garbage", b"GARBAGE\r\n\r\n", 400, "request"),
    ("request-line-nul", b"GET /\x00 HTTP/1.1\r\n" + H + b"\r\n", 400, "."),
    ("version-9", b"GET /_ping HTTP/9.9\r\n" + H + b"\r\n", 505, "version"),
    ("version-word", b"GET /_ping HTTP/x\r\n" + H + b"\r\n", 400, "version"),
    ("uri-too-long", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414, "."),
    ("headers-too-many", b"GET /_ping HTTP/1.1\r\n" + b"X: 1\r\n" * 150 + b"\r\n", 431, "."),
    ("header-too-long", b"GET /_ping HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", 431, "."),
]


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kanald]:
    with kanald(tmp_path_factory.mktemp("badapi")) as k:
        populate(k)
        yield k


def _check(status: int, body: Any, case_status: int, pattern: str) -> None:
    assert status == case_status, (status, body)
    assert isinstance(body, dict) and isinstance(body.get("message"), str), body
    assert re.search(pattern, body["message"]), body["message"]
    assert "\n" not in body["message"].strip() and "Traceback" not in body["message"]


# Known leaks (strict: the day one is fixed, this list must shrink). None now: a
# sandbox whose second network refuses it leaves nothing on the first one.
LEAKS: dict[str, str] = {}
# Cases that put a port on a bridge before they are refused: the bridge's carrier
# goes off through the kernel's link watch (up to a second later), so their "after"
# is taken once the kernel has settled.
SETTLE = {"sb-ip-second-net-taken"}


def _params() -> list[Any]:
    return [
        pytest.param(c, id=c.id, marks=pytest.mark.xfail(reason=LEAKS[c.id], strict=True))
        if c.id in LEAKS
        else pytest.param(c, id=c.id)
        for c in CASES
    ]


@pytest.mark.parametrize("case", _params())
def test_bad_request(d: Kanald, case: Case) -> None:
    before = d.snap()
    try:
        status, body = d.call(case.method, case.path, case.body)
        _check(status, body, case.status, case.message)
        after = settle(d.snap) if case.id in SETTLE else d.snap()
        assert_unchanged(before, after, case.id)
    finally:
        if case.id in LEAKS:
            settle(d.snap)  # what leaked settles now, not during the next case


@pytest.mark.parametrize(("name", "request_", "status", "message"), RAW, ids=[r[0] for r in RAW])
def test_malformed_http(d: Kanald, name: str, request_: bytes, status: int, message: str) -> None:
    before = d.snap()
    got, headers, body = parse_response(d.raw(request_))
    _check(got, body, status, message)
    assert headers.get("content-type") == "application/json"
    assert_unchanged(before, d.snap(), name)


def test_case_count() -> None:
    # The issue asks for at least 300 named cases across API, CLI and CNI; this file
    # holds the API's share.
    assert len({c.id for c in CASES}) == len(CASES) and len({r[0] for r in RAW}) == len(RAW)
    assert len(CASES) + len(RAW) >= 250


def test_sandbox_files_unharmed(d: Kanald) -> None:
    """After all of that, sb1's /etc files are what they were: no injected line."""
    sid = d.call("GET", "/sandboxes/sb1")[1]["Id"]
    resolv = (d.state / "sandboxes" / sid / "resolv.conf").read_text()
    assert "6.6.6.6" not in resolv
    assert json.loads((d.state / "sandboxes" / sid / "launch.json").read_text())["argv"] == [
        "sleep",
        "3000",
    ]


def test_state_dir_modes(d: Kanald) -> None:
    """Every directory of the state is 0700 and every file 0600, but the sandbox's
    /etc files (0644, read by its own processes), the plugin shims (executable) and
    their exec image (0644), all behind 0700 directories."""
    bad = []
    for p in [d.state, *d.state.rglob("*")]:
        if p.is_symlink() or p.is_socket():
            continue
        mode = p.stat().st_mode & 0o777
        if p.is_dir():
            ok = mode == 0o700
        elif p.parent.name == "bin" and p.parent.parent == d.state:
            # plugin shims and their exec image (the same code as the public source),
            # behind the 0700 bin/
            ok = mode in ((0o644,) if p.name == ".kanal-exec-image" else (0o700, 0o755))
        elif p.parent.parent.name == "sandboxes" and p.name in ("hosts", "resolv.conf", "hostname"):
            ok = mode == 0o644
        else:
            ok = mode & 0o077 == 0
        if not ok:
            bad.append((str(p.relative_to(d.state)), oct(mode)))
    assert not bad
