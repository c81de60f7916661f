"""Overlay networks at scale and under faults, measured in a kanal lab.

Scenarios (``--scenarios``, all by default):

- ``reach``: ``--hosts`` hosts x ``--sandboxes`` sandboxes on one overlay network
  (the first sandbox of each host is its *prober*). Each sample ``kanal run``s a new
  sandbox on the next host; from the moment ``kanal run`` returns, the prober of
  every other host asks its embedded DNS for the new name and pings the new
  address (20 ms apart, from a raw socket inside the prober's namespace, so no
  process is started while measuring). Per sample and host: *by IP* = first echo
  reply; *by name* = the later of the first DNS answer and the first echo reply
  (what a ``ping NAME`` retried from that host first achieves). p50/p99/max over
  every (sample, host) pair, and the p99 over samples of the slowest host.
  Also: ``kanal run`` duration, etcd requests and bytes per new endpoint (from
  every member's ``/metrics``, minus the idle rate), kanald RSS and CPU while idle.
- ``restart``: ``kill -9`` of a host's kanald, started again at once: time until its
  API answers, until a sandbox it runs afterwards is reached from every other host,
  and whether its existing sandboxes stayed reachable meanwhile.
- ``faults``: a second lab (``--fault-hosts``) with 100 ms ± 20 ms delay and 1 %
  loss on every underlay link and one etcd member partitioned away; sandboxes run
  in parallel on every host: duplicates (0 wanted) and reachability p99 (≤ 3 s).
- ``partition``: a host cut off longer than lease + grace: its addresses freed, its
  entries gone from every other host; healed: it rejoins, no duplicate, and its
  sandboxes that lost their addresses say so in ``kanal inspect``.
- ``mtu``: a 2-host lab with an underlay MTU of 1400: the overlay MTU follows;
  ping with DF at the largest size passes (one byte more does not) and a 64 MiB TCP
  transfer completes.

The kernel's shared neighbour table is watched throughout (``table_fulls``, the
"neighbor table overflow" counter, must not move).

    .venv/bin/python bench/lab_bench.py [--hosts 50] [--sandboxes 20] [--samples 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kanal.daemon.client import ApiClient  # noqa: E402
from kanal.errors import KanalError  # noqa: E402
from kanal.lab import Impairment, Lab, LabSpec  # noqa: E402
from kanal.lab import system as labsys  # noqa: E402
from kanal.netlink.ns import netns_socket, open_netns  # noqa: E402

Report = Callable[[str], None]
NET = "ov"


def dist(xs: list[float]) -> dict[str, float]:
    """p50, p99 and max of seconds, in milliseconds."""
    if not xs:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"p50": pct(xs, 0.5) * 1000, "p99": pct(xs, 0.99) * 1000, "max": max(xs) * 1000}


def fmt(d: dict[str, float]) -> str:
    return f"p50 {d['p50']:.0f} ms, p99 {d['p99']:.0f} ms, max {d['max']:.0f} ms"


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def sandbox_body(name: str, network: str, cmd: list[str]) -> dict[str, Any]:
    return {
        "Name": name,
        "Cmd": cmd,
        "Env": {},
        "Hostname": "",
        "NetworkMode": network,
        "Networks": [{"Name": network}],
        "Publish": [],
        "Dns": [],
        "DnsSearch": [],
        "DnsOptions": [],
        "ExtraHosts": [],
        "WorkingDir": "",
        "Start": True,
    }


def api(lab: Lab, host: str, timeout: float = 300) -> ApiClient:
    return ApiClient(lab.api(host), timeout=timeout)


def fill(
    lab: Lab,
    per_host: int,
    report: Report,
    prefix: str = "s",
    parallel: int = 4,
    skip_existing: bool = False,
    hosts: list[str] | None = None,
) -> None:
    """``per_host`` sandboxes on every host (or ``hosts``), through the API, ``parallel``
    hosts at a time (setting up, not measuring: 2 cores must not starve etcd)."""
    on = hosts or lab.hosts()
    errors: list[str] = []
    gate = threading.Semaphore(parallel)

    def work(h: str) -> None:
        c = api(lab, h)
        for k in range(per_host):
            body = sandbox_body(f"{prefix}{h}-{k}", NET, ["sleep", "infinity"])
            if skip_existing:
                try:
                    c.request("GET", f"/sandboxes/{body['Name']}")
                    continue
                except Exception:
                    pass
            with gate:
                for attempt in range(3):
                    try:
                        c.request("POST", "/sandboxes/create", body)
                        break
                    except Exception as e:
                        time.sleep(1)
                        try:  # an attempt that timed out may have made it
                            c.request("GET", f"/sandboxes/{body['Name']}")
                            break
                        except Exception:
                            pass
                        if attempt == 2:
                            errors.append(f"{h}: {e}")

    t = time.monotonic()
    threads = [threading.Thread(target=work, args=(h,)) for h in on]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise RuntimeError(f"{len(errors)} sandboxes failed, e.g. {errors[:3]}")
    report(
        f"  {per_host * len(on)} sandboxes on {len(on)} hosts " f"in {time.monotonic() - t:.0f} s"
    )


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class Prober:
    """Raw ICMP and a DNS client inside one sandbox's namespace (made once)."""

    def __init__(self, netns_path: str, ident: int) -> None:
        # (a path readable from here: the sandbox's own namespace files live in its
        # host's mount namespace)
        fd = open_netns(netns_path)
        try:
            self.icmp = netns_socket(fd, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.dns = netns_socket(fd, socket.AF_INET, socket.SOCK_DGRAM)
        finally:
            os.close(fd)
        self.icmp.setblocking(False)
        self.dns.setblocking(False)
        self.dns.connect(("127.0.0.11", 53))
        self.ident = ident & 0xFFFF
        self.seq = 0

    def echo(self, ip: str) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        payload = b"kanal-lab-bench"
        pkt = struct.pack("!BBHHH", 8, 0, _csum(hdr + payload), self.ident, self.seq) + payload
        try:
            self.icmp.sendto(pkt, (ip, 0))
        except OSError:
            pass

    def replied(self, ip: str) -> bool:
        got = False
        while True:
            try:
                data, src = self.icmp.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return got
            ihl = (data[0] & 0x0F) * 4
            if src[0] == ip and len(data) >= ihl + 8:
                typ, _, _, ident, _ = struct.unpack("!BBHHH", data[ihl : ihl + 8])
                if typ == 0 and ident == self.ident:
                    got = True

    def ask(self, name: str) -> None:
        from dnslib import DNSRecord

        try:
            self.dns.send(DNSRecord.question(name, "A").pack())
        except OSError:
            pass

    def answer(self, name: str) -> str:
        from dnslib import QTYPE, DNSRecord

        out = ""
        while True:
            try:
                data = self.dns.recv(4096)
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                return out
            try:
                rec = DNSRecord.parse(data)
            except Exception:
                continue
            for rr in rec.rr:
                if rr.rtype == QTYPE.A and str(rr.rname).rstrip(".") == name:
                    out = str(rr.rdata)

    def close(self) -> None:
        self.icmp.close()
        self.dns.close()


def probers(lab: Lab, name_of: Callable[[str], str]) -> dict[str, Prober]:
    out = {}
    for i, h in enumerate(lab.hosts(), start=1):
        pid = api(lab, h).request("GET", f"/sandboxes/{name_of(h)}")["Pid"]
        out[h] = Prober(f"/proc/{pid}/ns/net", 0x4B00 + i)
    return out


def reach(
    lab: Lab,
    host: str,
    name: str,
    probes: dict[str, Prober],
    timeout: float = 30.0,
    interval: float = 0.02,
) -> dict[str, Any]:
    """``kanal run`` a sandbox named ``name`` on ``host``; then how long every other
    host's prober takes to resolve it and to get an echo reply from it.

    The clock starts when ``kanal run`` returns, and so does the probing: the
    sandbox's address is asked of its host's API on the side (over a slow underlay
    that answer takes seconds now and then: its own etcd reads), and the probers ping
    the first address a DNS answer gave until it comes. Every answer and the address
    pinged are checked against it at the end."""
    t_start = time.monotonic()
    lab.kanal(host, "run", "-d", "--name", name, "--network", NET, "--", "sleep", "infinity")
    t0 = time.monotonic()
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            got = api(lab, host).request("GET", f"/sandboxes/{name}")
            box["ip"] = got["Networks"][NET]["IPAddress"]
        except Exception as e:  # reported below, with the sample
            box["error"] = e
        box["lookup_s"] = time.monotonic() - t0

    looker = threading.Thread(target=lookup, daemon=True)
    looker.start()
    others = [h for h in probes if h != host]
    t_ip: dict[str, float] = {}
    t_dns: dict[str, float] = {}
    said: dict[str, str] = {}  # host -> the address its DNS answered
    pinged: dict[str, str] = {}  # host -> the address that replied
    deadline = t0 + timeout
    while len(t_ip) < len(others) or len(t_dns) < len(others):
        now = time.monotonic()
        if now > deadline:
            break
        ip = box.get("ip") or next(iter(said.values()), "")
        for h in others:
            p = probes[h]
            if h not in t_dns:
                a = p.answer(name)
                if a and (a == box.get("ip") or "ip" not in box):
                    t_dns[h] = time.monotonic() - t0
                    said[h] = a
                else:
                    p.ask(name)
            if h not in t_ip and ip:
                if p.replied(ip):
                    t_ip[h] = time.monotonic() - t0
                    pinged[h] = ip
                else:
                    p.echo(ip)
        time.sleep(max(0.0, interval - (time.monotonic() - now)))
    looker.join(120)
    if "ip" not in box:
        raise RuntimeError(f"{name}: its address could not be read: {box.get('error')}")
    ip = box["ip"]
    wrong = {h for h, a in (*said.items(), *pinged.items()) if a != ip}
    if wrong:
        raise RuntimeError(f"{name} is {ip}, but {sorted(wrong)} answered or reached another")
    by_name = {h: max(t_ip[h], t_dns[h]) for h in others if h in t_ip and h in t_dns}
    return {
        "ip": ip,
        "lookup_s": box["lookup_s"],
        "run_s": t0 - t_start,
        "by_ip": t_ip,
        "by_dns": t_dns,
        "by_name": by_name,
        "missing": sorted(set(others) - set(by_name)),
    }


def _slow(r: dict[str, Any], limit: float) -> str:
    """The hosts that took longer than ``limit`` s, with their echo and DNS times."""
    slow = sorted(h for h, t in r["by_name"].items() if t > limit)
    if not slow:
        return ""
    parts = [
        f"{h} ip {r['by_ip'].get(h, float('nan')) * 1000:.0f}"
        f"/dns {r['by_dns'].get(h, float('nan')) * 1000:.0f}"
        for h in slow
    ]
    return " (slow: " + ", ".join(parts) + ")"


# ---- etcd metrics, kanald resources ---------------------------------------------------


def etcd_counters(lab: Lab) -> dict[str, float]:
    """Summed over members: unary requests handled, stream messages in/out, client bytes."""
    tot = {"requests": 0.0, "stream_msgs": 0.0, "rx_bytes": 0.0, "tx_bytes": 0.0}
    for e in lab.etcd_members():
        try:
            code, body = labsys.http_in_ns(lab.ns(e), lab.addr(e), 2379, "GET", "/metrics")
        except Exception:
            continue
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("#"):
                continue
            try:
                key, val = line.rsplit(" ", 1)
                v = float(val)
            except ValueError:
                continue
            if key.startswith("grpc_server_handled_total{") and 'grpc_type="unary"' in key:
                tot["requests"] += v
            elif (key.startswith("grpc_server_msg_received_total{") and "stream" in key) or (
                key.startswith("grpc_server_msg_sent_total{") and "stream" in key
            ):
                tot["stream_msgs"] += v
            elif key.startswith("etcd_network_client_grpc_received_bytes_total"):
                tot["rx_bytes"] += v
            elif key.startswith("etcd_network_client_grpc_sent_bytes_total"):
                tot["tx_bytes"] += v
    return tot


def proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(CPU seconds so far, RSS MiB)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return cpu, rss


def idle_resources(lab: Lab, seconds: float) -> dict[str, float]:
    pids = [lab.rec.procs[f"kanald:{h}"].pid for h in lab.hosts()]
    before = {p: proc_cpu_rss(p) for p in pids}
    time.sleep(seconds)
    after = {p: proc_cpu_rss(p) for p in pids}
    cpu = [after[p][0] - before[p][0] for p in pids]
    rss = [after[p][1] for p in pids]
    return {
        "seconds": seconds,
        "cpu_s_p50": statistics.median(cpu),
        "cpu_s_max": max(cpu),
        "rss_mib_p50": statistics.median(rss),
        "rss_mib_max": max(rss),
    }


# ---- scenarios ----------------------------------------------------------------------


def new_lab(name: str, root: str, hosts: int, report: Report, **kw: Any) -> Lab:
    t = time.monotonic()
    lab = Lab.up(LabSpec(name, hosts=hosts, **kw), root, progress=lambda m: report(f"  lab: {m}"))
    report(f"  lab {name} up in {time.monotonic() - t:.0f} s")
    return lab


def subnet_for(hosts: int) -> str:
    return "10.128.0.0/16" if hosts > 64 else "10.128.0.0/18"


def prepare(lab: Lab, per_host: int, report: Report) -> None:
    """The overlay network and ``per_host`` sandboxes per host (what is missing)."""
    first = lab.hosts()[0]
    nets = lab.kanal(first, "network", "ls", "--format", "json").stdout
    if f'"Name": "{NET}"' not in nets and f'"Name":"{NET}"' not in nets:
        lab.kanal(
            first, "network", "create", "-d", "overlay", "--subnet", subnet_for(len(lab.hosts())),
            NET,
        )  # fmt: skip
    have = {
        h: len(api(lab, h).request("GET", "/sandboxes", query={"all": "1"})) for h in lab.hosts()
    }
    if min(have.values()) < per_host:
        fill(lab, per_host, report, skip_existing=True)


def forget(lab: Lab, ip: str) -> None:
    """Delete every prober's neighbour entry for ``ip`` (a removed sample sandbox's): a
    benchmark's probes must not pile up in the machine's shared neighbour table."""
    for h in lab.hosts():
        pid = api(lab, h).request("GET", f"/sandboxes/s{h}-0")["Pid"]
        subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "neigh", "del", ip, "dev", "eth0"],
            capture_output=True,
        )


