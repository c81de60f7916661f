"""The iptables backend: exactly the chains and comments the Go plugins write.

This package is everything that speaks iptables (docs/firewall.md): this module
runs the commands (:func:`run_iptables`) and holds :class:`IptablesBackend` with
its masquerade; :mod:`.portmap` and :mod:`.fwplugin` are the Go portmap and
firewall plugins' chains; :mod:`.forward` lets a Docker remote network's bridge
through a ``FORWARD`` policy of DROP.

For ipMasq (Go's ``pkg/ip/ipmasq_iptables_linux.go``)::

    -t nat -N CNI-<sha512(net+cid)[:24]>
    -A CNI-…      -d <subnet> -j ACCEPT -m comment --comment 'name: "<net>" id: "<cid>"'
    -A CNI-…      ! -d 224.0.0.0/4 -j MASQUERADE -m comment --comment …
    -A POSTROUTING -s <ip> -j CNI-… -m comment --comment …

so the Go plugin's DEL removes what kanal wrote and kanal's DEL what Go wrote.
On iptables-nft, whether an owner's chain exists is asked through libnftables
first, so DELs of containers that never used iptables run no iptables process.
"""

from __future__ import annotations

import os

from kanal.errors import Internal, KanalError, NotFound, Unavailable
from kanal.firewall.intents import Masquerade, Owner
from kanal.firewall.nftables import libnft, nfnl

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    import subprocess
    from collections.abc import Collection, Sequence

    from kanal.firewall.intents import ForwardAccept, PortMaps

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["IptablesBackend", "run_iptables"]

_MCAST = {4: "224.0.0.0/4", 6: "ff00::/8"}
_NOT_FOUND = (
    "does not exist",
    "No chain/target/match by that name",
    "Bad rule",
    "doesn't exist",
    "No such file or directory",
)


