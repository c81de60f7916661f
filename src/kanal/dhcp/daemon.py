"""The DHCP daemon: holds leases for containers and renews them in their namespaces.

The ``dhcp`` IPAM plugin asks it over a root-only unix socket (one JSON object
per line each way). Unlike the Go daemon, leases are written to ``lease_dir``
(one file each, atomically) and picked up again when the daemon restarts: a
restarted daemon keeps renewing instead of letting every lease lapse.

Requests: ``allocate`` / ``release`` / ``check`` (``containerID``, ``netns``,
``ifname``, ``network``, ``ipam``), ``gc`` (``network``, ``valid``), ``status``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import socketserver
import threading
import time
from typing import Any

from kanal.dhcp import client as dc
from kanal.errors import InvalidConfig, KanalError, NotFound
from kanal.netlink.handle import Netlink
from kanal.netlink.ns import open_netns, run_in_netns

__all__ = ["DEFAULT_LEASE_DIR", "DEFAULT_SOCKET", "DhcpDaemon"]

DEFAULT_SOCKET = "/run/kanal/dhcp.sock"
DEFAULT_LEASE_DIR = "/var/lib/kanal/dhcp"
log = logging.getLogger("kanal.dhcp")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")


def _key(cid: str, ifname: str) -> str:
    if not _SAFE.match(cid) or not _SAFE.match(ifname) or len(cid) > 256 or len(ifname) > 15:
        raise InvalidConfig("invalid container ID or interface name")
    return f"{cid}-{ifname}"


class DhcpDaemon:
    def __init__(self, socket_path: str, lease_dir: str, *, mode: int = 0o600) -> None:
        self.socket_path = socket_path
        self.lease_dir = lease_dir
        self.mode = mode
        self.leases: dict[str, dc.Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._server: socketserver.UnixStreamServer | None = None

    # --- persistence -------------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self.lease_dir, key + ".json")

    def _save(self, lease: dc.Lease) -> None:
        os.makedirs(self.lease_dir, mode=0o700, exist_ok=True)
        path = self._path(lease.key)
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(lease.to_json()).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def _forget(self, key: str) -> None:
        self.leases.pop(key, None)
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def load(self) -> int:
        """Leases a previous daemon left; returns how many were taken up."""
        try:
            names = os.listdir(self.lease_dir)
        except FileNotFoundError:
            return 0
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.lease_dir, name)) as f:
                    lease = dc.Lease.from_json(json.load(f))
            except (OSError, ValueError, TypeError) as e:
                log.warning("dropping unreadable lease file %s: %s", name, e)
                os.unlink(os.path.join(self.lease_dir, name))
                continue
            self.leases[lease.key] = lease
        return len(self.leases)

    # --- work in the container's namespace ---------------------------------------

    @staticmethod
    def _in_netns(netns: str, fn: Any) -> Any:
        fd = open_netns(netns)
        try:
            return run_in_netns(fd, fn)
        finally:
            os.close(fd)

    def allocate(self, req: dict[str, Any]) -> dict[str, Any]:
        cid, ifname, netns = str(req["containerID"]), str(req["ifname"]), str(req["netns"])
        network = str(req.get("network", ""))
        ipam = req.get("ipam") or {}
        key = _key(cid, ifname)
        timeout = float(ipam.get("timeout", 10)) if isinstance(ipam, dict) else 10.0
        hostname = ""
        provide = ipam.get("provide") if isinstance(ipam, dict) else None
        for opt in provide or []:
            if isinstance(opt, dict) and opt.get("option") in ("host-name", "12"):
                hostname = str(opt.get("value") or "")

        def work() -> dc.Lease:
            with Netlink() as nl:
                link = nl.find_link(ifname)
                if link is None:
                    raise NotFound(f"interface {ifname} not found in {netns}")
                if not link.up:
                    nl.set_up(link.index)
            lease = dc.Lease(
                key=key,
                netns=netns,
                ifname=ifname,
                network=network,
                client_id=f"{cid}/{network}/{ifname}",
                mac=link.mac,
                address="",
                server="",
            )
            return dc.acquire(lease, hostname=hostname or cid[:63], timeout=timeout)

        lease: dc.Lease = self._in_netns(netns, work)
        with self._wake:
            self.leases[key] = lease
            self._save(lease)
            self._wake.notify()
        log.info("leased %s to %s", lease.address, key)
        return _result(lease)

    def release(self, req: dict[str, Any]) -> None:
        key = _key(str(req["containerID"]), str(req["ifname"]))
        with self._lock:
            lease = self.leases.get(key)
        if lease is not None:
            self._release_lease(lease)

    def _release_lease(self, lease: dc.Lease) -> None:
        with self._lock:
            if self.leases.get(lease.key) is not lease:
                return
            self._forget(lease.key)
        try:
            if os.path.exists(lease.netns):
                self._in_netns(lease.netns, lambda: dc.release(lease))
        except (KanalError, OSError) as e:
            log.warning("release of %s: %s", lease.address, e)  # the lease is gone for us

    def check(self, req: dict[str, Any]) -> None:
        key = _key(str(req["containerID"]), str(req["ifname"]))
        with self._lock:
            lease = self.leases.get(key)
        if lease is None:
            raise NotFound(f"no DHCP lease for {key}")
        if lease.expires_at() < time.time():
            raise NotFound(f"the DHCP lease of {key} has expired")

    def gc(self, req: dict[str, Any]) -> None:
        network = str(req.get("network", ""))
        valid = {_key(str(c), str(i)) for c, i in req.get("valid", [])}
        with self._lock:
            doomed = [
                lease
                for k, lease in self.leases.items()
                if lease.network == network and k not in valid
            ]
        for lease in doomed:
            self._release_lease(lease)

    # --- renewals ----------------------------------------------------------------

    def _renewer(self) -> None:
        while True:
            with self._wake:
                if self._stop:
                    return
                due = min((lease.renew_at() for lease in self.leases.values()), default=None)
                now = time.time()
                if due is None or due > now:
                    self._wake.wait(timeout=None if due is None else due - now)
                    continue
                batch = [lease for lease in self.leases.values() if lease.renew_at() <= now]
            for lease in batch:
                self.renew_one(lease)

    def renew_one(self, lease: dc.Lease) -> bool:
        """Renew (or rebind) one lease now; a lease whose container is gone is dropped."""
        if not os.path.exists(lease.netns):
            with self._lock:
                self._forget(lease.key)
            return False
        now = time.time()
        rebind = now >= lease.rebind_at()
        try:
            self._in_netns(lease.netns, lambda: dc.renew(lease, rebind=rebind, timeout=5.0))
        except (KanalError, OSError) as e:
            with self._lock:
                if lease.expires_at() <= now:
                    log.warning("lease %s of %s expired: %s", lease.address, lease.key, e)
                    self._forget(lease.key)
                else:
                    # Retry in a while (RFC 2131: half the time left, at least 60 s).
                    left = lease.expires_at() - now
                    lease.t1 = int(now - lease.obtained + max(60.0, left / 2))
            return False
        with self._lock:
            if lease.key in self.leases:
                self._save(lease)
        log.info("renewed %s of %s", lease.address, lease.key)
        return True

    # --- serving -----------------------------------------------------------------

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        try:
            if op == "allocate":
                return {"result": self.allocate(req)}
            if op == "release":
                self.release(req)
            elif op == "check":
                self.check(req)
            elif op == "gc":
                self.gc(req)
            elif op != "status":
                raise InvalidConfig(f"unknown request {op!r}")
            return {"ok": True}
        except KanalError as e:
            return {"error": {"code": e.code, "msg": e.msg, "details": e.details}}
        except (KeyError, TypeError, ValueError) as e:
            return {"error": {"code": 7, "msg": f"bad request: {e}", "details": ""}}

    def start(self) -> None:
        self.load()
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(1 << 20)
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                except ValueError as e:
                    reply: dict[str, Any] = {"error": {"code": 6, "msg": f"bad JSON: {e}"}}
                else:
                    reply = daemon.handle(req)
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        os.makedirs(os.path.dirname(os.path.abspath(self.socket_path)), mode=0o700, exist_ok=True)
        if os.path.exists(self.socket_path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.socket_path)
                probe.close()
                raise KanalError(f"another DHCP daemon is serving {self.socket_path}")
            except OSError:
                os.unlink(self.socket_path)
        old = os.umask(0o177)
        try:
            self._server = Server(self.socket_path, Handler)
        finally:
            os.umask(old)
        os.chmod(self.socket_path, self.mode)
        threading.Thread(target=self._renewer, name="kanal-dhcp-renew", daemon=True).start()

    def serve_forever(self) -> None:
        assert self._server is not None
        self._server.serve_forever()

    def shutdown(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass


def _result(lease: dc.Lease) -> dict[str, Any]:
    """The CNI IPAM result (1.0.0 wire form) of a lease."""
    ipc: dict[str, Any] = {"address": lease.address}
    if lease.gateway:
        ipc["gateway"] = lease.gateway
    routes = [{"dst": d, "gw": g} for d, g in lease.routes]
    if not routes and lease.gateway:
        routes = [{"dst": "0.0.0.0/0", "gw": lease.gateway}]
    out: dict[str, Any] = {"cniVersion": "1.0.0", "ips": [ipc], "routes": routes}
    if lease.dns or lease.domain:
        out["dns"] = {k: v for k, v in (("nameservers", lease.dns), ("domain", lease.domain)) if v}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="kanal dhcp daemon")
    ap.add_argument("--socket", default=DEFAULT_SOCKET)
    ap.add_argument("--lease-dir", default=DEFAULT_LEASE_DIR)
    ap.add_argument("--socket-mode", default="0600")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="kanal-dhcp: %(message)s")
    d = DhcpDaemon(args.socket, args.lease_dir, mode=int(args.socket_mode, 8))
    d.start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=d.shutdown).start())
    print(f"kanal-dhcp: serving on {args.socket}, {len(d.leases)} leases kept", flush=True)
    d.serve_forever()