def scenario_reach(lab: Lab, per_host: int, samples: int, report: Report) -> dict[str, Any]:
    prepare(lab, per_host, report)
    probes = probers(lab, lambda h: f"s{h}-0")
    neigh0 = labsys.neighbour_table()
    res: dict[str, Any] = {"samples": []}
    idle = etcd_counters(lab)
    time.sleep(10)
    idle2 = etcd_counters(lab)
    idle_rate = {k: (idle2[k] - idle[k]) / 10 for k in idle}
    etcd_s = 0.0
    per_ep_tot = {k: 0.0 for k in idle}
    hosts = lab.hosts()
    for k in range(samples):
        host = hosts[k % len(hosts)]
        full0 = labsys.neighbour_table()["table_fulls"]
        c0, t_c0 = etcd_counters(lab), time.monotonic()
        r = reach(lab, host, f"new{k}", probes)
        c1, t_c1 = etcd_counters(lab), time.monotonic()
        for key in per_ep_tot:
            per_ep_tot[key] += c1[key] - c0[key] - idle_rate[key] * (t_c1 - t_c0)
        etcd_s += t_c1 - t_c0
        api(lab, host).request("DELETE", f"/sandboxes/new{k}", query={"force": "1"})
        forget(lab, r["ip"])
        r["overflows"] = labsys.neighbour_table()["table_fulls"] - full0
        res["samples"].append(r)
        worst = max(list(r["by_name"].values()) or [float("nan")])
        report(
            f"  sample {k}: on {host}, run {r['run_s'] * 1000:.0f} ms, reached by all by IP "
            f"{max(list(r['by_ip'].values()) or [float('nan')]) * 1000:.0f} ms, by name "
            f"{worst * 1000:.0f} ms"
            + (f", MISSING {r['missing']}" if r["missing"] else "")
            + (f", {r['overflows']} neighbour table overflows" if r["overflows"] else "")
        )
    per_ep = {k: v / samples for k, v in per_ep_tot.items()}
    by_ip = [v for r in res["samples"] for v in r["by_ip"].values()]
    by_name = [v for r in res["samples"] for v in r["by_name"].values()]
    worst_name = [max(r["by_name"].values()) for r in res["samples"] if r["by_name"]]
    runs = [r["run_s"] for r in res["samples"]]
    missing = sum(len(r["missing"]) for r in res["samples"])
    neigh1 = labsys.neighbour_table()
    d_ip, d_name, d_all, d_run = dist(by_ip), dist(by_name), dist(worst_name), dist(runs)
    summary = {
        "hosts": len(hosts),
        "sandboxes_per_host": per_host,
        "per_sample": res["samples"],
        "by_ip_ms": d_ip,
        "by_name_ms": d_name,
        "all_hosts_by_name_ms": d_all,
        "run_ms": d_run,
        "missing": missing,
        "etcd_per_endpoint": per_ep,
        "etcd_idle_per_s": idle_rate,
        "neighbour_table": {"before": neigh0, "after": neigh1},
    }
    report(f"  by IP: {fmt(d_ip)}; by name: {fmt(d_name)} (goal p99 <= 1000 ms)")
    report(f"  never reached: {missing}; slowest host per sample (by name): {fmt(d_all)}")
    report(f"  kanal run: {fmt(d_run)}")
    report(
        "  etcd per new endpoint: "
        + ", ".join(f"{k} {v:.1f}" for k, v in per_ep.items())
        + "; idle per s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in idle_rate.items())
    )
    fulls = neigh1["table_fulls"] - neigh0["table_fulls"]
    report(
        f"  neighbour table: {neigh0['entries']} -> {neigh1['entries']} entries "
        f"(gc_thresh3 {neigh1['gc_thresh3']}), overflows {fulls}"
    )
    for p in probes.values():
        p.close()
    return summary


