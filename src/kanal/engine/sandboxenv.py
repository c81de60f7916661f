"""A sandbox's surroundings: its network namespace and the /etc files it sees.

A sandbox with a namespace of its own gets one mounted at
``<netns_dir>/kanal-<id12>`` (made with ``ip netns add`` under /run/netns,
``unshare --net=PATH`` elsewhere), loopback up. Its ``hosts``, ``hostname`` and
``resolv.conf`` live in ``<state_dir>/sandboxes/<id>/`` and are bound over /etc
when its process starts (kanal.engine.launch); they are rewritten in place when
its networks change, so the bind mounts keep seeing them.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from typing import TYPE_CHECKING

from kanal.errors import InvalidConfig
from kanal.netlink.batch import Batch, raw_socket
from kanal.netlink.ns import open_netns, run_in_netns
from kanal.validate import HOST_GATEWAY

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.model import Endpoint
    from kanal.engine.sandboxes import Sandbox

__all__ = ["SandboxEnv", "is_mount"]


class SandboxEnv:
    """Namespaces and files of sandboxes.

    Args:
        netns_dir: where sandbox namespaces are made; /run/netns is ``ip netns``'s.
        state_dir: per-sandbox files (resolv.conf, hosts, hostname, logs).
        host_resolv: the resolv.conf the default nameservers come from.
        host_gateway_ip: what ``--add-host NAME:host-gateway`` means (kanald's
            ``--host-gateway-ip``); "" : the gateway of the sandbox's first network.
    """

    def __init__(
        self,
        ctrl: Controller,
        *,
        state_dir: str,
        netns_dir: str,
        host_resolv: str,
        host_gateway_ip: str = "",
    ) -> None:
        self.ctrl = ctrl
        self.state_dir = state_dir
        self.netns_dir = netns_dir
        self.host_resolv = host_resolv
        self.host_gateway_ip = host_gateway_ip

    # --- the namespace -------------------------------------------------------------

    def netns_path(self, sid: str) -> str:
        """Where the sandbox's own namespace is mounted (derived from its id)."""
        return os.path.join(self.netns_dir, f"kanal-{sid[:12]}")

    def make_netns(self, sid: str) -> str:
        """A new namespace for ``sid``, loopback up; its path."""
        path = self.netns_path(sid)
        name = os.path.basename(path)
        if os.path.abspath(self.netns_dir) == "/run/netns":
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        else:
            os.makedirs(self.netns_dir, mode=0o755, exist_ok=True)
            open(path, "w").close()
            subprocess.run(["unshare", f"--net={path}", "true"], check=True, capture_output=True)
        fd = open_netns(path)
        try:

            def lo_up() -> None:
                with raw_socket() as s:
                    b = Batch(s)
                    b.set_link(index=1, up=True)
                    b.commit()

            run_in_netns(fd, lo_up)
        finally:
            os.close(fd)
        return path

    def del_netns(self, path: str) -> None:
        name = os.path.basename(path)
        if os.path.abspath(os.path.dirname(path)) == "/run/netns":
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            return
        subprocess.run(["umount", path], capture_output=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def remount(self, path: str, holder: int, want: tuple[int, ...]) -> bool:
        """Mount the namespace of process ``holder`` at ``path`` again if it is the
        namespace ``want`` (device, inode); False when it is not (the holder went and
        its pid is another process's) or the mount failed a few times (the next
        repair pass tries again).

        The namespace is opened and checked first and that open file is what gets
        mounted: no moment in which another namespace is mounted there, for a
        kill -9 to leave behind."""
        # lazy: only a repair after an outside unmount mounts here
        from kanal.engine.launch import bind_mount

        try:
            fd = os.open(f"/proc/{holder}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != want:
                return False
            # (The hand that unmounted it may still be removing the file: retry.)
            for _ in range(5):
                if not os.path.exists(path):
                    open(path, "w").close()
                try:
                    bind_mount(f"/proc/self/fd/{fd}", path)
                    return True
                except OSError:
                    time.sleep(0.05)
            return False
        finally:
            os.close(fd)

    # --- the files -----------------------------------------------------------------

    def dir(self, sid: str) -> str:
        """The sandbox's own directory (files, launch spec, pidfile, log)."""
        return os.path.join(self.state_dir, "sandboxes", sid)

    def write_files(self, sb: Sandbox, *, embedded_dns: bool) -> None:
        """resolv.conf, hosts and hostname of the sandbox; rewritten in place (the
        bind mounts pin the inodes) when its networks change."""
        d = self.dir(sb.id)
        os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)  # also when it was made looser before
        eps = self.ctrl.sandbox_endpoints(sb.id)
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for ep in eps:
            for a in (ep.ipv4, ep.ipv6):
                if a:
                    hosts.append(f"{a.split('/')[0]}\t{sb.hostname or sb.name}")
        hosts += self._link_lines(eps)
        for h in sb.extra_hosts:
            name, _, ip = h.partition(":")
            if ip == HOST_GATEWAY:
                ip = self.host_gateway(sb, eps)
            if ip:
                hosts.append(f"{ip}\t{name}")
        files = {
            "hosts": "\n".join(hosts) + "\n",
            "hostname": (sb.hostname or sb.name) + "\n",
            "resolv.conf": self.resolv_conf(sb, embedded_dns=embedded_dns),
        }
        for fname, text in files.items():
            path = os.path.join(d, fname)
            # Same inode (a bind mount keeps seeing it); 0644: the sandbox's own
            # unprivileged processes read them (the directory is 0700).
            with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+") as f:
                f.seek(0)
                f.truncate()
                f.write(text)

    def host_gateway(self, sb: Sandbox, eps: list[Endpoint] | None = None) -> str:
        """The address ``host-gateway`` stands for in ``sb``: kanald's
        ``--host-gateway-ip``, else the IPv4 gateway of the network that is the
        sandbox's way out (its first), else loopback for ``--network host``; "" when
        the sandbox has none of those."""
        if self.host_gateway_ip:
            return self.host_gateway_ip
        if sb.network_mode == "host":
            return "127.0.0.1"  # the host's own namespace
        eps = self.ctrl.sandbox_endpoints(sb.id) if eps is None else eps
        nets = {n.id: n for n in self.ctrl.networks()}
        for ep in sorted(eps, key=lambda e: (not e.default_gateway, e.created)):
            n = nets.get(ep.network_id)
            for c in n.ipam if n is not None else []:
                if c.gateway and ipaddress.ip_address(c.gateway).version == 4:
                    return c.gateway
        return ""

    def check_host_gateway(self, sb: Sandbox) -> None:
        """Raises InvalidConfig when ``sb`` asks for ``host-gateway`` and has none."""
        if any(h.endswith(":" + HOST_GATEWAY) for h in sb.extra_hosts) and not (
            self.host_gateway(sb)
        ):
            raise InvalidConfig(
                "--add-host NAME:host-gateway: this sandbox has no network whose "
                "gateway is the host (start kanald with --host-gateway-ip IP)"
            )

    def _link_lines(self, eps: list[Endpoint]) -> list[str]:
        """docker's legacy links on the default bridge (no embedded DNS there): an
        /etc/hosts line ``IP ALIAS NAME`` per link of the sandbox's endpoints."""
        out = []
        nets = {n.id: n for n in self.ctrl.networks()}
        for ep in eps:
            n = nets.get(ep.network_id)
            if not ep.links or n is None or not n.builtin:
                continue  # on user networks the embedded DNS answers for links
            peers = {p.name: p for p in self.ctrl.endpoints(ep.network_id)}
            for link in ep.links:
                target, _, alias = link.partition(":")
                p = peers.get(target)
                if p is not None and p.ipv4:
                    names = alias if alias == target else f"{alias} {target}"
                    out.append(f"{p.ipv4.split('/')[0]}\t{names}")
        return out

    def user_networks(self, sb: Sandbox) -> list[tuple[Endpoint, bool]]:
        """The sandbox's endpoints on user-defined networks, with their network's internal flag
        (docker gives embedded DNS only there, not on the default bridge)."""
        nets = {n.id: n for n in self.ctrl.networks()}
        out = []
        for ep in self.ctrl.sandbox_endpoints(sb.id):
            n = nets.get(ep.network_id)
            if n is not None and not n.builtin:
                out.append((ep, n.internal))
        return out

    def upstreams(self, sb: Sandbox) -> list[str]:
        """Where embedded DNS forwards what it does not answer for ``sb``."""
        return self._host_resolv()[0] if not sb.dns else list(sb.dns)

    def _host_resolv(self) -> tuple[list[str], list[str]]:
        servers: list[str] = []
        search: list[str] = []
        try:
            with open(self.host_resolv) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver":
                        servers.append(parts[1])
                    elif parts and parts[0] == "search" and not search:
                        search = parts[1:]
        except OSError:
            pass
        return servers, search

    def resolv_conf(self, sb: Sandbox, *, embedded_dns: bool) -> str:
        """The sandbox's resolv.conf: kanald's embedded DNS (``embedded_dns``), else
        its ``--dns`` servers or the host's (minus loopback resolvers)."""
        if embedded_dns:
            # Embedded DNS: kanald answers on 127.0.0.11 inside the sandbox and
            # forwards the rest to the upstreams (from its own namespace).
            search = list(sb.dns_search) or self._host_resolv()[1]
            lines = ["nameserver 127.0.0.11"]
            if search:
                lines.append("search " + " ".join(search))
            lines.append("options " + " ".join(["ndots:0", *sb.dns_options]))
            return "\n".join(lines) + "\n"
        servers, search, options = list(sb.dns), list(sb.dns_search), list(sb.dns_options)
        if not servers:
            try:
                with open(self.host_resolv) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 2 and parts[0] == "nameserver":
                            ip = parts[1]
                            # A loopback resolver of the host is unreachable from a netns.
                            if not ipaddress.ip_address(ip.split("%")[0]).is_loopback:
                                servers.append(ip)
                        elif parts and parts[0] == "search" and not search:
                            search = parts[1:]
            except (OSError, ValueError):
                pass
        lines = [f"nameserver {s}" for s in servers]
        if search:
            lines.append("search " + " ".join(search))
        if options:
            lines.append("options " + " ".join(options))
        return "\n".join(lines) + "\n"


def is_mount(path: str) -> bool:
    """Whether ``path`` is a mount point (a namespace's bind mount is one)."""
    want = path.replace(" ", "\\040")
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == want for line in f)
