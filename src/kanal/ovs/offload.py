"""Checksum offload off on a veth end: the userspace datapath needs it.

ovs-vswitchd's netdev datapath reads and writes veths through AF_PACKET sockets
and never fills in a checksum the sender left to "hardware": with tx checksum
offload on (the veth default) ping works, TCP does not. One SIOCETHTOOL
``ETHTOOL_STXCSUM`` ioctl — what ``ethtool -K IF tx off`` sends — fixes it
(ethtool itself is not installed everywhere).
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

from kanal.errors import Internal

__all__ = ["tx_checksum_off"]

SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17


def tx_checksum_off(ifname: str) -> None:
    """Turn tx checksum offload off on ``ifname`` in the calling thread's namespace."""
    value = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_STXCSUM, 0))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
    except OSError as e:
        raise Internal(f"failed to turn tx checksum offload off on {ifname!r}", str(e)) from e
