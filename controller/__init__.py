"""canfar-controller: keep SessionSets of CANFAR sessions alive, Kubernetes-style.

The package is layered (see ``[tool.importlinter]`` in pyproject.toml): a pure core
(``names``, ``models``, ``spec``, ``plan``) with I/O at the edges (``client``,
``simulator``, ``statedir``, ``observability``), the pass (``reconcile``), the
daemon (``daemon``) and the CLI, which is the one place that wires them.
"""

__version__ = "0.1.0"