def run_iptables(
    version: int, *args: str, table: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``iptables``/``ip6tables -w 5 [-t table] ARGS``: the one way kanal runs them.

    Raises:
        Unavailable: the command is not installed.
        Internal: it failed (with ``check``); the message without iptables-nft's
            "legacy tables present" noise.
    """
    import subprocess  # lazy: only iptables configs (subprocess costs an exec ~9 ms)

    exe = "iptables" if version == 4 else "ip6tables"
    full = ["-t", table, *args] if table else list(args)
    try:
        p = subprocess.run([exe, "-w", "5", *full], capture_output=True, text=True, timeout=60)
    except FileNotFoundError as e:
        raise Unavailable(f"{exe} is not installed") from e
    if check and p.returncode != 0:
        raise Internal(f"{exe} {' '.join(full)} failed", _clean(p.stderr))
    return p


class IptablesBackend:
    name = "iptables"

    def __init__(self) -> None:
        self._variant: str | None = None

    def available(self) -> bool:
        return _which("iptables") is not None

    def _ipt(
        self, version: int, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_iptables(version, *args, check=check)

    def _is_nft_variant(self) -> bool:
        if self._variant is None:
            self._variant = _variant_by_path()
        if self._variant is None:
            import subprocess  # lazy: only iptables configs (subprocess costs an exec ~9 ms)

            try:
                out = subprocess.run(
                    ["iptables", "--version"], capture_output=True, text=True, timeout=10
                ).stdout
            except FileNotFoundError:
                out = ""
            self._variant = "nft" if "nf_tables" in out else "legacy"
        return self._variant == "nft"

    def chain_exists(self, version: int, chain: str) -> bool:
        if self._is_nft_variant():
            fam = "ip" if version == 4 else "ip6"
            if nfnl.usable():
                try:
                    return nfnl.chain_exists(fam, "nat", chain)
                except nfnl.NfnlError:
                    pass  # libnftables says what is wrong
            try:
                libnft.run(f"list chain {fam} nat {chain}")
                return True
            except libnft.NftError as e:
                if e.enoent:
                    return False
                raise
        return self._ipt(version, "-t", "nat", "-S", chain, check=False).returncode == 0

    def add_masquerade(self, rules: Sequence[Masquerade]) -> None:
        for r in rules:
            v = r.ip.version
            chain, comment = r.owner.iptables_chain(), r.owner.iptables_comment()
            if not self.chain_exists(v, chain):
                p = self._ipt(v, "-t", "nat", "-N", chain, check=False)
                if p.returncode != 0 and "exists" not in p.stderr:
                    raise Internal(f"failed to create chain {chain}", _clean(p.stderr))
            for table_chain, spec in (
                (chain, ["-d", str(r.subnet), "-j", "ACCEPT"]),
                (chain, ["!", "-d", _MCAST[v], "-j", "MASQUERADE"]),
                ("POSTROUTING", ["-s", str(r.ip), "-j", chain]),
            ):
                full = [*spec, "-m", "comment", "--comment", comment]
                if self._ipt(v, "-t", "nat", "-C", table_chain, *full, check=False).returncode:
                    self._ipt(v, "-t", "nat", "-A", table_chain, *full)

    def del_masquerade(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None:
        chain, comment = owner.iptables_chain(), owner.iptables_comment()
        for v in (4, 6):
            if not self.chain_exists(v, chain):
                continue
            sources: list[str]
            if ips is not None:
                sources = [str(ip) for ip in ips if ip.version == v]
            else:
                sources = self._jump_sources(v, chain)
            for src in sources:
                for s in {src, src.split("/")[0] + ("/32" if v == 4 else "/128")}:
                    self._del_jump(v, s, chain, comment)
            for src in self._jump_sources(v, chain):  # anything left still jumping there
                self._del_jump(v, src, chain, comment)
            self._ipt(v, "-t", "nat", "-F", chain, check=False)
            p = self._ipt(v, "-t", "nat", "-X", chain, check=False)
            if p.returncode != 0 and not any(t in p.stderr for t in _NOT_FOUND):
                raise Internal(f"failed to delete chain {chain}", _clean(p.stderr))

    def _del_jump(self, v: int, src: str, chain: str, comment: str) -> None:
        """Delete POSTROUTING's jump from ``src`` to ``chain`` (absent: nothing)."""
        self._ipt(
            v, "-t", "nat", "-D", "POSTROUTING", "-s", src, "-j", chain,
            "-m", "comment", "--comment", comment, check=False,
        )  # fmt: skip

    def _jump_sources(self, v: int, chain: str) -> list[str]:
        import re  # lazy: only iptables configs (re costs a plugin exec ~4 ms)

        out = self._ipt(v, "-t", "nat", "-S", "POSTROUTING", check=False).stdout
        srcs = []
        for line in out.splitlines():
            if f"-j {chain}" in line:
                m = re.search(r"-s (\S+)", line)
                if m:
                    srcs.append(m.group(1))
        return srcs

    def check_masquerade(self, rules: Sequence[Masquerade]) -> None:
        for r in rules:
            v = r.ip.version
            chain = r.owner.iptables_chain()
            p = self._ipt(
                v,
                "-t",
                "nat",
                "-C",
                "POSTROUTING",
                "-s",
                str(r.ip),
                "-j",
                chain,
                "-m",
                "comment",
                "--comment",
                r.owner.iptables_comment(),
                check=False,
            )
            if p.returncode != 0:
                raise NotFound(f"iptables masquerade rule for {r.ip} ({chain}) is missing")

    def gc_masquerade(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        """Go has no GC here; kanal removes chains of containers not in ``valid``."""
        if not _which("iptables"):
            return
        import re  # lazy: only iptables configs (re costs a plugin exec ~4 ms)

        keep = {cid for cid, _ in valid}
        for v in (4, 6):
            out = self._ipt(v, "-t", "nat", "-S", "POSTROUTING", check=False).stdout
            stale = {
                m.group(2)
                for m in re.finditer(_COMMENT_PATTERN, out)
                if m.group(1) == network and m.group(2) not in keep
            }
            for cid in sorted(stale):
                self.del_masquerade(Owner(network, cid, "eth0"))

    # --- port mappings: Go portmap's chains (kanal.firewall.iptables.portmap) -----

    def add_portmaps(self, pm: PortMaps) -> None:
        """Go's forwardPorts per container address (``subnets`` paired with ``ips``);
        on failure the attachment's chains are removed again."""
        from kanal.firewall.iptables import portmap  # lazy: only iptables port maps

        try:
            for ip, net in zip(pm.ips, pm.subnets):
                portmap.add_portmaps(
                    pm.owner.network,
                    pm.owner.container_id,
                    pm.mappings,
                    ip,
                    net,
                    snat=pm.snat,
                    masq_all=pm.masq_all,
                    mark_bit=pm.mark_bit,
                    external_setmark=pm.external_setmark,
                    conditions=pm.conditions_v4 if ip.version == 4 else pm.conditions_v6,
                )
        except BaseException:
            portmap.del_portmaps(pm.owner.network, pm.owner.container_id)
            raise

    def del_portmaps(
        self, owner: Owner, known: PortMaps | None = None, *, leftovers: bool = False
    ) -> None:
        """The attachment's chains (they are named by network and container).

        ``leftovers``: the config names another backend, so this removes what an
        earlier config may have left, first asking cheaply whether the chain exists.
        """
        from kanal.firewall.iptables import portmap  # lazy: only iptables port maps

        if leftovers:
            chain = portmap.dnat_chain(owner.network, owner.container_id)
            try:
                if not any(self.chain_exists(v, chain) for v in (4, 6)):
                    return
            except KanalError:
                return
        portmap.del_portmaps(owner.network, owner.container_id)

    def check_portmaps(self, pm: PortMaps) -> None:
        from kanal.firewall.iptables import portmap  # lazy: only iptables port maps

        versions = sorted({ip.version for ip in pm.ips})
        portmap.check_portmaps(pm.owner.network, pm.owner.container_id, versions)

    def gc_portmaps(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        """Nothing: as Go, whose chain names are hashes no GC can map back."""
        return None

    # --- the firewall plugin's rules (kanal.firewall.iptables.fwplugin) -----------

    def add_forward(self, rule: ForwardAccept) -> None:
        from kanal.firewall.iptables import fwplugin  # lazy: only the firewall plugin

        fwplugin.add_rules(rule.ips, rule.admin_chain)

    def del_forward(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None:
        """By address; without addresses nothing (Go's rules name no owner)."""
        if not ips:
            return
        from kanal.firewall.iptables import fwplugin  # lazy: only the firewall plugin

        fwplugin.del_rules(ips)

    def check_forward(self, rule: ForwardAccept) -> None:
        from kanal.firewall.iptables import fwplugin  # lazy: only the firewall plugin

        fwplugin.check_rules(rule.ips, rule.admin_chain)

    def gc_forward(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        """Nothing: the rules name no owner (as Go's), so none can be told apart."""
        return None

    def isolate_bridge(self, bridge: str, versions: Sequence[int]) -> None:
        from kanal.firewall.iptables import fwplugin  # lazy: only the firewall plugin

        fwplugin.isolate_bridge(bridge, versions)


# How iptables -S prints Go's comment: "name: \"net\" id: \"cid\""
_COMMENT_PATTERN = r'name: \\"([^"\\]+)\\" id: \\"([^"\\]+)\\"'


def _which(name: str) -> str | None:
    """``shutil.which(name)`` (shutil's import costs a plugin exec ~5 ms)."""
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _variant_by_path() -> str | None:
    """ "nft" or "legacy" from what ``iptables`` links to (Debian's alternatives point at
    xtables-nft-multi or xtables-legacy-multi); None when that does not say."""
    exe = _which("iptables")
    if exe is None:
        return None
    target = os.path.basename(os.path.realpath(exe))
    if target == "xtables-nft-multi":
        return "nft"
    if target == "xtables-legacy-multi":
        return "legacy"
    return None


def _clean(stderr: str) -> str:
    # iptables-nft warns about legacy tables on every call here; it is noise.
    return "\n".join(x for x in stderr.splitlines() if "iptables-legacy" not in x).strip()