def scenario_idle(lab: Lab, seconds: float, report: Report) -> dict[str, float]:
    r = idle_resources(lab, seconds)
    report(
        f"  kanald idle over {seconds:.0f} s: CPU p50 {r['cpu_s_p50']:.2f} s, "
        f"max {r['cpu_s_max']:.2f} s; "
        f"RSS p50 {r['rss_mib_p50']:.0f} MiB, max {r['rss_mib_max']:.0f} MiB"
    )
    return r


def scenario_restart(lab: Lab, rounds: int, report: Report) -> dict[str, Any]:
    hosts = lab.hosts()
    probes = probers(lab, lambda h: f"s{h}-0")
    out = []
    for k in range(rounds):
        host = hosts[(k * 7 + 3) % len(hosts)]
        # an existing sandbox on the host, watched from another host meanwhile
        watcher = hosts[(hosts.index(host) + 1) % len(hosts)]
        victim_ip = api(lab, host).request("GET", f"/sandboxes/s{host}-1")["Networks"][NET][
            "IPAddress"
        ]
        t_kill = time.monotonic()
        lab.kill(host)
        lab.start_kanald(host, wait=False)
        lost = 0
        while not lab.kanald_ok(host):
            probes[watcher].echo(victim_ip)
            time.sleep(0.05)
            if not probes[watcher].replied(victim_ip):
                lost += 1
        t_api = time.monotonic() - t_kill
        r = reach(lab, host, f"rs{k}", probes)
        full = t_api + r["run_s"] + max(list(r["by_name"].values()) or [float("nan")])
        out.append(
            {
                "host": host,
                "api_s": t_api,
                "full_s": full,
                "missing": r["missing"],
                "lost_probes": lost,
            }
        )
        report(
            f"  restart {k}: {host} API back after {t_api:.2f} s; a sandbox run then reached by "
            f"all by name {full:.2f} s after the kill (goal <= 5 s)"
            + (f", MISSING {r['missing']}" if r["missing"] else "")
        )
        api(lab, host).request("DELETE", f"/sandboxes/rs{k}", query={"force": "1"})
    for p in probes.values():
        p.close()
    return {"rounds": out, "full_s_max": max(x["full_s"] for x in out)}


