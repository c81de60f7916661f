"""The etcd client's deadlines and txn encoding, without an etcd (loopback sockets only)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import pytest

from kanal.errors import InvalidConfig, Unavailable
from kanal.store import Put
from kanal.store.etcd import Cmp, EtcdStore, Get, LeasePut


@pytest.fixture
def silent() -> Iterator[int]:
    """A member that accepts connections (kernel backlog) and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield srv.getsockname()[1]
    srv.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_a_silent_member_ends_at_the_deadline(silent: int) -> None:
    s = EtcdStore([("127.0.0.1", silent)], timeout=0.6, attempt_timeout=0.2)
    with pytest.raises(Unavailable, match="did not answer in time"):
        s.get("k")
    with pytest.raises(Unavailable, match="did not answer in time"):
        s.put("k", b"v", timeout=0.3)  # a per-call deadline


def test_refused_everywhere_fails_without_waiting() -> None:
    # With a 1-hour deadline, only the "all refused: etcd is down" rule can end this.
    s = EtcdStore([("127.0.0.1", _closed_port()), ("127.0.0.1", _closed_port())], timeout=3600)
    with pytest.raises(Unavailable, match="etcd is unreachable"):
        s.get("k")


def _d(b64: str) -> bytes:
    return base64.b64decode(b64)


def test_compares_and_ops_encode_as_the_gateway_wants() -> None:
    s = EtcdStore([("127.0.0.1", 1)], prefix="/p/")
    c = s._cmp(Cmp.absent("a"))
    assert (_d(c["key"]), c["target"], c["result"], c["create_revision"]) == (
        b"/p/a",
        "CREATE",
        "EQUAL",
        "0",
    )
    c = s._cmp(Cmp.value_is("b", b"x"))
    assert (c["target"], _d(c["value"])) == ("VALUE", b"x")
    c = s._cmp(Cmp("c", "mod", 7, ">"))
    assert (c["target"], c["mod_revision"], c["result"]) == ("MOD", "7", "GREATER")
    c = s._cmp(Cmp.lease_is("d", 12345678901234))
    assert (c["target"], c["lease"]) == ("LEASE", "12345678901234")
    for bad in (Cmp("e", "nope", 1), Cmp("e", "mod", 1, "~"), Cmp("e", "value", 3)):
        with pytest.raises(InvalidConfig):
            s._cmp(bad)
    put = s._op(LeasePut("k", b"v", 99))["request_put"]
    assert (_d(put["key"]), _d(put["value"]), put["lease"]) == (b"/p/k", b"v", "99")
    assert "lease" not in s._op(Put("k", b"v"))["request_put"]
    rng = s._op(Get("dir/", prefix=True))["request_range"]
    assert (_d(rng["key"]), _d(rng["range_end"])) == (b"/p/dir/", b"/p/dir0")
