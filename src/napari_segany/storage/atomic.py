"""Writing a file or folder whole or not at all: write a temporary sibling, then rename.

Every writer of a finished artefact (exports, the napari writer) goes through
:func:`replacing`: the new content is written under a hidden temporary name next to the
target and renamed over it only when complete. A failure or interruption removes the
temporary and leaves an existing target as it was. A file replaces its target in one
atomic rename; a folder first moves the old folder aside (a second rename), so the
target is never missing for longer than between those two renames.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

__all__ = ["replacing", "remove"]


def remove(path: str | os.PathLike) -> None:
    """Remove a file, link or folder tree if it exists."""
    p = Path(path)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` when the block succeeds."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    remove(tmp)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(OSError):
            remove(tmp)
        raise
    if (path.exists() or path.is_symlink()) and (path.is_dir() or tmp.is_dir()):
        old = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        remove(old)
        os.replace(path, old)
        os.replace(tmp, path)
        remove(old)
    else:
        os.replace(tmp, path)
