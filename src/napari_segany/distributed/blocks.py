"""Blocks of one large plane or volume: tiles, output chunks, global ids, and the per-region
rules that make a block run equal the single-process tiled run.

Geometry (:class:`BlockPlan`)
-----------------------------
Every plane is cut by the same :class:`~napari_segany.tiling.TileGrid` as the
single-process tiled run (windows of the model's input size overlapping by at least
``2 * halo``; cores partitioning the plane). A *block* is one tile window of one plane:
it is read, embedded, segmented and forgotten by one task (embedding and segmentation
fused, nothing cached). The output store is cut into its own chunks (2048 x 2048 by
default); every chunk is rewritten by exactly one task.

Ids during the run
------------------
An object of block ``b`` (plane ``p``, tile ``t``) with the block's own id ``i`` has the
global id ``gid = (p * n_tiles + t) << 32 | i`` (uint64): unique without any
coordination, ordered like the single-process ids (planes, then tiles row-major, then the
tile's ids), and never overflowing. Final ids ``1..N`` (uint32) are given after the merge.

Merge rule (the single-process rule of :func:`~napari_segany.tiling.stitch_tile_labels`)
----------------------------------------------------------------------------------------
1. each block keeps its core;
2. objects of two blocks whose windows overlap are one object when their masks agree in the
   overlap (IoU >= ``stitch_iou``); the relabel table is the connected components of these
   pairs, each mapped to its smallest gid;
3. where a block saw background in its core, the object of an overlapping window (the first
   in tile order that has pixels there and core pixels of its own) extends into it, so an
   object one block missed is not cut at the border;
4. 8-connected fragments smaller than ``min_area`` are removed (computed on the chunk grown
   by ``min_area`` pixels, which decides every fragment touching the chunk exactly).

:func:`render_region` applies 1, 3 and the relabel table of 2 to any region, reading only the
blocks whose windows meet it, so each output chunk is computed by one task without the
whole plane or the whole table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .._planes import iter_keys
from ..tiling import Tile, TileGrid

__all__ = ["BlockPlan", "Region", "render_region", "remove_small_fragments", "iou_pairs",
           "gid_base", "overlap_pairs"]

Region = tuple[int, int, int, int]  # (y0, y1, x0, x1), end exclusive
LOCAL_BITS = 32


def gid_base(plane: int, tile: int, n_tiles: int) -> np.uint64:
    """The global id of local id 0 of block (``plane``, ``tile``)."""
    return np.uint64((int(plane) * int(n_tiles) + int(tile)) << LOCAL_BITS)


def _meet(a: Region, b: Region) -> Region | None:
    y0, y1 = max(a[0], b[0]), min(a[1], b[1])
    x0, x1 = max(a[2], b[2]), min(a[3], b[3])
    return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None


@dataclass(frozen=True)
class BlockPlan:
    """The blocks and output chunks of an image of ``shape`` (planes last two axes).

    Parameters
    ----------
    shape : tuple of int
        ``lead + (H, W)`` (no channel axis).
    tile, halo : int
        Of the :class:`~napari_segany.tiling.TileGrid` (the same as the single-process
        tiled run).
    chunks : (ch, cw)
        The output store's chunk tiles.
    """

    shape: tuple[int, ...]
    tile: int
    halo: int
    chunks: tuple[int, int]

    def __post_init__(self) -> None:
        if self.n_planes * self.n_tiles >= 2 ** (64 - LOCAL_BITS):
            raise ValueError(f"{self.n_planes} planes of {self.n_tiles} tiles are too many "
                             "blocks for 64-bit ids; use larger tiles")

    @cached_property
    def grid(self) -> TileGrid:
        return TileGrid(self.shape[-2:], tile=self.tile, halo=self.halo)

    @property
    def lead(self) -> tuple[int, ...]:
        return tuple(self.shape[:-2])

    @property
    def planes(self) -> list[tuple[int, ...]]:
        return list(iter_keys(self.lead))

    @property
    def n_planes(self) -> int:
        return math.prod(self.lead) if self.lead else 1

    @property
    def n_tiles(self) -> int:
        return len(self.grid)

    def blocks(self) -> Iterator[tuple[int, int]]:
        """``(plane index, tile index)`` of every block, in id order."""
        for p in range(self.n_planes):
            for t in range(self.n_tiles):
                yield p, t

    def chunk_regions(self) -> list[Region]:
        h, w = self.shape[-2:]
        ch, cw = self.chunks
        return [(y, min(y + ch, h), x, min(x + cw, w)) for y in range(0, h, ch)
                for x in range(0, w, cw)]

    def grow(self, region: Region, margin: int) -> Region:
        h, w = self.shape[-2:]
        y0, y1, x0, x1 = region
        return max(0, y0 - margin), min(h, y1 + margin), max(0, x0 - margin), min(w, x1 + margin)

    def tiles_meeting(self, region: Region) -> list[int]:
        """Indices of the tiles whose windows meet ``region``, in tile order."""
        return [k for k, t in enumerate(self.grid) if _meet(t.window, region) is not None]

    def neighbours(self, tile: int) -> list[int]:
        """Later tiles (higher index) whose windows overlap this tile's window."""
        tiles = list(self.grid)
        return [k for k in range(tile + 1, len(tiles))
                if _meet(tiles[tile].window, tiles[k].window) is not None]


