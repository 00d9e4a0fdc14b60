"""The JSON-RPC server (``opendev-snapshot serve``): pygls over the core.

Importing this package is free (no pygls, no pydantic): the command line
imports :mod:`.wire` for ``list --json`` and :mod:`.args` for ``serve``;
:mod:`.app` imports pygls when the server actually starts, after the
start-up pre-scan is on its way.
"""
