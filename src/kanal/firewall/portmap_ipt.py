"""Port mappings with the Go portmap plugin's iptables chains (``"backend": "iptables"``).

nat table, per IP family (Go ``plugins/meta/portmap/portmap.go``)::

    PREROUTING, OUTPUT: -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
    CNI-HOSTPORT-DNAT:  -m comment --comment 'dnat name: "<net>" id: "<cid>"'
                        -m multiport -p tcp --destination-ports 8080,8081 [conditions]
                        -j CNI-DN-<sha512(net+cid)>
    CNI-DN-…:           -p tcp --dport 8080 [-d hostIP] -s <subnet> -j CNI-HOSTPORT-SETMARK
                        -p tcp --dport 8080 [-d hostIP] -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK
                        -p tcp --dport 8080 [-d hostIP] -j DNAT --to-destination <ip>:80
    CNI-HOSTPORT-SETMARK: -m comment --comment "CNI portfwd masquerade mark"
                          -j MARK --set-xmark 0x2000/0x2000          (markMasqBit 13)
    POSTROUTING (first): -m comment --comment "CNI portfwd requiring masquerade"
                         -j CNI-HOSTPORT-MASQ
    CNI-HOSTPORT-MASQ:   -m mark --mark 0x2000/0x2000 -j MASQUERADE

Rules are matched by their full text, so Go's DEL removes kanal's chains and the
other way round. ``conditionsV4``/``conditionsV6`` are extra iptables match
arguments on the CNI-HOSTPORT-DNAT rule, passed as argument lists (no shell).
"""

from __future__ import annotations

from kanal._hash import sha512_hex
from kanal.errors import Internal, InvalidConfig, Unavailable
from kanal.firewall.iptables import run_iptables

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    import subprocess
    from collections.abc import Sequence

    from kanal.firewall.portmap_nft import PortMapping

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
    Net = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["add_portmaps", "check_portmaps", "del_portmaps", "dnat_chain"]

TOP = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MASQ = "CNI-HOSTPORT-MASQ"
OLD_SNAT = "CNI-HOSTPORT-SNAT"


