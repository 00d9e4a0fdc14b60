"""The records this store just wrote, with their bytes: a save is validated once.

A save validates its record, encodes it and writes it (:mod:`.writes`).
The listing view then hears of that file from the change feed (or a pass)
and still reads it (never stale), but when the bytes it reads are exactly
the ones written, it takes the record as it is instead of parsing and
validating it a second time (~40 µs of the server's loop after every
save, which the next request waited for). Kept for the last
:data:`OWN_WRITES_KEPT` names, each taken at most once.
"""

from __future__ import annotations

from . import codec

OWN_WRITES_KEPT = 16  # sessions a store saves between two looks at its directory, at most


class OwnWrites:
    """name -> (bytes, record) of this store's last saves (see the module docstring)."""

    def __init__(self) -> None:
        self._kept: dict = {}

    def wrote(self, name: str, data: bytes, record: dict) -> None:
        """This store just wrote ``data`` (the validated ``record``) to ``name``.

        When the change feed (or a pass) then reports the name, the file is
        still read, but when its bytes are exactly these the record is taken
        as it is instead of parsed and validated again: a save is validated
        once. Kept for the last :data:`OWN_WRITES_KEPT` names.
        """
        kept = self._kept
        kept.pop(name, None)
        if len(kept) >= OWN_WRITES_KEPT:
            kept.pop(next(iter(kept)))
        kept[name] = (data, record)

    def decode(self, name: str, data: bytes) -> dict:
        """The record ``data`` (read from ``name``) holds: the one this store
        wrote when these are exactly its bytes, else :func:`.codec.decode`'s."""
        own = self._kept.pop(name, None)
        if own is not None and own[0] == data:
            return own[1]
        return codec.decode(data)
