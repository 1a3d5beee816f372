"""Tiled embeddings and prompt routing for planes larger than the model's input.

A model sees its square input (1024 px for the real SAM/SAM2 models); a larger plane would be
shrunk to fit and small objects lost. Large planes are therefore cut into overlapping square
*windows* of the model's natural size, each embedded on its own, lazily, when first needed.

Geometry (:class:`TileGrid`)
----------------------------
Along each axis of length ``L`` windows of ``T = min(tile, L)`` pixels start at evenly spaced
positions from 0 to ``L - T`` with a stride of at most ``T - 2 * halo``, so neighbouring
windows overlap by at least ``2 * halo`` pixels. The *cores* partition the plane: the border
between two cores lies in the middle of their windows' overlap, so every core pixel is at
least ``halo`` pixels inside its window (except at the plane's edges). A plane no larger
than ``tile`` is one tile.

Prompt routing (:meth:`TileGrid.route`)
---------------------------------------
The extent of an object's prompts (its box, points and mask) is computed. If it fits in one
window, the object is segmented in the tile whose core holds most of it (ties: nearest core
centre). Otherwise (a box larger than a window, or points far apart) it is segmented in
every tile whose core meets the extent, with the prompts inside that window (the box clipped
to it); each piece is kept only inside its tile's core, and the pieces are joined.

Embeddings and caching (:class:`TiledEmbeddings`)
-------------------------------------------------
Tile embeddings are computed on first use and kept in a small in-memory LRU. With
``cache=PATH`` they are stored in an ordinary :class:`~napari_segany.cache.EmbeddingCache`
built over a virtual *tiles array* of shape ``lead + (rows, cols, T_y, T_x)``: each tile is
a "plane" keyed by ``plane + (row, col)``, and the cache signature records
``tiling={"scheme": "napari-segany.tiles", "version": 1, "tile": T, "halo": H}``. The same
folder thus resumes, is refused for other data, model, normalisation or tiling, and never
mixes with an untiled cache.

Stitching (:func:`stitch_tile_labels`)
--------------------------------------
Per-tile instance labels are cropped to the tile cores; objects on both sides of a core
border are joined when their masks agree (IoU >= ``min_iou``) in the overlap of the two
windows; where a tile saw background, an object of a neighbouring tile may extend into it,
so an object that one tile missed is not cut at the border.

The geometry and routing live in :mod:`._tiling_grid`, the stitching in
:mod:`._tiling_stitch`; their public names are re-exported here.

This module imports only numpy at import time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._tiling_grid import TILING_SCHEME, Tile, TileGrid
from ._tiling_stitch import stitch_tile_labels
from .prompts import ObjectPrompt

__all__ = ["Tile", "TileGrid", "TiledEmbeddings", "TiledSegmentation", "segment_tiled",
           "stitch_tile_labels", "TILING_SCHEME"]


# ----------------------------------------------------------------------------------- embeddings
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

    def __init__(self, image: Any, backend: Any, *, normalizer: Any = None, rgb: bool = False,
                 tile: int | None = None, halo: int | None = None, cache: Any = None,
                 max_in_memory: int = 4, cache_dtype: str = "float16") -> None:
        from .intensity import Normalizer

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
        self._memory: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._max = max(1, int(max_in_memory))
        self.stats = {"computed": 0, "loaded": 0}
        self.cache = None
        if cache is not None:
            from .cache import EmbeddingCache

            self.cache = EmbeddingCache(cache, backend=backend, normalizer=self.normalizer,
                                        data=self.tiles_array, rgb=self.rgb,
                                        tiling=self.grid.tiling, dtype=cache_dtype)

    @classmethod
    def from_session(cls, session: Any, *, tile: int | None = None, halo: int | None = None,
                     cache: Any = None, **kw: Any) -> TiledEmbeddings:
        """Tiled embeddings of a :class:`~napari_segany.session.Session`'s image and model."""
        return cls(session.image, session.backend, normalizer=session.normalizer,
                   rgb=session.rgb, tile=tile, halo=halo, cache=cache, **kw)

    @property
    def tiling(self) -> dict[str, Any]:
        return self.grid.tiling

    def _key(self, plane: Any, tile: Tile | tuple[int, int]) -> tuple[tuple[int, ...], Tile]:
        key = () if plane is None else ((int(plane),) if np.isscalar(plane) else
                                        tuple(int(k) for k in plane))
        lead = self.lead_shape
        if len(key) != len(lead) or any(not 0 <= k < n for k, n in zip(key, lead, strict=True)):
            raise ValueError(f"plane {key} does not exist: the image has leading axes {lead}")
        t = tile if isinstance(tile, Tile) else self.grid[tile]
        return key, t

    def tile_rgb(self, plane: Any, tile: Tile | tuple[int, int]) -> np.ndarray:
        """The ``(T_y, T_x, 3)`` uint8 window the model sees."""
        key, t = self._key(plane, tile)
        return self.normalizer(np.asarray(self.tiles_array[key + t.index]))

    def get(self, plane: Any, tile: Tile | tuple[int, int]) -> Any:
        """The embedding of one tile window of one plane (computed once, then reused)."""
        key, t = self._key(plane, tile)
        full = key + t.index
        if full in self._memory:
            self._memory.move_to_end(full)
            return self._memory[full]
        if self.cache is not None:
            before = dict(self.cache.stats)
            emb = self.cache.get(full)
            for k in self.stats:
                self.stats[k] += self.cache.stats[k] - before[k]
        else:
            emb = self.backend.embed(self.tile_rgb(key, t))
            self.stats["computed"] += 1
        self._memory[full] = emb
        while len(self._memory) > self._max:
            self._memory.popitem(last=False)
        return emb

    def precompute(self, planes: Iterable[Any] | None = None, *,
                   progress: Callable[[int, int], Any] | None = None, cancel: Any = None) -> int:
        """Embed every tile of every plane (or of ``planes``) into the on-disk cache."""
        if self.cache is None:
            raise ValueError("precompute needs an on-disk cache: pass cache=PATH")
        keys = list(np.ndindex(*self.lead_shape)) if planes is None else [
            self._key(p, (0, 0))[0] for p in planes]
        return self.cache.precompute([k + t.index for k in keys for t in self.grid],
                                     progress=progress, cancel=cancel)

    def __repr__(self) -> str:
        return f"<TiledEmbeddings {self.grid!r} cache={self.cache.path if self.cache else None}>"


