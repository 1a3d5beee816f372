"""Segmenting part of a plane at full resolution: a region the user chose (e.g. the view
zoomed in), or the tile window of cached tiled embeddings that holds the prompt.

The model otherwise sees the whole plane resized to its input size (1024 pixels for SAM),
and small objects of a large plane vanish. Prompts stay in plane coordinates; masks come
back whole-plane, zero outside the window.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.base import Embedding
from ..errors import PromptError
from ..prompts import ObjectPrompt, check_in_plane
from ..tiling import TiledEmbeddings
from .segmentation import Segmentation

#: The :class:`~napari_segany.session.Session` segmenting (typed loosely: core imports this).
Session = Any

__all__ = ["segment_region", "segment_tiled"]


def segment_tiled(session: Session, key: tuple[int, ...], objects: dict[int, ObjectPrompt],
                   ids: list[int], tiled: TiledEmbeddings,
                   multimask: bool) -> dict[int, Segmentation]:
    if tuple(tiled.plane_shape) != tuple(session.shape[-2:]):
        raise ValueError("the tiled embeddings belong to an image of another shape")
    out: dict[int, Segmentation] = {}
    for i in ids:
        p = objects[i]
        check_in_plane(p, session.shape[-2:], f"object {i} on plane {key}")
        tile = _best_tile(tiled, p)
        if tile is None:
            raise PromptError(f"object {i}'s prompt on plane {key} is larger than one "
                              f"tile ({tiled.grid.tile_shape}): use a larger tile, or "
                              "segment it on the whole plane")
        seg = _in_tile(session, key, i, p, tiled, tile, multimask)
        # a mask cut by the window's inner edge: once more in the window that holds it
        better = _best_tile(tiled, p, _bbox(seg.mask)) if _cut(seg.mask, tile, tiled) else None
        if better is not None and better != tile:
            seg = _in_tile(session, key, i, p, tiled, better, multimask)
        out[i] = seg
    return out


def _in_tile(session: Session, key: tuple[int, ...], oid: int, prompt: ObjectPrompt,
             tiled: TiledEmbeddings, tile: Any, multimask: bool) -> Segmentation:
    with session.model_lock:
        emb = tiled.get(key, tile)
    return segment_region(session, key, {oid: prompt}, [oid], tile.window, multimask,
                          emb)[oid]


def _bbox(mask: np.ndarray) -> np.ndarray | None:
    rows, cols = np.nonzero(mask)
    if not rows.size:
        return None
    return np.array([[cols.min(), rows.min()], [cols.max(), rows.max()]], float)


def _cut(mask: np.ndarray, tile: Any, tiled: TiledEmbeddings) -> bool:
    """Whether ``mask`` touches an edge of ``tile``'s window that is not the plane's."""
    y0, y1, x0, x1 = tile.window
    h, w = tiled.plane_shape
    return bool((y0 > 0 and mask[y0, x0:x1].any()) or (y1 < h and mask[y1 - 1, x0:x1].any())
                or (x0 > 0 and mask[y0:y1, x0].any()) or (x1 < w and mask[y0:y1, x1 - 1].any()))

def segment_region(session: Session, key: tuple[int, ...], objects: dict[int, ObjectPrompt],
                    ids: list[int], region: Any, multimask: bool,
                    emb: Embedding | None = None) -> dict[int, Segmentation]:
    h, w = session.shape[-2:]
    try:
        y0, y1, x0, x1 = (int(v) for v in region)
    except (TypeError, ValueError):
        raise ValueError(f"region must be (y0, y1, x0, x1) integers, got {region!r}") from None
    y0, x0, y1, x1 = max(0, y0), max(0, x0), min(h, y1), min(w, x1)
    if y1 - y0 < 8 or x1 - x0 < 8:
        raise ValueError(f"region {region} keeps less than 8 x 8 pixels of the {h} x {w} "
                         "plane")
    shifted = {}
    for i in ids:
        p = objects[i]
        check_in_plane(p, session.shape[-2:], f"object {i} on plane {key}")
        pts = p.points - [x0, y0]
        box = None if p.box is None else np.clip(p.box - [x0, y0, x0, y0], 0,
                                                 [x1 - x0 - 1, y1 - y0 - 1] * 2)
        shifted[i] = ObjectPrompt(pts, p.labels, box)
        try:
            check_in_plane(shifted[i], (y1 - y0, x1 - x0), f"object {i}")
        except PromptError:
            raise PromptError(f"object {i}'s prompt lies outside the region "
                              f"(y {y0}..{y1}, x {x0}..{x1}); zoom out or move it") from None
    with session.model_lock:
        if emb is None:
            emb = session._regions.get((key, (y0, y1, x0, x1)))
        pred = session.backend.predict(emb, [shifted[i] for i in ids], multimask=multimask)
    masks, scores, _ = pred.best()
    out = {}
    for n, i in enumerate(ids):
        full = np.zeros((h, w), bool)
        full[y0:y1, x0:x1] = masks[n]
        out[i] = Segmentation(key, i, full, float(scores[n]), None, objects[i])
    return out


def _best_tile(tiled: TiledEmbeddings, prompt: ObjectPrompt,
               extra: np.ndarray | None = None) -> Any:
    """The tile whose window holds every point and the box of ``prompt`` (and the
    ``extra`` (x, y) points), farthest from the window's edges (None when none holds all)."""
    xy = np.asarray(prompt.points, float).reshape(-1, 2)
    if prompt.box is not None:
        b = np.asarray(prompt.box, float)
        xy = np.concatenate([xy, [[b[0], b[1]], [b[2], b[3]]]])
    if extra is not None:
        xy = np.concatenate([xy, extra])
    best, margin = None, -1.0
    for tile in tiled.grid:
        y0, y1, x0, x1 = tile.window
        m = float(min((xy[:, 0] - x0).min(), (x1 - 1 - xy[:, 0]).min(),
                      (xy[:, 1] - y0).min(), (y1 - 1 - xy[:, 1]).min()))
        if m >= 0 and m > margin:
            best, margin = tile, m
    return best
