"""Owner tags and Go-compatible identifiers (pure)."""

from __future__ import annotations

import hashlib
import ipaddress

import pytest

from kanal.errors import InvalidConfig
from kanal.firewall import Masquerade, Owner, get_backend


def test_go_chain_name_and_comment() -> None:
    o = Owner("mybridge", "1234567890", "eth12")
    # Go: "CNI-" + hex(sha512(name+id)), cut to 28 characters.
    assert o.iptables_chain() == "CNI-" + hashlib.sha512(b"mybridge1234567890").hexdigest()[:24]
    assert len(o.iptables_chain()) == 28
    assert o.iptables_comment() == 'name: "mybridge" id: "1234567890"'
    assert o.go_nft_prefix() == (
        hashlib.sha512(b"mybridge").hexdigest()[:16]
        + "-"
        + hashlib.sha512(b"eth12:1234567890").hexdigest()[:16]
    )


def test_seed_chain_name() -> None:
    # The chain seed 003 shows for network "mybridge", container "1234567890".
    assert Owner("mybridge", "1234567890", "eth12").iptables_chain().startswith("CNI-")


def test_tags_differ_per_attachment_and_share_the_network_part() -> None:
    a, b = Owner("n", "c1", "eth0"), Owner("n", "c1", "eth1")
    assert a.tag != b.tag and a.tag.split(":")[0] == b.tag.split(":")[0]
    assert Owner("m", "c1", "eth0").tag.split(":")[0] != a.tag.split(":")[0]


@pytest.mark.parametrize(
    "net,cid,ifname",
    [
        ('a"b', "c", "eth0"),
        ("a", "c\nx", "eth0"),
        ("a", "c", "e/0"),
        ("..", "c", "eth0"),
        ("a", "c", "x" * 16),
        ("a", "", "eth0"),
        ("a b", "c", "eth0"),
    ],
)
def test_owner_rejects_what_could_escape_a_comment(net: str, cid: str, ifname: str) -> None:
    with pytest.raises(InvalidConfig):
        Owner(net, cid, ifname)


def test_masquerade_family_mismatch() -> None:
    with pytest.raises(InvalidConfig):
        Masquerade(
            Owner("n", "c", "eth0"),
            ipaddress.ip_address("10.0.0.2"),
            ipaddress.ip_network("fd00::/64"),
        )


def test_backend_factory() -> None:
    assert get_backend("none").name == "none"
    assert get_backend("iptables").name == "iptables"
    with pytest.raises(InvalidConfig):
        get_backend("pf")
