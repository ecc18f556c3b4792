"""How the scheduler notices that a file it reads (TLS material, the auth file) changed."""

from __future__ import annotations

import os
from pathlib import Path

Stamp = tuple[int, int, int]


def stamp(path: Path) -> Stamp | None:
    """(mtime ns, size, inode) of `path`, None when it cannot be read: a rewrite in place changes
    mtime or size, a replace-by-rename (how rotation tools write) changes the inode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino
