"""Pure CNI spec layer: versions, result model and wire formats, configs, env and args.

No I/O besides parsing, no root, no pyroute2. Import the submodules directly
(``kanal.spec.convert``, ``kanal.spec.netconf``, ...); this package imports nothing
so that a plugin pays only for what it uses.
"""
