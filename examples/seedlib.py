"""What the seed examples share: lab hosts for the seed's machines, commands shown as
typed, and checks of what the seed shows (an example exits 1 if one differs).

Each example runs every command inside a kanal lab (``kanal.lab``): a "host" is a
network namespace with its own kanald, its own ``ip netns`` names and its own
mount of ``/var/lib/cni``, so the seed's names (``ns1``, ``br3``, ``cni_br0``,
``1234567890``) are used as they are, and nothing reaches the machine's own
namespace. The lab lives in a private directory and is always taken down.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from kanal.lab import Lab, LabSpec  # noqa: E402

BOLD, DIM, GREEN, RED, END = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m")
    if sys.stdout.isatty()
    else ("", "", "", "", "")
)


class Example:
    """One seed walked with kanal: ``step`` titles, ``sh`` commands, ``check`` outcomes."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.failed: list[str] = []
        self.passed = 0
        self.labs: list[Lab] = []
        self.root = ""
        print(f"{BOLD}# {title}{END}", flush=True)

    # ---- the lab --------------------------------------------------------------------
    @contextlib.contextmanager
    def lab(self, name: str, **spec: Any) -> Iterator[Lab]:
        """A lab for the example (taken down afterwards, whatever happens)."""
        if os.geteuid() != 0:
            sys.exit("example: needs root (it makes network namespaces)")
        if not self.root:
            self.root = tempfile.mkdtemp(prefix="kanal-ex-", dir="/run")
        self.step(
            f"The machines: kanal lab up {name} "
            + " ".join(
                f"--{k.replace('_', '-')} {v}" for k, v in spec.items() if k in ("hosts", "etcd")
            )
        )
        lab = Lab.up(LabSpec(name, **spec), self.root)
        self.labs.append(lab)
        st = lab.status()
        for m in st["Members"]:
            print(f"{DIM}  {m['Member']:4} {m['Addr']:13} netns {m['Netns']}{END}")
        print(f"{DIM}  (the lab's files: {lab.dir}){END}", flush=True)
        try:
            yield lab
        finally:
            left = lab.down()
            if left:
                self.fail(f"lab {name} left something behind: {left}")
            else:
                print(f"{DIM}(lab {name} taken down: nothing left){END}", flush=True)

    # ---- output -----------------------------------------------------------------------
    def step(self, text: str) -> None:
        print(f"\n{BOLD}## {text}{END}", flush=True)

    def note(self, text: str) -> None:
        print(f"{DIM}{text}{END}", flush=True)

    def sh(
        self,
        lab: Lab,
        member: str,
        *cmd: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
        show: bool = True,
        shown: str = "",
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on a lab member; print it as typed there (``shown`` instead, if
        given) and what it printed. ``check``: a non-zero exit is a failed check."""
        argv = lab.exec_argv(member, cmd)
        full_env = {**os.environ, **lab.env(member), **(env or {})}
        p = subprocess.run(
            argv, input=input, env=full_env, capture_output=True, text=True, timeout=timeout
        )
        if show:
            prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
            typed = shown or shlex.join(cmd)
            print(f"{DIM}[{member}]$ {prefix + ' ' if prefix else ''}{typed}{END}", flush=True)
            out = (p.stdout + p.stderr).rstrip()
            if out:
                print(out, flush=True)
        if check and p.returncode != 0:
            self.fail(f"{shlex.join(cmd)} exited {p.returncode}")
        return p

    def ping(self, lab: Lab, host: str, sandbox: str, target: str) -> bool:
        """One ping from ``sandbox`` on ``host`` to ``target`` (a name or an address)."""
        argv = ("kanal", "exec", sandbox, "ping", "-c", "1", "-W", "2", target)
        return self.sh(lab, host, *argv, check=False, show=False).returncode == 0

    def address(self, lab: Lab, host: str, sandbox: str, network: str) -> str:
        """``sandbox``'s address on ``network``, as ``kanal inspect`` on ``host`` says."""
        out = self.sh(lab, host, "kanal", "inspect", sandbox, show=False).stdout
        return str(json.loads(out)[0]["NetworkSettings"]["Networks"][network]["IPAddress"])

    def kanal(self, lab: Lab, host: str, *args: str, check: bool = True) -> str:
        return self.sh(lab, host, "kanal", *args, check=check).stdout

    # ---- checks -----------------------------------------------------------------------
    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"{GREEN}✔ {what}{END}", flush=True)
        else:
            self.fail(what + (f": {detail}" if detail else ""))
        return ok

    def fail(self, what: str) -> None:
        self.failed.append(what)
        print(f"{RED}✘ {what}{END}", flush=True)

    def expect(self, what: str, text: str, pattern: str) -> bool:
        """``pattern`` (a regex, multiline) is found in ``text``."""
        return self.check(what, re.search(pattern, text, re.M) is not None, f"no {pattern!r}")

    def wait(self, what: str, fn: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Poll ``fn`` (quietly) until true; a check of its own."""
        import time

        deadline = time.monotonic() + timeout
        while not fn():
            if time.monotonic() > deadline:
                return self.check(what, False, f"not within {timeout:g} s")
            time.sleep(0.2)
        return self.check(what, True)

    def finish(self) -> None:
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
        print()
        if self.failed:
            print(
                f"{RED}{self.title}: {len(self.failed)} of {self.passed + len(self.failed)} "
                f"checks failed{END}"
            )
            for f in self.failed:
                print(f"{RED}  - {f}{END}")
            sys.exit(1)
        print(f"{GREEN}{self.title}: all {self.passed} checks passed{END}")


def ip_json(ex: Example, lab: Lab, member: str, *args: str) -> Any:
    """``ip -j ARGS`` on a member, decoded (quietly)."""
    out = ex.sh(lab, member, "ip", "-j", *args, show=False, check=False).stdout
    return json.loads(out) if out.strip() else []


def main_guard(fn: Callable[[Example], None], title: str) -> None:
    ex = Example(title)
    try:
        fn(ex)
    except Exception as e:  # a crash is a failed check, after the labs went down
        ex.fail(f"the example stopped: {type(e).__name__}: {e}")
    finally:
        ex.finish()
