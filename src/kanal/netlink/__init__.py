"""kanal's netlink layer: the only package that imports pyroute2.

``ns`` opens and enters network namespaces (threads, never the caller's thread),
``handle`` wraps one rtnetlink socket in one namespace with typed, idempotent
operations, ``sysctl`` writes per-namespace sysctls.
"""
