"""IP address management: host-local ranges, allocation, reservation stores.

- :mod:`kanal.ipam.ranges`: range / range-set parsing and validation (pure).
- :mod:`kanal.ipam.allocator`: Go's round-robin iterator and the allocate/release steps.
- :mod:`kanal.ipam.store`: the reservation ``Store`` protocol.
- :mod:`kanal.ipam.disk`: the Go-compatible on-disk store (with a cached index).
- :mod:`kanal.ipam.memory`: an in-memory store (tests, the network manager).
- :mod:`kanal.ipam.hostlocal`: the host-local plugin logic.
- :mod:`kanal.ipam.static`: the static plugin logic.

This package imports nothing so that a plugin pays only for what it uses.
"""
