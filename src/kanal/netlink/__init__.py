"""kanal's netlink layer: the only package that talks to the kernel's network stack
(and the only one that imports pyroute2).

Kernel steps, the public building blocks plugins and engine drivers share:

- ``steps``: the container side of an attachment: entering a namespace
  (``in_container``), a veth pair into it, addresses, routes and sysctls of its
  interface, CHECK's verification.
- ``bridgeport``: the host side: a bridge, its gateway address, a veth pair whose
  host end is a bridge port, waiting for the port to come up.

Front ends to rtnetlink (one set of constants, in ``wire``):

- ``wire``: packing requests and decoding link and address messages (struct only).
- ``batch``: ``Batch``, pipelined ACK-only requests on one raw socket: the hot path.
- ``handle``: ``Netlink``, one socket in one namespace with typed reads and the
  rarer idempotent changes (pyroute2 only for what ``wire`` does not pack).
- ``routeget``: ``ip route get`` (which link leaves towards an address).

Namespaces and the rest:

- ``ns``: opening and entering network namespaces (in threads, never the caller's).
- ``sysctl``: per-namespace sysctls.
- ``reaper``: deleting a container's veth now, or just after the reply (kanald).
- ``rules``: policy routing rules and tables (sbr).
- ``tc``: traffic control for bandwidth (tbf, ingress redirect to an ifb).
- ``tuntap``: tap devices (through /dev/net/tun).
- ``vxlan``: VXLAN devices and the forwarding, neighbour and route entries an
  overlay programs on them (docs/overlay.md).
"""
