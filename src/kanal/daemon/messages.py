"""The REST API's requests, typed: each parses its body (and query) or raises.

As the Docker plugin protocol's messages (:mod:`kanal.dockerplugin.messages`):
a route handler gets a checked value, never raw JSON. The fields and their
checks are docker's (docs/rest-api.md); every getter is in :mod:`.getters`.
Errors are InvalidConfig or DecodeError (a 400), raised before anything is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from kanal import validate
from kanal.daemon.getters import (
    obj,
    opt_bool,
    opt_ip,
    opt_obj,
    opt_str,
    query_one,
    req_str,
    str_list,
    str_map,
)
from kanal.engine.model import IPAMConfig, NetworkSpec
from kanal.engine.ports import parse_publish
from kanal.engine.sandboxnet import link_local_ip
from kanal.engine.sandboxspec import NetworkRequest, SandboxSpec
from kanal.errors import DecodeError, InvalidConfig

__all__ = [
    "Connect",
    "CreateNetwork",
    "CreateSandbox",
    "Disconnect",
    "SandboxExited",
    "SandboxRunning",
    "exposed_port",
    "filters",
    "mac_address",
    "network_spec",
    "parse_link",
    "parse_query",
    "sandbox_spec",
]

#: Pids (sandbox processes) go up to the kernel's pid_max limit.
PID_MAX = 1 << 22


@dataclass(frozen=True)
class CreateNetwork:
    """``POST /networks/create``."""

    spec: NetworkSpec

    @classmethod
    def parse(cls, body: Any) -> CreateNetwork:
        return cls(network_spec(obj(body)))


@dataclass(frozen=True)
class Connect:
    """``POST /networks/{id}/connect``: ``{"Container", "EndpointConfig"}``."""

    container: str
    ip: str
    ip6: str
    aliases: list[str]
    links: list[tuple[str, str]] = field(default_factory=list)  # (sandbox, alias)
    link_local_ips: list[str] = field(default_factory=list)
    driver_opts: dict[str, str] = field(default_factory=dict)
    mac: str = ""

    @classmethod
    def parse(cls, body: Any) -> Connect:
        b = obj(body)
        ref = req_str(b, "Container")
        cfg = opt_obj(b, "EndpointConfig")
        ipam = opt_obj(cfg, "IPAMConfig", "EndpointConfig.")
        ip = opt_ip(ipam, "IPv4Address", "EndpointConfig.IPAMConfig.")
        ip6 = opt_ip(ipam, "IPv6Address", "EndpointConfig.IPAMConfig.")
        aliases = [validate.alias(a) for a in str_list(cfg, "Aliases", "EndpointConfig.")]
        return cls(
            ref,
            ip,
            ip6,
            aliases,
            links=[parse_link(x) for x in str_list(cfg, "Links", "EndpointConfig.")],
            link_local_ips=[
                link_local_ip(x)
                for x in str_list(ipam, "LinkLocalIPs", "EndpointConfig.IPAMConfig.")
            ],
            driver_opts=str_map(cfg, "DriverOpts", "EndpointConfig.DriverOpts"),
            mac=mac_address(opt_str(cfg, "MacAddress", "EndpointConfig.")),
        )


@dataclass(frozen=True)
class Disconnect:
    """``POST /networks/{id}/disconnect``: ``{"Container", "Force"}``."""

    container: str
    force: bool

    @classmethod
    def parse(cls, body: Any) -> Disconnect:
        b = obj(body)
        force = opt_bool(b, "Force", False)
        return cls(req_str(b, "Container"), force)


@dataclass(frozen=True)
class CreateSandbox:
    """``POST /sandboxes/create``: the sandbox, and ``Start`` (create and start as one
    operation, ``kanal run -d``)."""

    spec: SandboxSpec
    start: bool

    @classmethod
    def parse(cls, body: Any) -> CreateSandbox:
        b = obj(body)
        spec = sandbox_spec(b)
        return cls(spec, opt_bool(b, "Start", False))


@dataclass(frozen=True)
class SandboxRunning:
    """``POST /sandboxes/{id}/running``: an attached run's process started."""

    pid: int

    @classmethod
    def parse(cls, b: dict[str, Any]) -> SandboxRunning:
        return cls(validate.parse_int(b.get("Pid"), "Pid", 1, PID_MAX))


