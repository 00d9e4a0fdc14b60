"""The IPython / Jupyter front door: ``%load_ext opendev_snapshot`` and ``%opendev``.

IPython is imported only when the extension is loaded, so the server and
the command line never pay for it. The kernel's session (its store, lock
and autosave) lives in :mod:`.kernel`, so ``%reload_ext`` keeps it.
"""

from __future__ import annotations

_REGISTRY_NAME = "OpendevMagics"


def load_ipython_extension(ipython) -> None:
    """Register ``%opendev`` and show this project's interrupted sessions."""
    from .magics import OpendevMagics

    magics = OpendevMagics(shell=ipython)
    ipython.register_magics(magics)
    magics.on_load()


def unload_ipython_extension(ipython) -> None:
    """Unhook autosave and drop ``%opendev``; the kernel keeps its session and lock."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(_REGISTRY_NAME, None)
    if magics is None:
        return
    magics.on_unload()
    line = manager.magics.get("line", {})
    if getattr(line.get("opendev"), "__self__", None) is magics:
        del line["opendev"]
    try:
        ipython.configurables.remove(magics)
    except ValueError:
        pass


__all__ = ["load_ipython_extension", "unload_ipython_extension"]
