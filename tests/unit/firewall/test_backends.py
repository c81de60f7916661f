"""Every backend implements the whole FirewallBackend contract (pure: nothing is run).

mypy checks the assignment below structurally; the signature test catches what it
cannot see at run time (a renamed keyword, a lost default), which callers such as
the portmap plugin's DEL rely on.
"""

from __future__ import annotations

import inspect

import pytest

from kanal.errors import InvalidConfig
from kanal.firewall import FirewallBackend, get_backend
from kanal.firewall.iptables import IptablesBackend
from kanal.firewall.nftables import NftablesBackend
from kanal.firewall.null import NullBackend

BACKENDS: list[FirewallBackend] = [NftablesBackend(), IptablesBackend(), NullBackend()]

CONTRACT = sorted(
    name
    for name, member in vars(FirewallBackend).items()
    if inspect.isfunction(member) and not name.startswith("_")
)


def test_the_contract_covers_masquerade_port_maps_and_the_firewall_plugin() -> None:
    for group in ("masquerade", "portmaps", "forward"):
        for verb in ("add", "del", "check", "gc"):
            assert f"{verb}_{group}" in CONTRACT
    assert "isolate_bridge" in CONTRACT


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_backend_has_every_method_with_the_contract_signature(backend: FirewallBackend) -> None:
    for name in CONTRACT:
        want = inspect.signature(getattr(FirewallBackend, name))
        got = inspect.signature(getattr(type(backend), name))
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == [
            (p.name, p.kind, p.default) for p in want.parameters.values()
        ], f"{backend.name}.{name}"


@pytest.mark.parametrize("name", ["nftables", "iptables", "none"])
def test_factory_returns_one_backend_per_name(name: str) -> None:
    b = get_backend(name)
    assert b.name == name and get_backend(name) is b


def test_factory_refuses_an_unknown_backend() -> None:
    with pytest.raises(InvalidConfig):
        get_backend("firewalld")
