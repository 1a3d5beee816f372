"""Before- and after-images of the chunks an operation changed, kept to undo it pixel-wise.

When an operation changes a chunk for the first time, the chunk file as it was is kept
under ``.segany/journal/<operation>/<chunk>.b``. zarr replaces a chunk by writing a new
file and renaming it over the old one, so keeping the old file is a hard link: no bytes
are copied, and the old data stay on disk only as long as the journal needs them. After
each write the chunk's new file is linked as ``<chunk>.a`` (the state the operation left).
A chunk that held only background has no file: ``<chunk>.b0`` / ``<chunk>.a0`` mark that.
Where hard links are not supported the files are copied.

:func:`revert_pixels` is the undo rule: a pixel goes back to its before-value only if it
still holds the operation's after-value; pixels changed since by anything else stay.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Journal", "revert_pixels"]


def _chunk_name(chunk: tuple[int, ...]) -> str:
    return ".".join(str(int(i)) for i in chunk)


def _keep(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where links are not supported)."""
    with contextlib.suppress(FileNotFoundError):
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


class Journal:
    """The journal folder of one labels store.

    Parameters
    ----------
    folder : path
        ``.segany/journal`` of the store.
    chunk_path : callable
        ``chunk_path(chunk) -> Path``: the chunk file of chunk index ``chunk``.
    decode : callable
        ``decode(data: bytes, chunk) -> np.ndarray``: a chunk file's bytes as the chunk's
        uint32 block (as zarr would read it).
    block_shape : callable
        ``block_shape(chunk) -> tuple``: the shape of the chunk's block (edge chunks are
        cut to the array).
    """

    def __init__(self, folder: str | os.PathLike, *, chunk_path: Any, decode: Any,
                 block_shape: Any) -> None:
        self.folder = Path(folder)
        self.chunk_path, self.decode, self.block_shape = chunk_path, decode, block_shape

    def _op(self, op_id: str) -> Path:
        return self.folder / op_id

    def keep(self, op_id: str, chunk: tuple[int, ...], which: str) -> None:
        """Keep the chunk's current file as its ``which`` ("b" before, "a" after) image."""
        folder = self._op(op_id)
        folder.mkdir(parents=True, exist_ok=True)
        name = _chunk_name(chunk)
        src = self.chunk_path(chunk)
        for stale in (folder / f"{name}.{which}", folder / f"{name}.{which}0"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        if src.exists():
            _keep(src, folder / f"{name}.{which}")
        else:
            (folder / f"{name}.{which}0").touch()

    def file(self, op_id: str, chunk: tuple[int, ...], which: str) -> Path:
        """The file that keeps the chunk's ``which`` image (when the chunk had a file)."""
        return self._op(op_id) / f"{_chunk_name(chunk)}.{which}"

    def has(self, op_id: str, chunk: tuple[int, ...], which: str) -> bool:
        folder, name = self._op(op_id), _chunk_name(chunk)
        return (folder / f"{name}.{which}").exists() or (folder / f"{name}.{which}0").exists()

    def image(self, op_id: str, chunk: tuple[int, ...], which: str) -> np.ndarray:
        """The kept block (zeros for a chunk that held only background)."""
        folder, name = self._op(op_id), _chunk_name(chunk)
        path = folder / f"{name}.{which}"
        if path.exists():
            return self.decode(path.read_bytes(), chunk)
        if (folder / f"{name}.{which}0").exists():
            return np.zeros(self.block_shape(chunk), np.uint32)
        raise FileNotFoundError(f"the journal of operation {op_id} has no {which!r} image of "
                                f"chunk {chunk}")

    def current(self, chunk: tuple[int, ...]) -> np.ndarray:
        """The chunk as it is in the store now."""
        path = self.chunk_path(chunk)
        if path.exists():
            return self.decode(path.read_bytes(), chunk)
        return np.zeros(self.block_shape(chunk), np.uint32)

    def held_bytes(self) -> dict[str, int]:
        """Bytes that only the journal keeps alive, per operation.

        An old chunk file replaced in the store lives on through its journal links; its
        size counts once, for the operation that kept it first (its before-image).
        Files still linked from the store cost nothing.
        """
        inodes: dict[int, list] = {}
        if not self.folder.is_dir():
            return {}
        for op_dir in self.folder.iterdir():
            if not op_dir.is_dir():
                continue
            for f in op_dir.iterdir():
                with contextlib.suppress(OSError):
                    st = f.stat()
                    entry = inodes.setdefault(st.st_ino, [st.st_nlink, st.st_size, 0, []])
                    entry[2] += 1
                    entry[3].append((f.suffix != ".b", op_dir.name))
        held: dict[str, int] = {}
        for nlink, size, refs, owners in inodes.values():
            if refs >= nlink and size:  # no link from the store: only the journal keeps it
                owner = min(owners)[1]  # a before-image first
                held[owner] = held.get(owner, 0) + size
        return held

    def drop(self, op_id: str) -> None:
        """Remove an operation's images (it can no longer be undone)."""
        shutil.rmtree(self._op(op_id), ignore_errors=True)


def revert_pixels(current: np.ndarray, before: np.ndarray, after: np.ndarray
                  ) -> tuple[np.ndarray, int, int]:
    """Undo one operation on one block: ``(new block, pixels reverted, pixels kept)``.

    A pixel the operation changed (``before != after``) returns to ``before`` when it still
    holds ``after``; one that holds anything else was changed since and is kept.
    """
    changed = before != after
    ours = changed & (current == after)
    new = current.copy()
    new[ours] = before[ours]
    return new, int(np.count_nonzero(ours)), int(np.count_nonzero(changed & ~ours))
