"""Boxes to masks: each plane's boxes decoded in batches (whole plane or routed to tiles) and
painted into one labels image, one id per box (rules in :mod:`napari_segany.boxes`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._progress import check_cancel
from ..engine.base import Backend
from ..errors import BoxError
from ..prompts import ObjectPrompt
from ..storage.embeddings import PlaneSource
from ..tiling import TiledEmbeddings
from .table import BoxTable

__all__ = ["OVERLAP_POLICIES", "BoxesResult", "boxes_to_labels", "box_planes"]


OVERLAP_POLICIES = ("score", "order")


@dataclass
class BoxesResult:
    """What :func:`segment_boxes` did, per row of the box table."""

    ids: np.ndarray  # (N,) object id of each box
    scores: np.ndarray  # (N,) predicted IoU of each box's mask (area-weighted over pieces)
    areas: np.ndarray  # (N,) pixels painted for each box
    planes: list[tuple[int, ...]]  # planes written, in order
    cancelled: bool = False

    @property
    def empty(self) -> np.ndarray:
        """Rows whose mask ended up empty."""
        return np.flatnonzero(self.areas == 0)


@dataclass
class _Piece:
    row: int
    y0: int
    x0: int
    mask: np.ndarray  # cropped bool


def _jobs(boxes: np.ndarray, rows: list[int], grid: Any) -> list[tuple[Any, int, ObjectPrompt,
                                                                         bool]]:
    """``[(tile or None, row, prompt in the embedding's frame, clip to core), ...]``."""
    out = []
    for r in rows:
        prompt = ObjectPrompt(box=boxes[r])
        if grid is None:
            out.append((None, r, prompt, False))
        else:
            out += [(t, r, local, clip) for t, local, clip in grid.route(prompt)]
    out.sort(key=lambda j: (-1, -1) if j[0] is None else j[0].index)  # stable: rows in order
    return out


def _run_jobs(backend, jobs, get_embedding, chunk_size, multimask, cancel, tick):
    """Decode jobs tile by tile in chunks; returns pieces and per-row (score, area) lists."""
    pieces: list[_Piece] = []
    stats: dict[int, list[tuple[float, int]]] = {}
    i = 0
    while i < len(jobs):
        tile = jobs[i][0]
        j = i
        while j < len(jobs) and jobs[j][0] is tile and j - i < chunk_size:
            j += 1
        check_cancel(cancel)
        chunk = jobs[i:j]
        pred = backend.predict(get_embedding(tile), [p for _, _, p, _ in chunk],
                               multimask=multimask)
        masks, scores, _ = pred.best()
        oy, ox = (0, 0) if tile is None else (tile.window[0], tile.window[2])
        for (_, row, _, clip), m, s in zip(chunk, masks, scores, strict=True):
            m = tile.restrict(m) if clip else np.asarray(m, bool)
            rows_, cols_ = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            area = int(m.sum())
            stats.setdefault(row, []).append((float(s), area))
            if area:
                y0, y1, x0, x1 = rows_[0], rows_[-1] + 1, cols_[0], cols_[-1] + 1
                pieces.append(_Piece(row, oy + int(y0), ox + int(x0), m[y0:y1, x0:x1].copy()))
        if tick is not None:
            tick(len(chunk))
        i = j
    return pieces, stats


def _paint(shape, pieces: list[_Piece], ids: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """First claim wins, in order of decreasing priority (ties: lower row)."""
    labels = np.zeros(shape, np.uint32)
    order = sorted(range(len(pieces)), key=lambda k: (-priority[pieces[k].row], pieces[k].row))
    for k in order:
        pc = pieces[k]
        h, w = pc.mask.shape
        view = labels[pc.y0:pc.y0 + h, pc.x0:pc.x0 + w]
        view[pc.mask & (view == 0)] = ids[pc.row]
    return labels


def _score(stats: list[tuple[float, int]]) -> float:
    total = sum(a for _, a in stats)
    if total:
        return sum(s * a for s, a in stats) / total
    return float(np.mean([s for s, _ in stats])) if stats else math.nan


def boxes_to_labels(
    backend: Backend,
    image: np.ndarray | None,
    boxes: Any,
    *,
    embedding: Any = None,
    ids: Any = None,
    chunk_size: int = 64,
    overlap: str = "score",
    multimask: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment the ``(N, 4)`` XYXY boxes of one ``(H, W, 3)`` uint8 plane into labels.

    Parameters
    ----------
    backend : Backend
    image : np.ndarray or None
        The plane (None when ``embedding`` is given).
    boxes : array-like
        ``(N, 4)`` ``(x0, y0, x1, y1)`` pixel coordinates.
    ids : sequence of int, optional
        The id of each box (default ``1..N``).
    chunk_size : int
        Boxes per decoder call.
    overlap : {"score", "order"}
        Who gets a pixel claimed by several masks (see the module notes).
    multimask : bool
        Decode three candidates per box and keep the best (SAM's default for ambiguous
        prompts; a box is rarely ambiguous).

    Returns
    -------
    labels : np.ndarray
        ``(H, W)`` uint32.
    scores : np.ndarray
        ``(N,)`` float32 predicted IoU of each box's mask.
    """
    emb = embedding if embedding is not None else backend.embed(image)
    h, w = emb.original_size
    table = BoxTable.from_array(boxes).validated((h, w))
    n = len(table)
    id_arr = np.arange(1, n + 1, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    if id_arr.shape != (n,) or (n and id_arr.min() < 1):
        raise BoxError(f"need one id >= 1 per box ({n} boxes), got {np.asarray(ids).tolist()}")
    if overlap not in OVERLAP_POLICIES:
        raise BoxError(f"overlap must be one of {OVERLAP_POLICIES}, not {overlap!r}")
    pieces, stats = _run_jobs(backend, _jobs(table.boxes, list(range(n)), None),
                              lambda _t: emb, max(1, int(chunk_size)), multimask, None, None)
    scores = np.array([_score(stats.get(r, [])) for r in range(n)], np.float32)
    prio = scores if overlap == "score" else -np.arange(n, dtype=np.float64)
    return _paint((h, w), pieces, id_arr, np.nan_to_num(prio, nan=-np.inf)), scores


def box_planes(
    source: PlaneSource,
    table: BoxTable,
    ids: np.ndarray,
    *,
    tiled: TiledEmbeddings | None = None,
    chunk_size: int = 64,
    overlap: str = "score",
    multimask: bool = False,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Any = None,
) -> Iterator[tuple[tuple[int, ...], list[int], np.ndarray, np.ndarray]]:
    """Yield ``(plane, rows, labels, scores)`` for each plane with boxes, in plane order.

    ``table`` must be validated for ``source``'s shape; ``ids`` holds one id >= 1 per row.
    ``labels`` is the plane's ``(H, W)`` uint32 painting of its boxes (nothing else);
    ``scores`` the predicted IoU of each of ``rows``. ``progress(done, total)`` counts boxes
    (pieces of boxes split over tiles count apart); ``cancel`` raises
    :class:`~napari_segany.errors.Cancelled` before a decoder call.
    """
    if overlap not in OVERLAP_POLICIES:
        raise BoxError(f"overlap must be one of {OVERLAP_POLICIES}, not {overlap!r}")
    n = len(table)
    by_plane: dict[tuple[int, ...], list[int]] = {}
    for r, p in enumerate(table.planes):
        by_plane.setdefault(p, []).append(r)
    grid = tiled.grid if tiled is not None else None
    plans = {key: _jobs(table.boxes, rows, grid) for key, rows in sorted(by_plane.items())}
    total = sum(len(j) for j in plans.values())
    done = [0]

    def tick(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress(done[0], total)

    if progress is not None:
        progress(0, total)
    for key, jobs in plans.items():
        key = source.check_plane(key)
        get = (lambda t, key=key: tiled.get(key, t)) if tiled is not None else (
            lambda _t, key=key: source.embedding(key))
        pieces, stats = _run_jobs(source.backend, jobs, get, max(1, int(chunk_size)),
                                  multimask, cancel, tick)
        rows = by_plane[key]
        scores = np.array([_score(stats.get(r, [])) for r in rows], np.float32)
        prio = np.full(n, -np.inf)
        prio[rows] = (np.nan_to_num(scores, nan=-np.inf) if overlap == "score"
                      else -np.asarray(rows, np.float64))
        yield key, rows, _paint(source.shape[-2:], pieces, ids, prio), scores
