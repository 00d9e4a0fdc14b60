"""opendev-snapshot: crash-recovery snapshots for OpenDev sessions.

Importing the package is cheap: the server, the CLI and the IPython
extension import what they need themselves.
"""

__version__ = "0.1.0"


def load_ipython_extension(ipython):  # pragma: no cover - thin shim
    from .ipython import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover - thin shim
    from .ipython import unload_ipython_extension as _unload

    _unload(ipython)
