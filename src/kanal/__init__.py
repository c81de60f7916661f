"""kanal: container networking in Python.

Nothing heavy is imported here: the CNI plugin fast path imports ``kanal.fastpath.shim``
and must stay at a bare interpreter's start-up cost.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
