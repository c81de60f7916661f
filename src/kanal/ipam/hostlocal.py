"""The host-local IPAM plugin's logic, over any :class:`~kanal.ipam.store.Store`.

Go reference: ``plugins/ipam/host-local/main.go``, ``dns.go`` and
``backend/allocator/config.go``. Config keys, defaults, error texts and the
order of operations are Go's; the additions are GC and STATUS (CNI 1.1, which
the Go plugin does not implement).

Requested addresses come from CNI_ARGS ``IP``, ``args.cni.ips`` and
``runtimeConfig.ips``, all together (Go collects the three); each range set
takes the first requested address it contains, and an address no set takes
fails the ADD. Range sets come from ``runtimeConfig.ipRanges`` (prepended),
then the legacy top-level ``subnet``/``rangeStart``/``rangeEnd``/``gateway``,
then ``ranges``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kanal._dataclass import dataclass, field
from kanal.errors import (
    Conflict,
    DecodeError,
    InvalidConfig,
    InvalidEnv,
    IOFailure,
    KanalError,
    NotFound,
    TeardownError,
    Unavailable,
)
from kanal.ipam.allocator import allocate
from kanal.ipam.ranges import (
    RANGE,
    RANGE_SET,
    RangeError,
    RangeSet,
    canonical_ip,
    range_set_from_go,
)
from kanal.ipam.store import Store, StoreMissing, go_trim
from kanal.spec._wire import routes_from_go
from kanal.spec.args import load_args, validate_network_name
from kanal.spec.gojson import STRING, Ptr, Slice, Struct, Text, decode, decode_lenient
from kanal.spec.gotypes import ROUTE
from kanal.spec.types import DNS, IPAddr, Result, Route, parse_cidr, parse_ip
from kanal.spec.versions import version_ge

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = [
    "DEFAULT_DATA_DIR",
    "EMPTY_GRACE",
    "HostLocalConf",
    "add",
    "check",
    "data_dir_of",
    "delete",
    "gc",
    "load_conf",
    "parse_ip_arg",
    "parse_resolv_conf",
    "range_set_count",
    "status",
]

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
# Seconds an empty reservation file must have existed before DEL/GC remove it.
EMPTY_GRACE = 5.0


@dataclass(frozen=True)
class HostLocalConf:
    """A validated host-local config (Go ``IPAMConfig`` after ``LoadIPAMConfig``)."""

    name: str
    cni_version: str
    ranges: tuple[RangeSet, ...]
    routes: tuple[Route, ...] = ()
    data_dir: str = DEFAULT_DATA_DIR
    resolv_conf: str = ""
    requested: tuple[IPAddr, ...] = field(default=())


def _ip_text(s: str) -> IPAddr:
    """Go ``ip.IP.UnmarshalText`` (an address, or a CIDR whose address is taken)."""
    try:
        return parse_ip_arg(s)
    except DecodeError as e:
        raise ValueError(e.msg) from None


def parse_ip_arg(s: str) -> IPAddr:
    """Go ``ip.IP``: an address, or a CIDR whose address part is taken.

    Raises:
        DecodeError: "invalid IP address <s>".
    """
    try:
        if "/" in s:
            return canonical_ip(parse_cidr(s).ip)
        return canonical_ip(parse_ip(s))
    except DecodeError:
        raise DecodeError(f"invalid IP address {s}") from None


_PLUGIN_IP = Ptr(Text("ip.IP", _ip_text))
IPAM_CONFIG = Struct(
    "IPAMConfig",
    [
        *RANGE.fields,  # the embedded *Range: the legacy single range
        ("Name", STRING),
        ("type", STRING),
        ("routes", Slice(Ptr(ROUTE))),
        ("dataDir", STRING),
        ("resolvConf", STRING),
        ("ranges", Slice(RANGE_SET)),
    ],
    pkg="allocator",
)
NET = Struct(
    "Net",
    [
        ("name", STRING),
        ("cniVersion", STRING),
        ("ipam", Ptr(IPAM_CONFIG)),
        (
            "runtimeConfig",
            Struct("", [("ipRanges", Slice(RANGE_SET)), ("ips", Slice(_PLUGIN_IP))], pkg=""),
        ),
        (
            "args",
            Ptr(
                Struct(
                    "",
                    [("cni", Ptr(Struct("IPAMArgs", [("ips", Slice(_PLUGIN_IP))])))],
                    pkg="",
                )
            ),
        ),
    ],
    pkg="allocator",
)


def _decode(conf: Mapping[str, Any]) -> dict[str, Any]:
    net: dict[str, Any] = decode(NET, conf, "")  # Go returns the decode error bare
    return net


def load_conf(conf: Mapping[str, Any], cni_args: str = "") -> HostLocalConf:
    """Validate a host-local config (the plugin's whole stdin object), as Go does.

    Args:
        conf: the config; host-local reads ``name``, ``cniVersion``, ``ipam``,
            ``runtimeConfig`` (``ips``, ``ipRanges``) and ``args.cni.ips``, with Go's
            decoding rules (:mod:`kanal.spec.gojson`).
        cni_args: ``CNI_ARGS`` (``IP`` is read; other keys need ``IgnoreUnknown``).

    Raises:
        InvalidConfig: Go's texts: "IPAM config missing 'ipam' key", "no IP ranges
            specified", "invalid range set N: ...", "range set N overlaps with M",
            "CNI version X does not support more than 1 address per family", an
            invalid network name, or Go's decode error.
        InvalidEnv: bad ``CNI_ARGS``.
    """
    net = _decode(conf)
    ipam = net["ipam"]
    if ipam is None:
        raise InvalidConfig("IPAM config missing 'ipam' key")
    name: str = net["name"]
    validate_network_name(name)
    cni_version: str = net["cniVersion"]

    requested: list[IPAddr] = []
    if cni_args:
        value = load_args(cni_args, ("IP",)).get("IP", "")
        if value:
            try:
                requested = [parse_ip_arg(value)]
            except DecodeError as e:
                raise InvalidEnv(
                    f'ARGS: error parsing value of pair "IP={value}": {e.msg}'
                ) from None
    args_cni = (net["args"] or {}).get("cni") or {}
    # (a null entry would crash Go's host-local; it requests nothing here)
    requested += [ip for ip in args_cni.get("ips") or [] if ip is not None]
    requested += [ip for ip in net["runtimeConfig"]["ips"] or [] if ip is not None]

    raw_sets: list[Any] = list(ipam["ranges"] or [])
    if ipam["subnet"] is not None:
        raw_sets.insert(0, [{k: ipam[k] for k, _ in RANGE.fields}])
    raw_sets[:0] = net["runtimeConfig"]["ipRanges"] or []
    if not raw_sets:
        raise InvalidConfig("no IP ranges specified")
    sets: list[RangeSet] = []
    for i, raw in enumerate(raw_sets):
        try:
            sets.append(range_set_from_go(raw or []))
        except RangeError as e:
            raise InvalidConfig(f"invalid range set {i}: {e}") from None
    v4 = sum(1 for s in sets if s.version == 4)
    v6 = len(sets) - v4
    if (v4 > 1 or v6 > 1) and not _at_least(cni_version, "0.3.0"):
        raise InvalidConfig(
            f"CNI version {cni_version} does not support more than 1 address per family"
        )
    for i, a in enumerate(sets):
        for j in range(i + 1, len(sets)):
            if a.overlaps(sets[j]):
                raise InvalidConfig(f"range set {i} overlaps with {j}")

    try:
        routes = tuple(routes_from_go(ipam["routes"], "ipam.routes"))
    except DecodeError as e:
        raise InvalidConfig("invalid route in ipam.routes", e.details or e.msg) from None
    return HostLocalConf(
        name=name,
        cni_version=cni_version,
        ranges=tuple(sets),
        routes=routes,
        data_dir=ipam["dataDir"] or DEFAULT_DATA_DIR,
        resolv_conf=ipam["resolvConf"],
        requested=tuple(requested),
    )


def _at_least(v: str, minimum: str) -> bool:
    try:
        return version_ge(v, minimum)
    except KanalError:
        return False


# Only what names the store: other keys, valid or not, are not read (as Go ignores
# unknown keys).
_STORE_NET = Struct(
    "Net",
    [("name", STRING), ("ipam", Ptr(Struct("IPAMConfig", [("dataDir", STRING)])))],
    pkg="allocator",
)


def data_dir_of(conf: Mapping[str, Any]) -> tuple[str, str]:
    """``(dataDir, network name)`` from a raw config, without validating ranges.

    DEL, GC and STATUS of a network whose ranges come only from runtimeConfig
    (sent on ADD) still need to find the store, and so does the DEL of an ADD that
    failed on a bad value elsewhere in the config: only ``name`` and
    ``ipam.dataDir`` are read.

    Raises:
        InvalidConfig: missing ``ipam``, a bad ``dataDir`` type or network name.
    """
    net = decode(_STORE_NET, conf, "failed to load IPAM config")
    ipam = net["ipam"]
    if ipam is None:
        raise InvalidConfig("IPAM config missing 'ipam' key")
    name: str = net["name"]
    validate_network_name(name)
    return ipam["dataDir"] or DEFAULT_DATA_DIR, name


def range_set_count(conf: Mapping[str, Any]) -> int:
    """How many range sets a (possibly invalid) config names; at least 1."""
    net, _ = decode_lenient(NET, conf)
    ipam = net["ipam"] or {}
    n = len(ipam.get("ranges") or []) + len(net["runtimeConfig"]["ipRanges"] or [])
    return max(1, n + (ipam.get("subnet") is not None))


def parse_resolv_conf(path: str) -> DNS:
    """A resolv.conf as Go host-local reads it (``dns.go``).

    ``nameserver`` lines append one server, ``domain`` sets the domain (last
    wins), ``search`` and ``options`` append all their words; comments (``#``,
    ``;``) and lines with fewer than two words are skipped.

    Raises:
        IOFailure: the file cannot be read ("open <path>: <reason>").
    """
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as e:
        reason = (e.strerror or str(e)).lower()
        raise IOFailure(f"open {path}: {reason}") from None
    dns = DNS()
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        words = line.split()
        if len(words) < 2:
            continue
        key = words[0]
        if key == "nameserver":
            dns.nameservers.append(words[1])
        elif key == "domain":
            dns.domain = words[1]
        elif key == "search":
            dns.search.extend(words[1:])
        elif key == "options":
            dns.options.extend(words[1:])
    return dns


def add(conf: HostLocalConf, store: Store, container_id: str, ifname: str) -> Result:
    """ADD: one address per range set, all or nothing (Go ``cmdAdd``).

    Raises:
        Conflict: Go's allocation errors, prefixed "failed to allocate for range N: ",
            or "failed to allocate all requested IPs: <ips>".
        IOFailure: resolvConf unreadable, or the store failed.
    """
    result = Result()
    if conf.resolv_conf:
        result.dns = parse_resolv_conf(conf.resolv_conf)
    pending: dict[IPAddr, None] = dict.fromkeys(conf.requested)
    allocated = 0
    with store.locked(create=True):
        try:
            for idx, rs in enumerate(conf.ranges):
                want = next((ip for ip in pending if rs.contains(ip)), None)
                if want is not None:
                    del pending[want]
                try:
                    result.ips.append(allocate(rs, store, idx, container_id, ifname, want))
                except (Conflict, IOFailure) as e:
                    raise type(e)(f"failed to allocate for range {idx}: {e.msg}", e.details) from e
                allocated += 1
            if pending:
                raise Conflict(
                    "failed to allocate all requested IPs: " + " ".join(str(ip) for ip in pending)
                )
        except BaseException:
            # Go releases once per range set already served.
            for _ in range(allocated):
                try:
                    store.release_by_id(container_id, ifname)
                except KanalError:
                    pass
            raise
    result.routes = list(conf.routes)
    return result


def delete(store: Store, container_id: str, ifname: str, passes: int = 1) -> None:
    """DEL: release the attachment's reservations; idempotent (Go ``cmdDel``).

    Go runs ``ReleaseByID`` once per range set (``passes``): each pass releases the
    exact ``(id, ifname)`` matches, or, if there are none, the legacy id-only ones.
    Empty reservation files older than :data:`EMPTY_GRACE` are removed too. A
    missing store is success.

    Raises:
        IOFailure: some reservation could not be removed (all were attempted).
    """
    errors: list[str] = []
    try:
        with store.locked(create=False):
            for _ in range(max(passes, 1)):
                try:
                    store.release_by_id(container_id, ifname)
                except KanalError as e:
                    errors.append(str(e))
            store.sweep_empty(EMPTY_GRACE)
    except StoreMissing:
        return
    if errors:
        raise IOFailure(";".join(errors))


def check(store: Store, container_id: str, ifname: str) -> None:
    """CHECK: some reservation belongs to the attachment (Go ``cmdCheck``).

    Raises:
        NotFound: "host-local: Failed to find address added by container <id>".
    """
    try:
        with store.locked(create=False):
            if store.find_by_id(container_id, ifname):
                return
    except StoreMissing:
        pass
    raise NotFound(f"host-local: Failed to find address added by container {container_id}")


def gc(store: Store, valid: Sequence[tuple[str, str]] | None) -> list[str]:
    """GC: release every reservation whose attachment is not in ``valid``.

    ``valid`` is ``cni.dev/valid-attachments`` as ``(containerID, ifname)`` pairs.
    Only address-named entries are reservations. A legacy entry (container ID
    only) is kept if any valid attachment has that container ID. Empty entries
    older than :data:`EMPTY_GRACE` are removed. ``valid=None`` (the key absent, as
    cnitool sends it) releases no reservation; an empty list releases them all.
    Every entry is attempted; a missing store is success.

    Returns:
        The released entry names.

    Raises:
        TeardownError: some entries could not be released (all were attempted).
    """
    errors: list[BaseException] = []
    released: list[str] = []
    try:
        with store.locked(create=False):
            if valid is not None:
                pairs = {(go_trim(cid), ifname) for cid, ifname in valid}
                ids = {cid for cid, _ in pairs}
                for res in store.reservations():
                    if res.ip is None or res.container_id is None:
                        continue
                    if res.ifname is None:
                        keep = res.container_id in ids
                    else:
                        keep = (res.container_id, res.ifname) in pairs
                    if keep:
                        continue
                    try:
                        store.release(res.name)
                        released.append(res.name)
                    except KanalError as e:
                        errors.append(e)
            try:
                released += store.sweep_empty(EMPTY_GRACE)
            except KanalError as e:
                errors.append(e)
    except StoreMissing:
        return released
    if errors:
        raise TeardownError("host-local GC could not release some reservations", errors)
    return released


def status(data_dir: str, name: str) -> None:
    """STATUS: whether ADD could write reservations for this network.

    Raises:
        Unavailable: (code 50) the data directory (or the nearest existing parent
            it would be created in) is not a writable directory, or its file
            system has no free blocks or inodes.
    """
    path = os.path.join(data_dir, name)
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise Unavailable(f"host-local: data directory {path} is not writable", probe)
    try:
        vfs = os.statvfs(probe)
    except OSError as e:
        raise Unavailable(f"host-local: cannot stat {probe}", e.strerror or str(e)) from e
    if vfs.f_bfree == 0 or (vfs.f_files > 0 and vfs.f_ffree == 0):
        raise Unavailable(f"host-local: no space left for {path}")
