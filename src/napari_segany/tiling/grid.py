"""Tile geometry and prompt routing (see :mod:`napari_segany.tiling`).

:class:`Tile` and :class:`TileGrid` (overlapping windows over a plane, cores partitioning it)
and the helpers that route an object's prompts to tiles. Imports only numpy at import time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..prompts import ObjectPrompt

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

    def restrict(self, mask: np.ndarray) -> np.ndarray:
        """A window-sized mask kept only inside this tile's core (zero elsewhere)."""
        out = np.zeros_like(mask)
        cy, cx = self.core_in_window
        out[cy, cx] = mask[cy, cx]
        return out


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
