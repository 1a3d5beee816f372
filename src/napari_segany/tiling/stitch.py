"""Stitching per-tile instance labels (see :mod:`napari_segany.tiling`).

:func:`stitch_tile_labels` joins window-sized labels of a :class:`TileGrid` into one plane
without cutting objects at core borders. Imports only numpy at import time.
"""

from __future__ import annotations

import numpy as np

from .grid import Tile, TileGrid


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
