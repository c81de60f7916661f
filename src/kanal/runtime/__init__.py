"""A libcni-equivalent runtime: load network configs, run plugin chains, cache results.

Modules (import them directly; this package imports nothing so that a plugin which
only needs :mod:`kanal.runtime.invoke` does not pay for the rest):

- :mod:`kanal.runtime.config`: find and load conflists in a directory (libcni ``conf.go``).
- :mod:`kanal.runtime.invoke`: the :class:`~kanal.runtime.invoke.Exec` seam and the real
  subprocess implementation (libcni ``pkg/invoke``).
- :mod:`kanal.runtime.cache`: the on-disk result cache (``<cacheDir>/results/...``).
- :mod:`kanal.runtime.libcni`: :class:`~kanal.runtime.libcni.CNIConfig`, the ADD/CHECK/
  DEL/GC/STATUS chains (libcni ``api.go``).
"""