@dataclass(frozen=True)
class SandboxExited:
    """``POST /sandboxes/{id}/exited``: an attached run's process ended."""

    code: int

    @classmethod
    def parse(cls, b: dict[str, Any]) -> SandboxExited:
        return cls(validate.parse_int(b.get("ExitCode", 0), "ExitCode", 0, 255))


_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


def mac_address(value: str) -> str:
    """``--mac-address``: six hex pairs with colons, unicast ("" stays "").

    Raises:
        InvalidConfig: docker's message for anything else.
    """
    if not value:
        return ""
    if not _MAC.fullmatch(value):
        raise InvalidConfig(f"{value} is not a valid mac address")
    if int(value[:2], 16) & 1:
        raise InvalidConfig(f"{value} is not a valid mac address: a multicast address")
    return value.lower()


def parse_link(value: str) -> tuple[str, str]:
    """docker's ``--link NAME[:ALIAS]`` as (NAME, ALIAS); ALIAS defaults to NAME.

    Raises:
        InvalidConfig: a bad name or alias.
    """
    name, _, alias = value.partition(":")
    try:
        validate.name(name, "container")
        validate.alias(alias or name)
    except InvalidConfig:
        raise InvalidConfig(f"invalid --link {value!r}: want NAME[:ALIAS]") from None
    return name, alias or name


def network_spec(body: dict[str, Any]) -> NetworkSpec:
    """The fields of docker's ``POST /networks/create`` as a NetworkSpec.

    Raises:
        InvalidConfig: a missing name, a field of the wrong type.
    """
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidConfig("a network name is required")
    driver = body.get("Driver", "bridge")
    if driver is None:
        driver = "bridge"
    if not isinstance(driver, str) or not driver:
        raise InvalidConfig("invalid Driver: want a non-empty string")
    validate.no_control(driver, "Driver")
    ipam = body.get("IPAM")
    if ipam is None:
        ipam = {}
    if not isinstance(ipam, dict):
        raise InvalidConfig("invalid IPAM: want an object")
    cfgs = _ipam_configs(ipam)
    ipam_driver = ipam.get("Driver")
    if ipam_driver is None:
        ipam_driver = "default"
    if not isinstance(ipam_driver, str) or not ipam_driver:
        raise InvalidConfig("invalid IPAM.Driver: want a non-empty string")
    validate.no_control(ipam_driver, "IPAM.Driver")
    return NetworkSpec(
        name=name,
        driver=driver,
        ipam=cfgs,
        ipam_driver=ipam_driver,
        ipam_options=str_map(ipam, "Options", "IPAM.Options"),
        enable_ipv4=opt_bool(body, "EnableIPv4", True),
        enable_ipv6=opt_bool(body, "EnableIPv6", False),
        internal=opt_bool(body, "Internal", False),
        attachable=opt_bool(body, "Attachable", False),
        options=str_map(body, "Options"),
        labels=str_map(body, "Labels"),
        scope=opt_str(body, "Scope"),
        config_only=opt_bool(body, "ConfigOnly", False),
        config_from=_config_from(body),
    )


def _config_from(body: dict[str, Any]) -> str:
    """docker's ``ConfigFrom: {"Network": NAME}`` ("" when absent)."""
    cf = opt_obj(body, "ConfigFrom")
    net = opt_str(cf, "Network", "ConfigFrom.")
    return validate.name(net, "network") if net else ""


def _ipam_configs(ipam: dict[str, Any]) -> list[IPAMConfig]:
    cfgs = []
    config = ipam.get("Config")
    if config is None:
        config = []
    if not isinstance(config, list):
        raise InvalidConfig("invalid IPAM.Config: want a list")
    for i, c in enumerate(config):
        if not isinstance(c, dict):
            raise InvalidConfig(f"invalid IPAM.Config[{i}]: want an object")
        sub = c.get("Subnet", "")
        if not isinstance(sub, str) or not sub:
            raise InvalidConfig(f"IPAM.Config[{i}] has no Subnet")
        gw, rng = c.get("Gateway") or "", c.get("IPRange") or ""
        if not isinstance(gw, str) or not isinstance(rng, str):
            raise InvalidConfig(f"invalid IPAM.Config[{i}]: Gateway and IPRange are strings")
        aux_raw = c.get("AuxiliaryAddresses") or c.get("AuxAddress")
        aux = validate.str_map(aux_raw, "AuxiliaryAddresses")
        cfgs.append(IPAMConfig(sub, gw, rng, aux))
    return cfgs