def iou_pairs(a: np.ndarray, b: np.ndarray, min_iou: float) -> np.ndarray:
    """``(k, 2)`` pairs of ids (both > 0) of two label images of one region, IoU >= min_iou
    (areas counted inside the region, as :func:`~napari_segany.tiling.stitch_tile_labels`
    does)."""
    a = a.astype(np.int64).ravel()
    b = b.astype(np.int64).ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    nb = int(b.max()) + 1
    codes, inter = np.unique(a[both] * nb + b[both], return_counts=True)
    pa, pb = codes // nb, codes % nb
    area_a = np.bincount(a, minlength=int(a.max()) + 1)
    area_b = np.bincount(b, minlength=int(b.max()) + 1)
    keep = inter / (area_a[pa] + area_b[pb] - inter) >= min_iou
    return np.stack([pa[keep], pb[keep]], axis=1)


def overlap_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pairs (k, 2) uint64, intersections (k,))`` of two gid images of one region."""
    a, b = a.ravel(), b.ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), np.uint64), np.zeros(0, np.int64)
    pairs, inter = np.unique(np.stack([a[both], b[both]], axis=1), axis=0, return_counts=True)
    return pairs.astype(np.uint64), inter.astype(np.int64)


def render_region(
    plan: BlockPlan,
    plane: int,
    region: Region,
    read_tile: Callable[[int], np.ndarray],
    present: Callable[[int], np.ndarray],
    roots: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """The stitched ``(h, w)`` uint64 root gids of ``region`` of plane ``plane``.

    Parameters
    ----------
    read_tile : callable
        ``read_tile(t)`` -> the window-sized local labels of tile ``t`` of this plane.
    present : callable
        ``present(t)`` -> sorted local ids of tile ``t`` that have pixels in its core.
    roots : (gids, root gids)
        The relabel table's entries for the gids of the tiles meeting ``region`` (sorted
        by gid); gids not listed are their own roots.
    """
    y0, y1, x0, x1 = region
    out = np.zeros((y1 - y0, x1 - x0), np.uint64)
    grid = list(plan.grid)
    cache: dict[int, np.ndarray] = {}

    def lab(k: int) -> np.ndarray:
        if k not in cache:
            cache[k] = np.asarray(read_tile(k))
        return cache[k]

    def part(t: Tile, k: int, r: Region) -> tuple[np.ndarray, tuple[slice, slice]]:
        wy, wx = t.window[0], t.window[2]
        labels = lab(k)[r[0] - wy:r[1] - wy, r[2] - wx:r[3] - wx]
        return labels, (slice(r[0] - y0, r[1] - y0), slice(r[2] - x0, r[3] - x0))

    for k in plan.tiles_meeting(region):  # 1. cores
        t = grid[k]
        r = _meet(t.core, region)
        if r is None:
            continue
        labels, where = part(t, k, r)
        base = gid_base(plane, k, plan.n_tiles)
        out[where] = np.where(labels > 0, labels.astype(np.uint64) + base, 0)
    for k in plan.tiles_meeting(region):  # 3. fill where the owner saw background
        t = grid[k]
        r = _meet(t.window, region)
        labels, where = part(t, k, r)
        view = out[where]
        ok = np.isin(labels, present(k)) & (labels > 0)
        fill = (view == 0) & ok
        if fill.any():
            view[fill] = labels[fill].astype(np.uint64) + gid_base(plane, k, plan.n_tiles)
    keys, vals = roots
    if len(keys):
        idx = np.searchsorted(keys, out)
        idx = np.minimum(idx, len(keys) - 1)
        hit = keys[idx] == out
        out[hit] = vals[idx[hit]]
    return out


def remove_small_fragments(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Set 8-connected pieces of any object smaller than ``min_area`` pixels to 0 (ids are
    kept; any integer dtype)."""
    if min_area <= 0 or not labels.any():
        return labels
    from scipy import ndimage as ndi

    ids, inv = np.unique(labels, return_inverse=True)
    compact = inv.reshape(labels.shape).astype(np.int64)
    if ids[0] != 0:
        compact += 1
    out = labels.copy()
    for i, sl in enumerate(ndi.find_objects(compact), start=1):
        if sl is None:
            continue
        comp, n = ndi.label(compact[sl] == i, structure=np.ones((3, 3)))
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        small = sizes < min_area
        small[0] = False
        if small.any():
            out[sl][small[comp]] = 0
    return out
