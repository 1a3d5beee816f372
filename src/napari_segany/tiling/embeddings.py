"""Tiled embeddings: each tile window of each plane embedded on first use, optionally cached.

See :mod:`napari_segany.tiling` for how the tiles array is cached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .._planes import check_plane, iter_keys
from ..engine.base import Backend, Embedding
from ..intensity import Normalizer
from ..storage.cache import EmbeddingCache
from ..storage.embeddings import EmbeddingLRU
from .grid import Tile, TileGrid

__all__ = ["TiledEmbeddings"]


class _TileArray:
    """A lazy ``lead + (rows, cols, T_y, T_x[, C])`` view of an image cut into tile windows."""

    def __init__(self, data: Any, grid: TileGrid, lead: tuple[int, ...], rgb: bool) -> None:
        self.data, self.grid, self.lead, self.rgb = data, grid, lead, rgb
        tail = (int(data.shape[-1]),) if rgb else ()
        self.shape = lead + grid.shape + grid.tile_shape + tail
        self.ndim = len(self.shape)
        self.dtype = np.dtype(data.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        n = len(self.lead) + 2
        if len(key) < n or not all(isinstance(k, (int, np.integer)) for k in key[:n]):
            raise IndexError(f"index a tiles array with {n} integers (plane..., row, col) first")
        plane, (r, c), rest = tuple(int(k) for k in key[:n - 2]), key[n - 2:n], key[n:]
        ys, xs = self.grid[r, c].slices
        tile = np.asarray(self.data[plane + (ys, xs)])
        return tile[rest] if rest else tile


class TiledEmbeddings:
    """Lazily computed, optionally cached embeddings of the tiles of every plane.

    Parameters
    ----------
    image : array-like
        ``(..., H, W)``, or ``(..., H, W, C)`` with ``rgb=True``; read one tile window at a time.
    backend : Backend
    normalizer : Normalizer, optional
        Intensity mapping (fitted once on the whole image when omitted). It is applied to
        each window; the mapping is per pixel, so a window maps as in the whole plane.
    rgb : bool
    tile : int, optional
        Window side; default ``backend.image_size`` (the model's natural input).
    halo : int, optional
        Minimum overlap margin; default ``tile // 8``.
    cache : path, optional
        Folder of an :class:`~napari_segany.cache.EmbeddingCache` over the tiles array (see the
        module notes); created or reopened.
    max_in_memory : int
        Tile embeddings kept in memory (least recently used are dropped).
    cache_dtype : {"float16", "float32"}
        Storage precision of a new on-disk cache.
    """

    def __init__(self, image: Any, backend: Backend, *, normalizer: Normalizer | None = None,
                 rgb: bool = False, tile: int | None = None, halo: int | None = None,
                 cache: Any = None, max_in_memory: int = 4, cache_dtype: str = "float16") -> None:
        self.image, self.backend, self.rgb = image, backend, bool(rgb)
        shape = tuple(int(s) for s in (image.shape[:-1] if rgb else image.shape))
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"need an image with 2 or more non-empty axes, got {image.shape}")
        self.lead_shape, self.plane_shape = shape[:-2], shape[-2:]
        self.normalizer = normalizer or Normalizer.fit(image, rgb=rgb)
        tile = int(tile or getattr(backend, "image_size", 1024))
        self.grid = TileGrid(self.plane_shape, tile=tile, halo=tile // 8 if halo is None
                             else int(halo))
        self.tiles_array = _TileArray(image, self.grid, self.lead_shape, self.rgb)
        self.cache = None
        if cache is not None:
            self.cache = EmbeddingCache(cache, backend=backend, normalizer=self.normalizer,
                                        data=self.tiles_array, rgb=self.rgb,
                                        tiling=self.grid.tiling, dtype=cache_dtype)
        self._lru = EmbeddingLRU(self._compute, cache=self.cache, max_items=max_in_memory)

    @classmethod
    def from_session(cls, session: Any, *, tile: int | None = None, halo: int | None = None,
                     cache: Any = None, **kw: Any) -> TiledEmbeddings:
        """Tiled embeddings of a :class:`~napari_segany.session.Session`'s image and model."""
        return cls(session.image, session.backend, normalizer=session.normalizer,
                   rgb=session.rgb, tile=tile, halo=halo, cache=cache, **kw)

    @property
    def tiling(self) -> dict[str, Any]:
        return self.grid.tiling

    @property
    def stats(self) -> dict[str, int]:
        """``computed`` (tile embeddings the backend computed) and ``loaded`` (from disk)."""
        return self._lru.stats

    def plane_key(self, plane: Any) -> tuple[int, ...]:
        """The key of an existing plane (ValueError otherwise)."""
        return check_plane(plane, self.lead_shape)

    def _key(self, plane: Any, tile: Tile | tuple[int, int]) -> tuple[tuple[int, ...], Tile]:
        t = tile if isinstance(tile, Tile) else self.grid[tile]
        return self.plane_key(plane), t

    def _compute(self, full: tuple[int, ...]) -> Embedding:
        return self.backend.embed(self.normalizer(np.asarray(self.tiles_array[full])))

    def tile_rgb(self, plane: Any, tile: Tile | tuple[int, int]) -> np.ndarray:
        """The ``(T_y, T_x, 3)`` uint8 window the model sees."""
        key, t = self._key(plane, tile)
        return self.normalizer(np.asarray(self.tiles_array[key + t.index]))

    def get(self, plane: Any, tile: Tile | tuple[int, int]) -> Embedding:
        """The embedding of one tile window of one plane (computed once, then reused)."""
        key, t = self._key(plane, tile)
        return self._lru.get(key + t.index)

    def precompute(self, planes: Iterable[Any] | None = None, *,
                   progress: Callable[[int, int], Any] | None = None, cancel: Any = None) -> int:
        """Embed every tile of every plane (or of ``planes``) into the on-disk cache."""
        if self.cache is None:
            raise ValueError("precompute needs an on-disk cache: pass cache=PATH")
        keys = list(iter_keys(self.lead_shape)) if planes is None else [
            self.plane_key(p) for p in planes]
        return self.cache.precompute([k + t.index for k in keys for t in self.grid],
                                     progress=progress, cancel=cancel)

    def __repr__(self) -> str:
        return f"<TiledEmbeddings {self.grid!r} cache={self.cache.path if self.cache else None}>"
