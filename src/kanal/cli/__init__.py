"""The ``kanal`` command line; :mod:`kanal.cli.main` is the entry point.

Subcommand modules (``kanal.cli.cni``, ...) import only light modules at import
time; the runtime, netlink and plugin code are imported when a command runs.
"""
