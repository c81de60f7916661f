"""Open vSwitch: the OVSDB client kanal's ``ovs`` network driver uses.

:class:`Vsctl` manages bridges and ports in one OVSDB (``unix:`` socket,
configurable; ``$KANAL_OVS_DB`` or the standard one by default);
:func:`tx_checksum_off` is the per-veth fix the userspace datapath needs.
"""

from kanal.ovs.offload import tx_checksum_off
from kanal.ovs.vsctl import (
    DEFAULT_DB,
    OWNER_KEY,
    Bridge,
    OvsdbError,
    Vsctl,
    check_db,
    default_db,
    kernel_datapath,
)

__all__ = [
    "DEFAULT_DB",
    "OWNER_KEY",
    "Bridge",
    "OvsdbError",
    "Vsctl",
    "check_db",
    "default_db",
    "kernel_datapath",
    "tx_checksum_off",
]
