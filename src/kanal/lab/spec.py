"""What a lab is made of: its options, checked, and the names and addresses it uses. Pure.

A lab of ``hosts`` hosts and ``etcd`` etcd members, all on one underlay bridge::

    underlay namespace  kl-<name>-<id>-ul:  bridge "ul" (MTU = --underlay-mtu)
      ├─ port h1 ── veth ── ul0 in kl-<name>-<id>-h1   192.0.2.1     kanald "h1"
      ├─ port h2 ── veth ── ul0 in kl-<name>-<id>-h2   192.0.2.2     kanald "h2"
      ├─ ...
      ├─ port e1 ── veth ── ul0 in kl-<name>-<id>-e1   192.0.2.201   etcd member "e1"
      └─ ...

Hosts are 192.0.2.1-200, etcd members 192.0.2.201-209 (TEST-NET-1: never routed
anywhere, and nothing in a lab has a route out of it anyway). Every ``ul0`` has a
fixed MAC (:func:`mac`), so each namespace gets permanent neighbour entries for
all the others and the underlay never resolves an address (see
:mod:`kanal.lab.lab` on the kernel's shared neighbour table).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

from kanal.errors import InvalidConfig

__all__ = [
    "MAX_ETCD",
    "MAX_HOSTS",
    "LabSpec",
    "addr",
    "etcd_name",
    "host_name",
    "mac",
    "member_index",
    "netns_name",
    "new_lab_id",
    "validate_lab_name",
]

MAX_HOSTS = 200
MAX_ETCD = 9
UNDERLAY_PREFIX = "192.0.2."
UNDERLAY_LEN = 24
ETCD_BASE = 200  # etcd member k is 192.0.2.(200 + k)
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
_MEMBER = re.compile(r"([he])([1-9][0-9]{0,2})\Z")


def validate_lab_name(name: str) -> str:
    """A lab name: docker's name characters, at most 32 (it becomes part of paths
    and namespace names). Raises InvalidConfig."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 32:
        raise InvalidConfig(
            f"invalid lab name {name!r}: want 1-32 of [a-zA-Z0-9_.-], starting with a "
            "letter or digit"
        )
    return name


def new_lab_id() -> str:
    """Six hex digits: what makes a lab's namespace names unique on the machine."""
    return secrets.token_hex(3)


def host_name(i: int) -> str:
    return f"h{i}"


def etcd_name(k: int) -> str:
    return f"e{k}"


def member_index(member: str) -> tuple[str, int]:
    """``h3`` → ("h", 3); ``e1`` → ("e", 1). Raises InvalidConfig."""
    m = _MEMBER.match(member) if isinstance(member, str) else None
    if m is None:
        raise InvalidConfig(f"invalid lab member {member!r}: want hN (a host) or eN (etcd)")
    return m.group(1), int(m.group(2))


def addr(member: str) -> str:
    """The underlay address of ``h<i>`` or ``e<k>``."""
    kind, i = member_index(member)
    return f"{UNDERLAY_PREFIX}{i if kind == 'h' else ETCD_BASE + i}"


def mac(member: str) -> str:
    """The fixed MAC of a member's ``ul0`` (locally administered)."""
    kind, i = member_index(member)
    return f"02:6b:6c:00:{0 if kind == 'h' else 1:02x}:{i:02x}"


def netns_name(name: str, lab_id: str, role: str) -> str:
    """``kl-<name>-<id>-<role>``: role is ``ul`` or a member name."""
    return f"kl-{name}-{lab_id}-{role}"


@dataclass
class LabSpec:
    """The options of ``kanal lab up``.

    ``node_ttl``, ``grace`` and ``resync`` are passed to every kanald
    (``--node-ttl``, ``--cluster-grace``, ``--cluster-resync``): short enough that a
    lab shows failures healing within seconds. ``etcd_heartbeat_ms`` and
    ``etcd_election_ms`` are etcd's own (raise them for labs with long delays).
    ``kanald=False`` makes the namespaces and etcd only (for tests that run their
    own daemons). ``kanald_args`` are added to every kanald's command line.
    ``tls`` secures etcd (``--etcd-tls``): a PKI of the lab's own, members on HTTPS
    with client and peer certificates required, etcd's users on, and every kanald
    joining with ``etcds://``, its own client certificate and the user ``kanal``
    (see :mod:`kanal.lab.pki`).
    """

    name: str
    hosts: int = 3
    etcd: int = 3
    underlay_mtu: int = 1500
    ovs: bool = False
    kanald: bool = True
    node_ttl: int = 5
    grace: float = 15.0
    resync: float = 30.0
    etcd_heartbeat_ms: int = 100
    etcd_election_ms: int = 1000
    store_prefix: str = "/kanal/"
    log_level: str = "info"
    kanald_args: list[str] = field(default_factory=list)
    tls: bool = False

    def check(self) -> LabSpec:
        """Raises InvalidConfig for any value out of range; returns self."""
        validate_lab_name(self.name)
        _int_in(self.hosts, "--hosts", 1, MAX_HOSTS)
        _int_in(self.etcd, "--etcd", 0, MAX_ETCD)
        _int_in(self.underlay_mtu, "--underlay-mtu", 1280, 9000)
        _int_in(self.node_ttl, "--node-ttl", 2, 3600)
        for v, what in ((self.grace, "--cluster-grace"), (self.resync, "--cluster-resync")):
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0.1 <= v <= 86400:
                raise InvalidConfig(f"invalid {what} {v!r}: want 0.1-86400 seconds")
        _int_in(self.etcd_heartbeat_ms, "--etcd-heartbeat", 10, 10000)
        _int_in(self.etcd_election_ms, "--etcd-election", 5 * self.etcd_heartbeat_ms, 50000)
        if not re.match(r"/[a-zA-Z0-9_./-]*/\Z", self.store_prefix):
            raise InvalidConfig(f"invalid store prefix {self.store_prefix!r}: want /NAME/")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise InvalidConfig(f"invalid log level {self.log_level!r}")
        if not isinstance(self.tls, bool):
            raise InvalidConfig(f"invalid tls {self.tls!r}: want true or false")
        if self.tls and not self.etcd:
            raise InvalidConfig("--etcd-tls needs etcd members (--etcd 1 or more)")
        if self.ovs and self.hosts > 20:
            raise InvalidConfig("--ovs labs have at most 20 hosts (a userspace switch each)")
        for a in self.kanald_args:
            if not isinstance(a, str) or "\0" in a or "\n" in a:
                raise InvalidConfig(f"invalid kanald argument {a!r}")
        return self

    def members(self) -> list[str]:
        return [host_name(i) for i in range(1, self.hosts + 1)] + [
            etcd_name(k) for k in range(1, self.etcd + 1)
        ]

    def etcd_endpoints(self) -> list[str]:
        return [f"{addr(etcd_name(k))}:2379" for k in range(1, self.etcd + 1)]

    def cluster_store(self) -> str:
        """The ``--cluster-store`` URL every kanald of the lab joins ('' without etcd)."""
        if not self.etcd:
            return ""
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(self.etcd_endpoints()) + self.store_prefix

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> LabSpec:
        known = set(LabSpec.__dataclass_fields__)
        return LabSpec(**{k: v for k, v in d.items() if k in known})


def _int_in(v: object, what: str, lo: int, hi: int) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise InvalidConfig(f"invalid {what} {v!r}: want {lo}-{hi}")