def sandbox_spec(b: dict[str, Any]) -> SandboxSpec:
    """``POST /sandboxes/create``'s body as a SandboxSpec: every field's JSON type and
    value checked (kanal.validate) before anything is made."""
    cmd = validate.argv(b.get("Cmd"))
    name = opt_str(b, "Name")
    if name:
        validate.name(name, "container")
    nets = _network_requests(b)
    mode = opt_str(b, "NetworkMode") or (nets[0].network if nets else "bridge")
    if mode.startswith("container:"):
        validate.name(mode.split(":", 1)[1], "container")
    else:
        validate.name(mode, "network")
    ports = [
        pb
        for spec in str_list(b, "Publish")
        for pb in parse_publish(validate.no_control(spec, "port specification"))
    ]
    env_raw = b.get("Env")
    if env_raw is None:
        env_raw = {}
    if not isinstance(env_raw, dict):
        raise InvalidConfig("invalid Env: want an object of strings")
    env = dict(validate.env(k, v) for k, v in env_raw.items())
    spec = SandboxSpec(
        argv=cmd,
        name=name,
        network_mode=mode,
        networks=nets,
        publish=ports,
        env=env,
        hostname=opt_str(b, "Hostname"),
        dns=str_list(b, "Dns"),
        dns_search=str_list(b, "DnsSearch"),
        dns_options=str_list(b, "DnsOptions"),
        extra_hosts=str_list(b, "ExtraHosts"),
        workdir=opt_str(b, "WorkingDir"),
        mac_address=mac_address(opt_str(b, "MacAddress")),
        links=[parse_link(x) for x in str_list(b, "Links")],
        exposed=[exposed_port(x) for x in str_list(b, "ExposedPorts")],
        pid_mode=opt_str(b, "PidMode"),
    )
    if spec.pid_mode not in ("", "host"):
        raise InvalidConfig(f"invalid PidMode {spec.pid_mode!r}: want host (or nothing)")
    validate.sandbox(spec)
    return spec


def exposed_port(value: str) -> str:
    """One ``--expose`` port as ``PORT/PROTO`` (a range is expanded by the CLI).

    Raises:
        InvalidConfig: not a port, an unknown protocol.
    """
    port, _, proto = value.partition("/")
    proto = proto or "tcp"
    if not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in ("tcp", "udp", "sctp"):
        raise InvalidConfig(f"invalid exposed port {value!r}: want PORT[/tcp|udp|sctp]")
    return f"{int(port)}/{proto}"


def _network_requests(b: dict[str, Any]) -> list[NetworkRequest]:
    nets_raw = b.get("Networks")
    if nets_raw is None:
        nets_raw = []
    if not isinstance(nets_raw, list):
        raise InvalidConfig("invalid Networks: want a list")
    nets = []
    for i, n in enumerate(nets_raw):
        if not isinstance(n, dict) or not isinstance(n.get("Name"), str):
            raise InvalidConfig(f"invalid Networks[{i}]: want an object with a Name")
        where = f"Networks[{i}]."
        nets.append(
            NetworkRequest(
                validate.name(n["Name"], "network"),
                opt_ip(n, "IPv4Address", where),
                opt_ip(n, "IPv6Address", where),
                [validate.alias(a) for a in str_list(n, "Aliases", where)],
            )
        )
    return nets


def parse_query(qs: str) -> dict[str, list[str]]:
    """A request's query string. Raises DecodeError."""
    try:
        return parse_qs(qs, keep_blank_values=True, errors="strict", max_num_fields=64)
    except UnicodeDecodeError:
        raise DecodeError("invalid query string: not UTF-8") from None
    except ValueError as e:
        raise DecodeError("invalid query string", str(e)) from None


def filters(query: dict[str, list[str]]) -> dict[str, list[str]]:
    """docker's ``filters`` parameter (its map or list form) as key → values."""
    raw = query_one(query, "filters", "")
    if not raw:
        return {}
    f = validate.decode_json(raw.encode(), max_depth=3)
    if not isinstance(f, dict):
        raise InvalidConfig("invalid filters: want an object")
    out: dict[str, list[str]] = {}
    for k, v in f.items():
        # docker sends {"key": {"value": true}} (map form) or {"key": ["value"]}
        if isinstance(v, dict) and all(isinstance(on, bool) for on in v.values()):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[k] = list(v)
        else:
            raise InvalidConfig(f"invalid filter {k!r}")
    return out
