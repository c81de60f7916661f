"""Creating tap devices: the kernel makes them only through /dev/net/tun ioctls.

(rtnetlink refuses to create ``tun`` links.) Call in the namespace the device
must live in (e.g. from :func:`kanal.netlink.ns.run_in_netns`).
"""

from __future__ import annotations

import fcntl
import os
import struct

from kanal.errors import Conflict, Internal, Unavailable

__all__ = ["create_tap"]

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000


def create_tap(
    name: str, *, multi_queue: bool = False, owner: int | None = None, group: int | None = None
) -> None:
    """A persistent tap ``name`` in the calling thread's namespace.

    Raises:
        Conflict: a link of that name exists. Unavailable: no /dev/net/tun.
    """
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise Unavailable("cannot open /dev/net/tun", str(e)) from e
    try:
        flags = IFF_TAP | IFF_NO_PI | (IFF_MULTI_QUEUE if multi_queue else 0)
        ifr = struct.pack("16sH", name.encode(), flags)
        try:
            fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError as e:
            if e.errno in (16, 17):  # EBUSY/EEXIST: the name is taken
                raise Conflict(f"a link named {name!r} already exists") from e
            raise Internal(f"Tuntap IOCTL TUNSETIFF failed, errno {e.errno}", str(e)) from e
        try:
            if owner is not None:
                fcntl.ioctl(fd, TUNSETOWNER, owner)
            if group is not None:
                fcntl.ioctl(fd, TUNSETGROUP, group)
            fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except OSError as e:
            raise Internal(f"Tuntap IOCTL TUNSETPERSIST failed, errno {e.errno}", str(e)) from e
    finally:
        os.close(fd)