def overlay_ips(lab: Lab, hosts: list[str] | None = None) -> list[str]:
    ips: list[str] = []
    for h in hosts or lab.hosts():
        try:
            info = json.loads(lab.kanal(h, "network", "inspect", NET).stdout)[0]
        except Exception:
            continue
        ips += [c["IPv4Address"].split("/")[0] for c in info["Containers"].values()]
    return ips


def scenario_faults(root: str, n: int, per_host: int, report: Report) -> dict[str, Any]:
    lab = new_lab(
        "bf", root, n, report, etcd=3, node_ttl=10, grace=30.0,
        etcd_heartbeat_ms=300, etcd_election_ms=3000,
    )  # fmt: skip
    try:
        lab.kanal("h1", "network", "create", "-d", "overlay", "--subnet", "10.129.0.0/20", NET)
        fill(lab, 1, report, prefix="p")
        probes = probers(lab, lambda h: f"p{h}-0")
        imp = Impairment(delay_ms=100, jitter_ms=20, loss=1)
        lab.netem(list(lab.rec.members), imp)
        lab.partition([["e3"]])
        report(f"  every link: {imp}; etcd e3 partitioned away")
        t = time.monotonic()
        fill(lab, per_host, report, prefix="f")
        report(f"  {per_host} sandboxes per host under faults: {time.monotonic() - t:.0f} s")
        lat: list[float] = []
        runs: list[float] = []
        failed: list[str] = []
        hosts = lab.hosts()
        for k in range(2 * len(hosts)):
            host = hosts[k % len(hosts)]
            try:
                r = reach(lab, host, f"fn{k}", probes, timeout=60, interval=0.05)
            except KanalError as e:  # kanal run refused (etcd too slow): counted, not fatal
                failed.append(str(e).splitlines()[-1][:160])
                report(f"  sample {k}: on {host}, kanal run FAILED: {failed[-1]}")
                continue
            lat += list(r["by_name"].values())
            lat += [60.0] * len(r["missing"])
            runs.append(r["run_s"])
            report(
                f"  sample {k}: on {host}, run {r['run_s'] * 1000:.0f} ms, reached by all by "
                f"name {max(list(r['by_name'].values()) or [float('nan')]) * 1000:.0f} ms "
                f"(its address from its API after {r['lookup_s'] * 1000:.0f} ms)"
                + (f", MISSING {r['missing']}" if r["missing"] else "")
                + _slow(r, 3.0)
            )
        ips = overlay_ips(lab)
        dup = len(ips) - len(set(ips))
        lab.clear()
        neigh = labsys.neighbour_table()
        res = {
            "hosts": n,
            "impairment": str(imp),
            "addresses": len(ips),
            "duplicates": dup,
            "reach_ms": dist(lat),
            "run_ms": dist(runs),
            "runs_failed": failed,
            "neighbour_table": neigh,
        }
        report(f"  {len(ips)} addresses, {dup} duplicates (goal 0)")
        report(f"  new sandboxes reached by name: {fmt(dist(lat))} (goal p99 <= 3000 ms)")
        report(f"  kanal run: {fmt(dist(runs))}; {len(failed)} of {2 * len(hosts)} refused")
        for p in probes.values():
            p.close()
        return res
    finally:
        left = lab.down()
        if left:
            report(f"  lab down left: {left}")


