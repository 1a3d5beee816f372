"""Where a labels store keeps its pixels: the chunk grid, chunk files, and decoding them.

A store's array is chunked by plane: one chunk per 2D plane up to :data:`MAX_CHUNK` pixels a
side, larger planes in tiles of :data:`MAX_CHUNK` x :data:`MAX_CHUNK` (so that blocks of a
large plane can be written apart, and a small edit rewrites one tile, not the plane).
Chunk files follow zarr v3's default key encoding: ``c/<i0>/<i1>/.../<iy>/<ix>``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["ChunkLayout", "MAX_CHUNK", "default_chunks"]

#: Planes up to this many pixels a side are one chunk; larger ones are tiled.
MAX_CHUNK = 2048

Chunk = tuple[int, ...]
Region = tuple[slice, slice]


def default_chunks(shape: tuple[int, ...], tile: int | None = None) -> tuple[int, ...]:
    """The chunk shape of a new store: ``(1, ..., 1, ch, cw)``."""
    tile = int(tile or MAX_CHUNK)
    if tile < 16:
        raise ValueError(f"chunk tiles must be at least 16 pixels a side, got {tile}")
    h, w = shape[-2:]
    return (1,) * (len(shape) - 2) + (min(h, tile), min(w, tile))


def _plain(metadata: bytes) -> bool:
    """Whether the chunk files are where :meth:`ChunkLayout.path` says, one per chunk, a
    missing one holding only background: zarr v3, default ``/`` keys, fill value 0, no
    sharding."""
    import json

    try:
        meta = json.loads(metadata)
        keys = meta.get("chunk_key_encoding") or {}
        return (meta.get("zarr_format") == 3 and keys.get("name") == "default"
                and (keys.get("configuration") or {}).get("separator", "/") == "/"
                and meta.get("fill_value") == 0 and not meta.get("storage_transformers")
                and all(c.get("name") != "sharding_indexed" for c in meta.get("codecs", [])))
    except (ValueError, AttributeError, TypeError):
        return False


class ChunkLayout:
    """The chunk grid of one store, its chunk files, and a decoder of chunk bytes.

    Parameters
    ----------
    root : path
        The store folder.
    shape, chunks : tuple of int
        The array's shape and chunk shape (chunks of 1 along every leading axis).
    metadata : bytes
        The array's ``zarr.json`` (used to decode chunk bytes exactly as zarr would).
    """

    def __init__(self, root: str | Path, shape: tuple[int, ...], chunks: tuple[int, ...],
                 metadata: bytes) -> None:
        self.root = Path(root)
        self.shape, self.chunks = tuple(shape), tuple(chunks)
        if any(c != 1 for c in self.chunks[:-2]):
            raise ValueError(f"chunks {self.chunks} span several planes; a labels store has "
                             "chunks of one plane")
        self.tile = self.chunks[-2:]
        self.grid = (math.ceil(self.shape[-2] / self.tile[0]),
                     math.ceil(self.shape[-1] / self.tile[1]))
        self._metadata = metadata
        self.plain = _plain(metadata)

    def plane_chunks(self, key: tuple[int, ...]) -> Iterator[tuple[Chunk, Region]]:
        """``(chunk index, (rows, cols) of the plane)`` for every chunk of plane ``key``."""
        for iy in range(self.grid[0]):
            for ix in range(self.grid[1]):
                chunk = tuple(key) + (iy, ix)
                yield chunk, self.region(chunk)[1]

    def region(self, chunk: Chunk) -> tuple[tuple[int, ...], Region]:
        """The plane key and the plane region of a chunk index."""
        key, (iy, ix) = tuple(chunk[:-2]), chunk[-2:]
        (th, tw), (h, w) = self.tile, self.shape[-2:]
        return key, (slice(iy * th, min(h, (iy + 1) * th)), slice(ix * tw, min(w, (ix + 1) * tw)))

    def block_shape(self, chunk: Chunk) -> tuple[int, int]:
        _, (ys, xs) = self.region(chunk)
        return ys.stop - ys.start, xs.stop - xs.start

    def path(self, chunk: Chunk) -> Path:
        """The chunk's file (it exists only when the chunk holds a non-zero pixel)."""
        return self.root.joinpath("c", *(str(int(i)) for i in chunk))

    def decode(self, data: bytes, chunk: Chunk) -> np.ndarray:
        """A chunk file's bytes as its ``(h, w)`` uint32 block."""
        import zarr
        from zarr.core.buffer import cpu
        from zarr.storage import MemoryStore

        key = "c/" + "/".join(str(int(i)) for i in chunk)
        store = MemoryStore({"zarr.json": cpu.Buffer.from_bytes(self._metadata),
                             key: cpu.Buffer.from_bytes(data)})
        arr = zarr.open_array(store, mode="r")
        plane, (ys, xs) = self.region(chunk)
        return np.asarray(arr[plane + (ys, xs)], dtype=np.uint32)

    def partial_files(self) -> list[Path]:
        """Temporary files a killed writer left (zarr writes ``<name>.<uuid>.partial``)."""
        found = list(self.root.glob("*.partial"))
        chunks = self.root / "c"
        if chunks.is_dir():
            found += list(chunks.rglob("*.partial"))
        return found

    def __repr__(self) -> str:
        return f"<ChunkLayout {self.shape} chunks={self.chunks}>"

