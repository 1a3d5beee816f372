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

This module imports only numpy at import time.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .prompts import ObjectPrompt

__all__ = ["Tile", "TileGrid", "TiledEmbeddings", "TiledSegmentation", "segment_tiled",
           "stitch_tile_labels", "TILING_SCHEME"]

TILING_SCHEME = "napari-segany.tiles"


# ----------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TileGrid`.

    Attributes
    ----------
    row, col : int
        Position in the grid.
    window : (y0, y1, x0, x1)
        The region embedded (end exclusive), in plane pixels.
    core : (y0, y1, x0, x1)
        The region this tile owns; cores partition the plane.
    """

    row: int
    col: int
    window: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def index(self) -> tuple[int, int]:
        return self.row, self.col

    @property
    def slices(self) -> tuple[slice, slice]:
        """Slices of the window in plane coordinates."""
        y0, y1, x0, x1 = self.window
        return slice(y0, y1), slice(x0, x1)

    @property
    def core_slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.core
        return slice(y0, y1), slice(x0, x1)

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """Slices of the core in window coordinates."""
        y0, y1, x0, x1 = self.core
        return slice(y0 - self.window[0], y1 - self.window[0]), slice(
            x0 - self.window[2], x1 - self.window[2])

    @property
    def shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.window
        return y1 - y0, x1 - x0


def _axis_tiles(length: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``[(window_start, window_end, core_start, core_end), ...]`` along one axis."""
    size = min(tile, length)
    if length <= tile:
        return [(0, length, 0, length)]
    stride = tile - 2 * halo
    n = math.ceil((length - size) / stride) + 1
    starts = np.round(np.linspace(0, length - size, n)).astype(int).tolist()
    bounds = [0] + [(starts[i + 1] + starts[i] + size) // 2 for i in range(n - 1)] + [length]
    return [(s, s + size, bounds[i], bounds[i + 1]) for i, s in enumerate(starts)]


class TileGrid:
    """Overlapping square windows over a ``(H, W)`` plane and the cores partitioning it.

    Parameters
    ----------
    plane_shape : (H, W)
    tile : int
        Window side in pixels (typically the model's input size: ``backend.image_size``).
    halo : int
        Minimum margin between a core and its window's edge; ``0 <= halo < tile / 2``.
    """

    def __init__(self, plane_shape: tuple[int, int], *, tile: int, halo: int) -> None:
        h, w = (int(s) for s in plane_shape)
        tile, halo = int(tile), int(halo)
        if h < 1 or w < 1:
            raise ValueError(f"cannot tile an empty plane of shape {(h, w)}")
        if tile < 16:
            raise ValueError(f"tile size must be at least 16 pixels, got {tile}")
        if not 0 <= 2 * halo < tile:
            raise ValueError(f"halo must satisfy 0 <= halo < tile / 2 (tile {tile}), got {halo}")
        self.plane_shape, self.tile, self.halo = (h, w), tile, halo
        rows, cols = _axis_tiles(h, tile, halo), _axis_tiles(w, tile, halo)
        self.shape = (len(rows), len(cols))
        self.tile_shape = (rows[0][1] - rows[0][0], cols[0][1] - cols[0][0])
        self.tiles = [Tile(r, c, (ry[0], ry[1], cx[0], cx[1]), (ry[2], ry[3], cx[2], cx[3]))
                      for r, ry in enumerate(rows) for c, cx in enumerate(cols)]
        self._row_bounds = np.array([ry[3] for ry in rows])
        self._col_bounds = np.array([cx[3] for cx in cols])

    @property
    def tiling(self) -> dict[str, Any]:
        """The JSON description recorded in cache signatures and provenance."""
        return {"scheme": TILING_SCHEME, "version": 1, "tile": self.tile, "halo": self.halo}

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    def __getitem__(self, index: tuple[int, int]) -> Tile:
        r, c = (int(i) for i in index)
        if not (0 <= r < self.shape[0] and 0 <= c < self.shape[1]):
            raise IndexError(f"tile {(r, c)} does not exist in a {self.shape} grid")
        return self.tiles[r * self.shape[1] + c]

    def tile_at(self, y: float, x: float) -> Tile:
        """The tile whose core contains pixel ``(y, x)`` (rounded, clipped to the plane)."""
        h, w = self.plane_shape
        yi = min(max(int(math.floor(y + 0.5)), 0), h - 1)
        xi = min(max(int(math.floor(x + 0.5)), 0), w - 1)
        r = int(np.searchsorted(self._row_bounds, yi, side="right"))
        c = int(np.searchsorted(self._col_bounds, xi, side="right"))
        return self[r, c]

    def __repr__(self) -> str:
        return (f"<TileGrid {self.plane_shape[0]}x{self.plane_shape[1]} -> {self.shape[0]}x"
                f"{self.shape[1]} tiles of {self.tile_shape}, halo {self.halo}>")

    # -- prompt routing ------------------------------------------------------------------------
    def route(self, prompt: ObjectPrompt) -> list[tuple[Tile, ObjectPrompt, bool]]:
        """Where to segment one object: ``[(tile, prompt in window coordinates, clip), ...]``.

        ``clip`` is True when the object was split over several tiles: the piece predicted in
        a tile must then be kept only inside that tile's core.
        """
        ext = _extent(prompt, self.plane_shape)
        if ext is None:
            raise ValueError("cannot route an empty prompt: give points, a box or a mask")
        y0, y1, x0, x1 = ext
        fits = [t for t in self.tiles if t.window[0] <= y0 and y1 <= t.window[1]
                and t.window[2] <= x0 and x1 <= t.window[3]]
        if fits:
            cy, cx = (y0 + y1) / 2, (x0 + x1) / 2

            def rank(t: Tile) -> tuple[float, float]:
                inter = _overlap(t.core, ext)
                ty, tx = (t.core[0] + t.core[1]) / 2, (t.core[2] + t.core[3]) / 2
                return -inter, (ty - cy) ** 2 + (tx - cx) ** 2

            best = min(fits, key=rank)
            return [(best, _localize(prompt, best), False)]
        out = []
        for t in self.tiles:
            if _overlap(t.core, ext) == 0:
                continue
            local = _localize(prompt, t, partial=True)
            if local is not None:
                out.append((t, local, True))
        if not out:  # pragma: no cover - the cores partition the plane
            raise ValueError("the prompt's extent meets no tile core")
        return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    dy = min(a[1], b[1]) - max(a[0], b[0])
    dx = min(a[3], b[3]) - max(a[2], b[2])
    return max(dy, 0) * max(dx, 0)


def _extent(p: ObjectPrompt, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Pixel bounding box ``(y0, y1, x0, x1)`` (end exclusive) of a prompt's parts."""
    h, w = shape
    ys: list[float] = []
    xs: list[float] = []
    if len(p.points):
        xs += p.points[:, 0].tolist()
        ys += p.points[:, 1].tolist()
    if p.box is not None:
        xs += [p.box[0], p.box[2]]
        ys += [p.box[1], p.box[3]]
    if p.mask is not None:
        m = np.asarray(p.mask)
        if m.dtype != bool or m.shape != (h, w):
            raise ValueError("a tiled plane takes mask prompts only as bool (H, W) masks of the "
                             f"whole plane {(h, w)}, not logits of shape {m.shape}")
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if rows.size:
            ys += [rows[0], rows[-1]]
            xs += [cols[0], cols[-1]]
    if not ys:
        return None
    y0 = min(max(int(math.floor(min(ys) + 0.5)), 0), h - 1)
    y1 = min(max(int(math.floor(max(ys) + 0.5)), 0), h - 1) + 1
    x0 = min(max(int(math.floor(min(xs) + 0.5)), 0), w - 1)
    x1 = min(max(int(math.floor(max(xs) + 0.5)), 0), w - 1) + 1
    return y0, y1, x0, x1


def _localize(p: ObjectPrompt, t: Tile, *, partial: bool = False) -> ObjectPrompt | None:
    """The prompt in window coordinates; with ``partial`` only its parts inside the window."""
    wy0, wy1, wx0, wx1 = t.window
    th, tw = wy1 - wy0, wx1 - wx0
    pts = p.points - [wx0, wy0]
    labels = p.labels
    if partial:
        inside = ((pts[:, 0] >= -0.5) & (pts[:, 0] <= tw - 0.5) & (pts[:, 1] >= -0.5)
                  & (pts[:, 1] <= th - 0.5))
        pts, labels = pts[inside], labels[inside]
    box = None
    if p.box is not None:
        b = p.box - [wx0, wy0, wx0, wy0]
        box = np.clip(b, 0.0, [tw - 1.0, th - 1.0] * 2)
        if box[2] <= box[0] or box[3] <= box[1]:
            box = None  # the box misses this window (or only grazes its edge)
    mask = None
    if p.mask is not None:
        mask = np.asarray(p.mask)[wy0:wy1, wx0:wx1]
        if partial and not mask.any():
            mask = None
    if partial and not (np.any(labels == 1) or box is not None or mask is not None):
        return None
    return ObjectPrompt(points=pts, labels=labels, box=box, mask=mask)


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


# ----------------------------------------------------------------------------------- stitching
def stitch_tile_labels(grid: TileGrid, tile_labels: dict[tuple[int, int], np.ndarray], *,
                       min_iou: float = 0.5) -> np.ndarray:
    """Join per-tile instance labels into one ``(H, W)`` uint32 plane without cut objects.

    Parameters
    ----------
    grid : TileGrid
    tile_labels : dict
        ``(row, col)`` -> window-sized integer labels (0 background) for every tile.
    min_iou : float
        Two objects of neighbouring tiles are the same object when their masks restricted
        to the overlap of the two windows have at least this IoU.

    Returns
    -------
    np.ndarray
        ``(H, W)`` uint32 labels, ids ``1..N`` ordered by tile (row-major), then by the
        tile's own ids.

    Notes
    -----
    1. Each tile's labels are cropped to its core (cores partition the plane).
    2. Objects of any two tiles whose windows overlap are joined (union-find) when their
       masks in the overlap have IoU >= ``min_iou``.
    3. Core pixels that their own tile left as background take the object of an overlapping
       tile's window there, if that object has core pixels (an object missed by one tile
       is completed from its neighbour instead of being cut at the core border).
    """
    h, w = grid.plane_shape
    offsets: dict[tuple[int, int], int] = {}
    total = 0
    for t in grid:
        lab = np.asarray(tile_labels[t.index])
        if lab.shape != t.shape:
            raise ValueError(f"labels of tile {t.index} have shape {lab.shape}, the window "
                             f"is {t.shape}")
        offsets[t.index] = total
        total += int(lab.max()) if lab.size else 0
    parent = np.arange(total + 1)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    # 2. join objects that agree in the overlap of two windows
    tiles = list(grid)
    for i, a in enumerate(tiles):
        for b in tiles[i + 1:]:
            oy0, oy1 = max(a.window[0], b.window[0]), min(a.window[1], b.window[1])
            ox0, ox1 = max(a.window[2], b.window[2]), min(a.window[3], b.window[3])
            if oy1 <= oy0 or ox1 <= ox0:
                continue
            la = _window_part(tile_labels[a.index], a, oy0, oy1, ox0, ox1)
            lb = _window_part(tile_labels[b.index], b, oy0, oy1, ox0, ox1)
            for ia, ib in _iou_pairs(la, lb, min_iou):
                ra, rb = find(offsets[a.index] + ia), find(offsets[b.index] + ib)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    # 1. cores
    out = np.zeros((h, w), np.uint32)
    for t in grid:
        lab = np.asarray(tile_labels[t.index]).astype(np.int64)
        core = lab[t.core_in_window]
        out[t.core_slices] = np.where(core > 0, core + offsets[t.index], 0)
    # 3. complete objects where the owning tile saw background
    present = np.bincount(out.ravel(), minlength=total + 1) > 0
    present[0] = False
    for t in grid:
        lab = np.asarray(tile_labels[t.index]).astype(np.int64)
        ys, xs = t.slices
        view = out[ys, xs]
        glob = np.where(lab > 0, lab + offsets[t.index], 0)
        fill = (view == 0) & present[glob]
        view[fill] = glob[fill]
    roots = np.array([find(i) for i in range(total + 1)], np.int64)
    used = np.zeros(total + 1, bool)
    used[roots[np.flatnonzero(np.bincount(out.ravel(), minlength=total + 1))]] = True
    used[0] = False
    lut = np.zeros(total + 1, np.uint32)
    lut[used] = np.arange(1, int(used.sum()) + 1, dtype=np.uint32)
    return lut[roots][out]


def _window_part(lab: np.ndarray, t: Tile, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    return np.asarray(lab)[y0 - t.window[0]:y1 - t.window[0], x0 - t.window[2]:x1 - t.window[2]]


def _iou_pairs(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """Pairs of ids (both > 0) of two label images of one region with IoU >= min_iou."""
    a = a.astype(np.int64).ravel()
    b = b.astype(np.int64).ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        return []
    nb = int(b.max()) + 1
    codes, inter = np.unique(a[both] * nb + b[both], return_counts=True)
    pairs = np.stack([codes // nb, codes % nb])
    area_a = np.bincount(a, minlength=int(a.max()) + 1)
    area_b = np.bincount(b, minlength=int(b.max()) + 1)
    union = area_a[pairs[0]] + area_b[pairs[1]] - inter
    keep = inter / union >= min_iou
    return [(int(i), int(j)) for i, j in pairs[:, keep].T]