def fdb_dsts(lab: Lab, host: str) -> set[str]:
    p = lab.run(host, "bridge", "-j", "fdb", "show", check=False)
    try:
        return {e.get("dst", "") for e in json.loads(p.stdout or "[]")}
    except ValueError:
        return set()


def etcd_values(lab: Lab, via: str, prefix: str) -> list[dict[str, Any]]:
    """The decoded values under ``prefix`` in the lab's etcd, read from host ``via``."""
    from kanal.netlink.ns import run_in_netns
    from kanal.store.etcd import EtcdStore

    store = EtcdStore([(lab.addr(e), 2379) for e in lab.etcd_members()], lab.spec.store_prefix)
    fd = open_netns(f"/run/netns/{lab.ns(via)}")
    try:
        raw = run_in_netns(fd, lambda: [e.value for e in store.list(prefix)])
    finally:
        os.close(fd)
    out = []
    for v in raw:
        try:
            out.append(json.loads(v))
        except ValueError:
            continue
    return out


def until(fn: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    """Poll ``fn`` until it is true (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def scenario_partition(lab: Lab, report: Report) -> dict[str, Any]:
    hosts = lab.hosts()
    victim = hosts[-1]
    others = hosts[:-1]
    va = lab.addr(victim)
    before = [s["Name"] for s in api(lab, victim).request("GET", "/sandboxes", query={"all": "1"})]
    t = time.monotonic()
    lab.partition([[victim]])
    wait = lab.spec.node_ttl + lab.spec.grace
    report(
        f"  {victim} partitioned away (lease {lab.spec.node_ttl} s + grace {lab.spec.grace:g} s)"
    )

    def gone() -> bool:
        return all(va not in fdb_dsts(lab, h) for h in others)

    limit = 4 * wait + 60
    if not until(gone, limit):
        report(f"  FAILED: {victim}'s entries still on some host after {limit:.0f} s")
    t_entries = time.monotonic() - t
    nid = json.loads(lab.kanal(others[0], "network", "inspect", NET).stdout)[0]["Id"]

    def freed() -> bool:
        held = etcd_values(lab, others[0], f"ipam/{nid}/")
        return not [v for v in held if v.get("host") == victim]

    if not until(freed, limit, 1.0):
        report(f"  FAILED: {victim}'s addresses still held after {limit:.0f} s")
    t_freed = time.monotonic() - t
    report(
        f"  its entries gone from every other host after {t_entries:.1f} s, "
        f"its addresses freed after {t_freed:.1f} s"
    )

    def lost_addresses() -> list[tuple[str, Any]]:
        out = []
        for sb in api(lab, victim).request("GET", "/sandboxes", query={"all": "1"}):
            info = api(lab, victim).request("GET", f"/sandboxes/{sb['Id']}")
            if info.get("LostAddresses"):
                out.append((info["Name"], info["LostAddresses"]))
        return out

    # the others hand out addresses meanwhile (some may be the ones it held)
    fill(lab, 2, report, prefix="q", hosts=others)
    lab.heal()
    t_heal = time.monotonic()
    if not until(lambda: victim in lab.nodes(others[0]), limit):
        report(f"  FAILED: {victim} not registered again after {limit:.0f} s")
    # every sandbox whose address was freed is disconnected one by one: wait until all
    # of them say so (or the count has not grown for 15 s)
    seen, t_last = 0, time.monotonic()
    while time.monotonic() - t_last < 15:
        n = len(lost_addresses())
        if n >= len(before):
            break
        if n > seen:
            seen, t_last = n, time.monotonic()
        time.sleep(1)
    lost = lost_addresses()
    ips = overlay_ips(lab)
    dup = len(ips) - len(set(ips))
    report(
        f"  healed: {victim} registered again after {time.monotonic() - t_heal:.1f} s; "
        f"{len(lost)} of "
        f"its {len(before)} sandboxes report lost addresses in inspect; {dup} duplicate addresses"
    )
    return {
        "entries_gone_s": t_entries,
        "freed_s": t_freed,
        "lost_reported": len(lost),
        "sandboxes": len(before),
        "duplicates": dup,
        "waited_min_s": wait,
    }


def scenario_mtu(root: str, report: Report) -> dict[str, Any]:
    lab = new_lab("bm", root, 2, report, etcd=1, underlay_mtu=1400)
    try:
        lab.kanal("h1", "network", "create", "-d", "overlay", "--subnet", "10.130.0.0/24", NET)
        lab.kanal("h1", "run", "-d", "--name", "a", "--network", NET, "--", "sleep", "infinity")
        lab.kanal("h2", "run", "-d", "--name", "b", "--network", NET, "--", "sleep", "infinity")
        # (not /sys: a sandbox sees its host's sysfs, mounted for another namespace)
        link = lab.kanal("h1", "exec", "a", "ip", "-j", "link", "show", "eth0").stdout
        mtu = str(json.loads(link)[0]["mtu"])
        big = int(mtu) - 28
        ok = lab.kanal(
            "h1", "exec", "a", "ping", "-c", "3", "-M", "do", "-s", str(big), "b", check=False
        )
        too = lab.kanal(
            "h1", "exec", "a", "ping", "-c", "1", "-M", "do", "-s", str(big + 1), "b", check=False
        )
        b_ip = api(lab, "h2").request("GET", "/sandboxes/b")["Networks"][NET]["IPAddress"]
        lab.kanal("h2", "run", "-d", "--name", "srv", "--network", NET, "--", "iperf3", "-s")
        srv_ip = api(lab, "h2").request("GET", "/sandboxes/srv")["Networks"][NET]["IPAddress"]
        del b_ip
        tcp = lab.kanal("h1", "exec", "a", "iperf3", "-c", srv_ip, "-n", "64M", "-J", check=False)
        doc = json.loads(tcp.stdout or "{}")
        got = doc.get("end", {}).get("sum_received", {}).get("bytes", 0)
        res = {
            "overlay_mtu": int(mtu),
            "df_ping_max_ok": ok.returncode == 0,
            "df_ping_over_refused": too.returncode != 0,
            "tcp_bytes": got,
            "tcp_gbit": doc.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e9,
        }
        report(
            f"  underlay MTU 1400 -> overlay MTU {mtu}; ping -M do -s {big}: "
            f"{'ok' if res['df_ping_max_ok'] else 'FAILED'}; -s {big + 1}: "
            f"{'refused' if res['df_ping_over_refused'] else 'PASSED (wrong)'}; 64 MiB TCP: "
            f"{got / 2**20:.0f} MiB at {res['tcp_gbit']:.2f} Gbit/s"
        )
        return res
    finally:
        left = lab.down()
        if left:
            report(f"  lab down left: {left}")


BIG = {"reach", "idle", "restart", "partition"}  # the scenarios on the --hosts lab


def run(args: argparse.Namespace, report: Report, res: dict[str, Any]) -> dict[str, Any]:
    """The scenarios in --scenarios order (those of the big lab where the first of
    them is); results go into ``res`` as they come."""
    scen = set(args.scenarios.split(","))
    root = tempfile.mkdtemp(prefix="klb", dir="/run")

    def faults() -> None:
        report(f"== {args.fault_hosts} hosts, every link impaired, an etcd member partitioned")
        res["faults"] = scenario_faults(root, args.fault_hosts, args.fault_sandboxes, report)

    def mtu() -> None:
        report("== underlay MTU 1400")
        res["mtu"] = scenario_mtu(root, report)

    def big() -> None:
        report(f"== {args.hosts} hosts x {args.sandboxes} sandboxes on one overlay network")
        if args.reuse:
            lab = Lab.load("bench", args.reuse)
        else:
            lab = new_lab(
                "bench", args.keep or root, args.hosts, report, etcd=3,
                node_ttl=args.ttl, grace=args.grace, resync=args.resync,
            )  # fmt: skip
        try:
            if "reach" in scen:
                res["reach"] = scenario_reach(lab, args.sandboxes, args.samples, report)
            else:
                prepare(lab, args.sandboxes, report)
            if "idle" in scen:
                res["idle"] = scenario_idle(lab, 30.0, report)
            if "restart" in scen:
                res["restart"] = scenario_restart(lab, args.restarts, report)
            if "partition" in scen:
                res["partition"] = scenario_partition(lab, report)
        finally:
            if not (args.keep or args.reuse):
                left = lab.down()
                if left:
                    report(f"  lab down left: {left}")

    steps = {"faults": faults, "mtu": mtu, "big": big}
    order = ["big" if x in BIG else x for x in args.scenarios.split(",")]
    try:
        for step in dict.fromkeys(order):
            if step in steps:
                steps[step]()
    finally:
        os.rmdir(root) if os.path.isdir(root) and not os.listdir(root) else None
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--sandboxes", type=int, default=20)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--fault-hosts", type=int, default=10)
    ap.add_argument("--fault-sandboxes", type=int, default=5)
    ap.add_argument("--ttl", type=int, default=5)
    ap.add_argument("--grace", type=float, default=15.0)
    ap.add_argument("--resync", type=float, default=30.0)
    ap.add_argument("--scenarios", default="mtu,faults,reach,idle,restart,partition")
    ap.add_argument("--out", default="")
    ap.add_argument("--keep", default="", metavar="DIR", help="make the lab there and keep it")
    ap.add_argument("--reuse", default="", metavar="DIR", help="use the lab kept there")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (it creates network namespaces)")

    def stop(_sig: int, _frame: Any) -> None:  # SIGTERM (timeout): labs still go down
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    res: dict[str, Any] = {}
    try:
        run(args, lambda s: print(s, flush=True), res)
    finally:
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
