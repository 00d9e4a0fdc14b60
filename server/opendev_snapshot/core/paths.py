"""Where snapshots live and how project directories are compared."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import ConfigError

ENV_VAR = "OPENDEV_SNAPSHOT_DIR"
SNAPSHOT_SUFFIX = "_session_snapshot.json"
LOCK_SUFFIX = "_session_snapshot.lock"


def resolve_snapshot_dir(
    cli_dir: str | os.PathLike | None = None,
    init_dir: str | None = None,
    environ: dict | None = None,
) -> Path:
    """Pick the snapshot directory: ``--dir`` > init option > env > home.

    Never falls back to a shared temporary directory: with no home and
    nothing configured this raises :class:`ConfigError`.
    """
    env = os.environ if environ is None else environ
    for source, value in (("--dir", cli_dir), ("snapshotDir", init_dir), (ENV_VAR, env.get(ENV_VAR))):
        if value is None or value == "":
            continue
        text = os.fspath(value)
        if "\0" in text:
            raise ConfigError(f"{source}: the snapshot directory path contains a NUL byte")
        if text.startswith("file://"):
            text = uri_to_path(text)
        return Path(os.path.abspath(os.path.expanduser(text)))
    home = _home(env)
    if home is None:
        raise ConfigError(
            "cannot find a snapshot directory: no home directory is known; "
            f"set {ENV_VAR} or pass --dir"
        )
    return Path(home) / ".opendev" / "data" / "recovery"


def _home(env) -> str | None:
    home = env.get("HOME") or env.get("USERPROFILE")
    if home:
        return home
    try:
        import pwd

        home = pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError, OSError):
        return None
    return home or None


def uri_to_path(uri: str) -> str:
    """Decode a ``file://`` URI into a local path (``%xx`` decoded)."""
    parts = urlsplit(uri)
    path = unquote(parts.path)
    if os.name == "nt":
        if parts.netloc:
            return f"//{parts.netloc}{path}"
        if len(path) >= 3 and path[0] == "/" and path[2] == ":":
            path = path[1:]
    return path


def normalize_project(value: str) -> str:
    """Normalise a project directory for comparison.

    Absolute, ``.``/``..`` and duplicate or trailing slashes removed,
    symlinks resolved where the path exists, ``file://`` URIs decoded.
    """
    text = value
    if text.startswith("file://"):
        text = uri_to_path(text)
    if not text or "\0" in text:
        return os.path.normpath("/" + text.replace("\0", "")) if text else ""
    try:
        return os.path.realpath(text)
    except (OSError, ValueError):
        return os.path.normpath(os.path.abspath(text))


def within(child: str, parent: str) -> bool:
    """True when normalised ``child`` is ``parent`` or lies inside it."""
    if not child or not parent:
        return False
    if child == parent:
        return True
    if parent.endswith(os.sep):
        return child.startswith(parent)
    return child.startswith(parent + os.sep)


def session_id_from_name(name: str) -> str | None:
    if name.endswith(SNAPSHOT_SUFFIX) and len(name) > len(SNAPSHOT_SUFFIX):
        return name[: -len(SNAPSHOT_SUFFIX)]
    return None