def _ipt(v: int, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_iptables(v, *args, table="nat", check=check)


def dnat_chain(network: str, container_id: str, prefix: str = "DN-") -> str:
    """Go's ``utils.MustFormatChainNameWithPrefix(net, cid, prefix)``."""
    return ("CNI-" + prefix + sha512_hex((network + container_id).encode()))[:28]


def _comment(network: str, container_id: str) -> str:
    return f'dnat name: "{network}" id: "{container_id}"'[:256]


def validate_conditions(conds: Sequence[str], what: str) -> list[str]:
    out = []
    for c in conds:
        if not isinstance(c, str) or "\0" in c or "\n" in c:
            raise InvalidConfig(f"invalid {what} entry {c!r}")
        out.append(c)
    return out


def _ensure_chain(v: int, chain: str) -> None:
    if _ipt(v, "-S", chain, check=False).returncode != 0:
        p = _ipt(v, "-N", chain, check=False)
        if p.returncode != 0 and "exists" not in p.stderr:
            raise Internal(f"cannot create chain {chain}", p.stderr.strip())


def _insert_unique(v: int, chain: str, rule: Sequence[str], prepend: bool) -> None:
    if _ipt(v, "-C", chain, *rule, check=False).returncode == 0:
        return
    if prepend:
        _ipt(v, "-I", chain, "1", *rule)
    else:
        _ipt(v, "-A", chain, *rule)


def _setup(
    v: int,
    chain: str,
    rules: Sequence[Sequence[str]],
    entry_chains: Sequence[str] = (),
    entry_rules: Sequence[Sequence[str]] = (),
    prepend: bool = False,
) -> None:
    _ensure_chain(v, chain)
    for rule in rules:
        _insert_unique(v, chain, rule, False)
    for entry in entry_chains:
        for er in entry_rules:
            _insert_unique(v, entry, [*er, "-j", chain], prepend)


def _teardown(v: int, chain: str, entry_chains: Sequence[str]) -> None:
    """Go chain.teardown: flush, delete every jump to it, delete it; quiet if absent."""
    if _ipt(v, "-S", chain, check=False).returncode != 0:
        return
    _ipt(v, "-F", chain, check=False)
    for entry in entry_chains:
        listing = _ipt(v, "-S", entry, check=False).stdout.splitlines()
        for line in listing[1:]:
            if line.endswith(f"-j {chain}"):
                import shlex

                parts = shlex.split(line)
                _ipt(v, "-D", entry, *parts[2:], check=False)
    _ipt(v, "-X", chain, check=False)


def _fmt_ip_port(ip: Addr, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _split_ports(ports: Sequence[int]) -> list[str]:
    """multiport takes at most 15 ports per rule (Go splitPortList)."""
    return [",".join(str(p) for p in ports[i : i + 15]) for i in range(0, len(ports), 15)]


def add_portmaps(
    network: str,
    container_id: str,
    mappings: Sequence[PortMapping],
    ip: Addr,
    subnet: Net,
    *,
    snat: bool,
    masq_all: bool,
    mark_bit: int,
    external_setmark: str | None,
    conditions: Sequence[str],
) -> None:
    """Go forwardPorts for one container address (one IP family)."""
    v = ip.version
    setmark = external_setmark or SETMARK
    if snat and external_setmark is None:
        mark = f"{1 << mark_bit:#x}/{1 << mark_bit:#x}"
        _setup(
            v,
            SETMARK,
            [["-m", "comment", "--comment", "CNI portfwd masquerade mark",
              "-j", "MARK", "--set-xmark", mark]],
        )  # fmt: skip
        _setup(
            v,
            MASQ,
            [["-m", "mark", "--mark", mark, "-j", "MASQUERADE"]],
            ["POSTROUTING"],
            [["-m", "comment", "--comment", "CNI portfwd requiring masquerade"]],
            prepend=True,
        )
    _setup(v, TOP, [], ["PREROUTING", "OUTPUT"], [["-m", "addrtype", "--dst-type", "LOCAL"]])
    chain = dnat_chain(network, container_id)
    _teardown(v, chain, [TOP])
    comment = _comment(network, container_id)
    by_proto: dict[str, list[int]] = {}
    for m in mappings:
        by_proto.setdefault(m.protocol, []).append(m.host_port)
    entry_rules = []
    for proto in sorted(by_proto):
        for spec in _split_ports(by_proto[proto]):
            entry_rules.append(
                ["-m", "comment", "--comment", comment, "-m", "multiport", "-p", proto,
                 "--destination-ports", spec, *conditions]
            )  # fmt: skip
    rules: list[list[str]] = []
    for m in mappings:
        if m.host_ip is not None and m.host_ip.version != v:
            continue
        base = ["-p", m.protocol, "--dport", str(m.host_port)]
        if m.host_ip is not None:
            base += ["-d", str(m.host_ip)]
        if snat:
            masq_cidr = ("::/0" if v == 6 else "0.0.0.0/0") if masq_all else str(subnet)
            rules.append([*base, "-s", masq_cidr, "-j", setmark])
            if v == 4 and not masq_all:
                rules.append([*base, "-s", "127.0.0.1", "-j", setmark])
        rules.append([*base, "-j", "DNAT", "--to-destination", _fmt_ip_port(ip, m.container_port)])
    _setup(v, chain, rules, [TOP], entry_rules)


def del_portmaps(network: str, container_id: str) -> None:
    """Go unforwardPorts: both families, the per-container chain (and the old SNAT one)."""
    for v in (4, 6):
        try:
            _teardown(v, dnat_chain(network, container_id), [TOP])
            _teardown(v, dnat_chain(network, container_id, "SN-"), [OLD_SNAT])
        except Unavailable:
            continue


def chain_exists(v: int, chain: str) -> bool:
    try:
        return _ipt(v, "-S", chain, check=False).returncode == 0
    except Unavailable:
        return False


def check_portmaps(network: str, container_id: str, versions: Sequence[int]) -> None:
    from kanal.errors import NotFound

    chain = dnat_chain(network, container_id)
    for v in versions:
        if not chain_exists(v, chain):
            raise NotFound(f"chain {chain} is missing")
