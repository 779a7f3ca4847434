"""Path confinement: the only place that decides whether a client-given path may be served.

A client (the model) names notebooks by path. Only notebooks under the served root folder may be
opened: `..`, absolute paths outside the root, a sibling folder whose name starts with the root's
name (`/data/proj-evil` next to `/data/proj`), symlinks that lead out, and NUL bytes are all refused
before any notebook file is opened, created or written.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..errors import PathError

__all__ = ["confine", "relative_name"]


def confine(root: Path, user_path: str, *, suffix: str = ".ipynb") -> Path:
    """The absolute path of `user_path` inside `root`, or PathError saying why it is refused."""
    if "\x00" in user_path:
        raise PathError(user_path, "it contains a NUL byte")
    if not user_path.strip():
        raise PathError(user_path, "it is empty")
    parts = PurePosixPath(user_path.replace("\\", "/")).parts
    if ".." in parts:
        raise PathError(user_path, "'..' is not allowed; give a path inside the served folder")
    if suffix and not user_path.endswith(suffix):
        raise PathError(user_path, f"only {suffix} files are served")
    root_real = os.path.realpath(root)
    candidate = Path(user_path)
    if not candidate.is_absolute():
        candidate = Path(root_real) / candidate
    # String check first (no file system access), then the real path, which follows symlinks.
    for path in (os.path.normpath(candidate), os.path.realpath(candidate)):
        if os.path.commonpath([root_real, path]) != root_real:
            raise PathError(user_path, f"it is outside the served folder {root_real}")
    return Path(os.path.normpath(candidate))


def relative_name(root: Path, path: Path) -> str:
    """How a served notebook is named to clients: its path relative to the root."""
    return os.path.relpath(path, os.path.realpath(root))
