"""Host sysctls the engine changes, and their values from before it did.

A network that needs, say, ``net/ipv4/ip_forward = 1`` *claims* it. The first
claim that finds another value records that value (``sysctls/<key>`` → ``{"orig",
"value", "users"}``) before writing, so a crash in between leaves the record, not
a change nobody knows about. Each network's removal *releases* its claims; when
the last user is gone the original value is written back — unless someone else
changed the sysctl meanwhile (then it is theirs, and left alone). A claim of a
value that is already set records nothing: that setting was not the engine's.
"""

from __future__ import annotations

import json
import threading

from kanal.errors import KanalError
from kanal.netlink.sysctl import read_sysctl, write_sysctl
from kanal.store import Delete, Store

__all__ = ["SysctlLedger"]

PREFIX = "sysctls/"


class SysctlLedger:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()

    @staticmethod
    def _key(key: str) -> str:
        return PREFIX + key

    def claim(self, key: str, value: str, owner: str) -> None:
        """Make sysctl ``key`` (``net/ipv4/ip_forward``) ``value`` for ``owner``."""
        with self._lock:
            e = self.store.get(self._key(key))
            if e is not None:
                rec = json.loads(e.value)
                if owner not in rec["users"]:
                    rec["users"].append(owner)
                    self.store.put(e.key, json.dumps(rec).encode(), expect=e.mod_rev)
                if read_sysctl(key) != value:
                    write_sysctl(key, value)
                return
            current = read_sysctl(key)
            if current == value:
                return
            rec = {"orig": current, "value": value, "users": [owner]}
            self.store.put(self._key(key), json.dumps(rec).encode(), expect=0)
            write_sysctl(key, value)

    def release(self, owner: str) -> None:
        """Drop ``owner``'s claims; restore each sysctl whose last user it was."""
        with self._lock:
            for e in self.store.list(PREFIX):
                rec = json.loads(e.value)
                if owner not in rec["users"]:
                    continue
                rec["users"].remove(owner)
                if rec["users"]:
                    self.store.put(e.key, json.dumps(rec).encode(), expect=e.mod_rev)
                    continue
                key = e.key.removeprefix(PREFIX)
                try:
                    if read_sysctl(key) == rec["value"]:
                        write_sysctl(key, rec["orig"])
                except KanalError:
                    pass  # the knob is gone (its interface with it): nothing to restore
                self.store.txn([Delete(e.key, e.mod_rev)])

    def claims(self) -> dict[str, list[str]]:
        """sysctl key → the owners holding it (for checks)."""
        return {
            e.key.removeprefix(PREFIX): list(json.loads(e.value)["users"])
            for e in self.store.list(PREFIX)
        }
