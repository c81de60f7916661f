"""The warm fast path: thin plugin executables hand CNI requests to kanald.

``shim`` runs in every plugin exec and must stay tiny (only builtin modules);
``protocol`` is the wire format both sides share; ``server`` is kanald's side;
``install`` writes the executables.
"""
