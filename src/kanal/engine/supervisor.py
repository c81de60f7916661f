"""A sandbox's process: launched detached, followed, found again, stopped.

The process runs ``nsenter --net=<netns> unshare --mount [--uts] [--pid --fork
--kill-child] -- python -m kanal.engine.launch <spec>``: the launcher binds the
sandbox's files over /etc and executes the command (kanal.engine.launch); in a
PID namespace of its own (unless ``--pid host``) it stays as that namespace's
PID 1 so that the command's background processes end with it. kanald follows the processes it
started (their exit is reported through ``on_exit``); one started before a
restart is found by its pidfile or its launch spec, and named by pid *and*
start time so that a recycled pid is never signalled
(:mod:`kanal.engine.processes`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kanal.engine import processes
from kanal.engine.model import now

if TYPE_CHECKING:
    from kanal.engine.sandboxenv import SandboxEnv
    from kanal.engine.sandboxes import Sandbox

__all__ = ["Supervisor", "exit_status"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Supervisor:
    """Starts and stops sandbox processes; ``on_exit(sandbox id, code)`` when one
    it started ends."""

    def __init__(self, env: SandboxEnv, on_exit: Callable[[str, int], object]) -> None:
        self.env = env
        self.on_exit = on_exit
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def pidfile(self, sid: str) -> str:
        return os.path.join(self.env.dir(sid), "pid")

    def initfile(self, sid: str) -> str:
        """Where PID 1 of the sandbox's PID namespace notes itself (its launcher)."""
        return os.path.join(self.env.dir(sid), "init")

    def following(self, sid: str) -> bool:
        """Whether a process of ``sid`` started by this daemon is still followed."""
        with self._lock:
            return sid in self._procs

    def launch_argv(self, sb: Sandbox) -> tuple[list[str], str]:
        """The command line that runs ``sb``'s process, and its spec file."""
        d = self.env.dir(sb.id)
        spec = {
            "argv": sb.argv,
            "env": sb.env or {"PATH": DEFAULT_PATH},
            "hostname": sb.hostname if sb.own_netns else "",
            "cwd": sb.workdir,
            "binds": {
                "/etc/resolv.conf": os.path.join(d, "resolv.conf"),
                "/etc/hosts": os.path.join(d, "hosts"),
                "/etc/hostname": os.path.join(d, "hostname"),
            },
            "pidfile": self.pidfile(sb.id),
            "initfile": self.initfile(sb.id),
            "init": sb.pid_mode != "host",
        }
        spec_path = os.path.join(d, "launch.json")
        # 0600 even if it existed looser: it holds the -e values.
        fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        uts = ["--uts"] if sb.own_netns else []
        # --kill-child: the namespace's PID 1 dies with unshare (a SIGKILL of the
        # group leader leaves nothing behind).
        pidns = ["--pid", "--fork", "--kill-child"] if sb.pid_mode != "host" else []
        argv = [
            "nsenter",
            f"--net={sb.netns}",
            "unshare",
            "--mount",
            *uts,
            *pidns,
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-I",
            "-m",
            "kanal.engine.launch",
            spec_path,
        ]
        return argv, spec_path

    def launch(self, sb: Sandbox) -> subprocess.Popen[bytes]:
        """Start ``sb``'s process, detached, and note it in ``sb`` (not stored yet)."""
        argv, _ = self.launch_argv(sb)
        for stale in (self.pidfile(sb.id), self.initfile(sb.id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        log_path = os.path.join(self.env.dir(sb.id), "log")
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "ab") as out:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env=env,
            )
        with self._lock:
            self._procs[sb.id] = p
        sb.state, sb.pid, sb.exit_code = "running", p.pid, None
        sb.started_at, sb.finished_at = now(), ""
        start = processes.proc_start(p.pid)
        sb.started = float(start) if start else 0.0
        return p

    def follow(self, sid: str, p: subprocess.Popen[bytes]) -> None:
        """Report the process's exit (from a thread of its own)."""
        threading.Thread(target=self._wait, args=(sid, p), daemon=True).start()

    def _wait(self, sid: str, p: subprocess.Popen[bytes]) -> None:
        code = exit_status(p.wait())
        # Reported while still followed: a lookup meanwhile must not take the
        # process for one that died unseen (and record no status for it).
        try:
            self.on_exit(sid, code)
        finally:
            with self._lock:
                if self._procs.get(sid) is p:  # not a newer start's process
                    del self._procs[sid]

    def find_launched(self, sid: str) -> processes.ProcRef | None:
        """A process a launch of ``sid`` started, found by its pidfile or spec file."""
        return processes.find_launched(
            os.path.join(self.env.dir(sid), "launch.json"), self.pidfile(sid)
        )

    @staticmethod
    def leader(sb: Sandbox) -> processes.ProcRef | None:
        """The sandbox's recorded process (pid and start time), if any."""
        if not sb.pid:
            return None
        return sb.pid, str(int(sb.started)) if sb.started else ""

    def init_pid(self, sb: Sandbox, wait: float = 2.0) -> int:
        """The sandbox's first process as docker's ``State.Pid`` names it: the PID 1
        of its PID namespace (its launcher; waited for up to ``wait`` seconds just
        after a start), else the leader; 0 when it is not running."""
        if sb.state != "running" or not sb.pid:
            return 0
        if sb.pid_mode == "host":
            return sb.pid
        if not _just_started(sb):
            wait = 0.0  # (one started by an older kanald has no init file: no wait)
        deadline = time.monotonic() + wait
        while True:
            ref = processes.read_pidfile(self.initfile(sb.id))
            if ref is not None and processes.alive(ref):
                return ref[0]
            leader = self.leader(sb)
            if time.monotonic() >= deadline or leader is None or not processes.alive(leader):
                return sb.pid
            time.sleep(0.02)

    def kill(self, sb: Sandbox, sig: int) -> bool:
        """Send ``sig`` to the sandbox's first process only (docker's ``kill``): PID 1
        of its namespace passes it on to the command; SIGKILL ends the namespace.
        False if nothing runs."""
        pid = self.init_pid(sb)
        if not pid:
            return False
        if sig == signal.SIGKILL:
            # Nothing to pass on: the leader goes, and with it (unshare --kill-child)
            # the PID namespace (unshare reports 137). Not its group: a reaped
            # leader would make the kill look like one of a stopped sandbox.
            leader = self.leader(sb)
            return leader is not None and processes.signal_proc(leader, sig, group=False)
        own = pid == sb.pid
        ref = self.leader(sb) if own else processes.read_pidfile(self.initfile(sb.id))
        return ref is not None and processes.signal_proc(ref, sig, group=False)

    def stop_all(self, sid: str, sb: Sandbox | None, netns: str, timeout: float = 2.0) -> bool:
        """Stop the sandbox's processes: its recorded leader (pid and start time), the
        one a launcher's pidfile names, and — with a namespace of its own — every
        process left in it."""
        leader = self.leader(sb) if sb is not None else None
        init = processes.read_pidfile(self.initfile(sid))
        if leader is None or not processes.alive(leader):
            leader = processes.read_pidfile(self.pidfile(sid))
        if init is not None and init != leader and processes.alive(init):
            # The PID namespace's PID 1 passes SIGTERM on; the unshare above it (the
            # leader) holds SIGTERM off and is not always a group leader (an attached
            # run's is in the CLI's group).
            processes.signal_proc(init, signal.SIGTERM, group=False)
        ran = processes.stop_processes(leader, netns, timeout)
        with self._lock:
            p = self._procs.get(sid)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        return ran

    def netns_holder(self, sb: Sandbox) -> int:
        """A live process of the sandbox's own (its recorded leader, its launcher's
        pidfile, the PID 1 its launcher noted) still in the sandbox's namespace, or 0.

        Only those. Once nothing holds a namespace, the kernel gives its inode number to
        the next namespace made on the machine, so a stranger's process can have
        the number recorded for the sandbox; remounting its namespace would make it
        the sandbox's, and ``kanal rm`` would kill what runs there."""
        want = tuple(sb.netns_id)
        if not want:
            return 0
        refs = (
            self.leader(sb),
            processes.read_pidfile(self.pidfile(sb.id)),
            processes.read_pidfile(self.initfile(sb.id)),
        )
        for ref in refs:
            if ref is None or not processes.alive(ref):
                continue
            try:
                st = os.stat(f"/proc/{ref[0]}/ns/net")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == want and processes.alive(ref):
                return ref[0]
        return 0


def exit_status(code: int) -> int:
    """A process's status as docker reports it: 128+N when signal N ended it."""
    return code if code >= 0 else 128 - code


def _just_started(sb: Sandbox, within: float = 10.0) -> bool:
    """Whether ``sb`` was started less than ``within`` seconds ago."""
    from datetime import UTC, datetime  # lazy: only inspect of a just-started one

    if not sb.started_at:
        return False
    started = datetime.fromisoformat(sb.started_at.replace("Z", "+00:00"))
    return (datetime.now(UTC) - started).total_seconds() < within
