"""Prompted segmentation of a tiled plane: objects routed to tiles, pieces joined."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..prompts import ObjectPrompt
from .embeddings import TiledEmbeddings
from .grid import Tile, TileGrid

__all__ = ["TiledSegmentation", "segment_tiled"]


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
    key = tiled.plane_key(plane)
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
                piece = tile.restrict(m) if clip else m
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