# ----------------------------------------------------------------------------------- prompting
@dataclass
class TiledSegmentation:
    """The mask of one object on one tiled plane."""

    plane: tuple[int, ...]
    obj_id: int
    mask: np.ndarray  # (H, W) bool, whole plane
    score: float
    tiles: list[tuple[int, int]]


def segment_tiled(
    tiled: TiledEmbeddings,
    prompts: dict[int, ObjectPrompt] | ObjectPrompt,
    plane: Any = None,
    *,
    multimask: bool = True,
    chunk_size: int = 64,
) -> dict[int, TiledSegmentation]:
    """Segment prompted objects on a tiled plane (prompts in whole-plane pixel coordinates).

    Each object is routed (:meth:`TileGrid.route`); objects routed to the same tile are decoded
    together, ``chunk_size`` per decoder call. A split object's score is the area-weighted
    mean of its pieces' scores.

    Returns
    -------
    dict
        object id -> :class:`TiledSegmentation` with a whole-plane ``(H, W)`` bool mask.
    """
    objects = {1: prompts} if isinstance(prompts, ObjectPrompt) else dict(prompts)
    if not objects:
        raise ValueError("no prompts to segment")
    key, _ = tiled._key(plane, (0, 0))
    h, w = tiled.plane_shape
    masks = {oid: np.zeros((h, w), bool) for oid in objects}
    weights: dict[int, list[tuple[float, int]]] = {oid: [] for oid in objects}
    used: dict[int, list[tuple[int, int]]] = {oid: [] for oid in objects}
    for tile, jobs in _group_by_tile(objects, tiled.grid).items():
        emb = tiled.get(key, tile)
        for start in range(0, len(jobs), int(chunk_size)):
            chunk = jobs[start:start + int(chunk_size)]
            pred = tiled.backend.predict(emb, [p for _, p, _ in chunk], multimask=multimask)
            best, scores, _ = pred.best()
            for (oid, _, clip), m, s in zip(chunk, best, scores, strict=True):
                piece = _restrict(m, tile) if clip else m
                ys, xs = tile.slices
                masks[oid][ys, xs] |= piece
                weights[oid].append((float(s), int(piece.sum())))
                used[oid].append(tile.index)
    out = {}
    for oid in objects:
        ws = weights[oid]
        total = sum(a for _, a in ws)
        score = (sum(s * a for s, a in ws) / total) if total else float(np.mean([s for s, _ in ws]))
        out[oid] = TiledSegmentation(key, oid, masks[oid], float(score), used[oid])
    return out


def _group_by_tile(objects: dict[int, ObjectPrompt], grid: TileGrid
                   ) -> dict[Tile, list[tuple[int, ObjectPrompt, bool]]]:
    groups: dict[Tile, list[tuple[int, ObjectPrompt, bool]]] = {}
    for oid, p in objects.items():
        for tile, local, clip in grid.route(p):
            groups.setdefault(tile, []).append((oid, local, clip))
    return groups


def _restrict(mask: np.ndarray, tile: Tile) -> np.ndarray:
    """A window-sized mask kept only inside the tile's core."""
    out = np.zeros_like(mask)
    cy, cx = tile.core_in_window
    out[cy, cx] = mask[cy, cx]
    return out
