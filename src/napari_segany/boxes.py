"""Boxes to masks in batch: auto-annotation from detections, drawn boxes or box tables.

Boxes come from a napari Shapes layer (:func:`boxes_from_shapes`), a CSV or JSON file
(:func:`read_boxes`) or a detector's ``(N, 4)`` array (:meth:`BoxTable.from_array`). Each
plane's boxes are decoded in batches (``chunk_size`` boxes per ``backend.predict`` call) on
that plane's embedding, or routed to the tiles of a large plane
(:class:`~napari_segany.tiling.TiledEmbeddings`), and painted into one labels image with
one id per box; a box's class goes into the store's object attributes (``class_name``).

Coordinates
-----------
Pixel coordinates of the image plane, as SAM prompts and ``--box``: ``x`` is the column,
``y`` the row, pixel centres at integers; ``(x0, y0)`` is the top-left and ``(x1, y1)`` the
bottom-right corner. Boxes are clipped to the plane; a box entirely outside it is an error.

Files
-----
CSV: a header row, then one row per box. Columns (case-insensitive; others are ignored):

* ``x0, y0, x1, y1`` (required; also ``xmin, ymin, xmax, ymax``), or ``x, y, width, height``
  (top-left corner and size, e.g. COCO ``bbox``);
* ``plane`` (required for stacks, absent for 2D images): index along the leading axis
  (``z`` or ``t``; the aliases ``z``, ``t``, ``frame`` work too); for two leading axes
  (``t, z, y, x``) write ``"t:z"``, e.g. ``3:12``;
* ``class`` (optional; also ``class_name``, ``label``, ``category``): a class name;
* ``id`` (optional): the object id; rows with the same id on different planes are one object
  (e.g. a tracked detection); rows without one get new ids in row order;
* ``score`` (optional; also ``confidence``): the detector's confidence, recorded only.

JSON: a list of box records, or ``{"format": "napari-segany.boxes", "version": 1, "boxes":
[...]}``. A record is an object with ``"box": [x0, y0, x1, y1]`` (or ``"bbox": [x, y, w,
h]``, or the CSV column names as keys) and optionally ``"plane"`` (an integer, or a list of
integers for several leading axes), ``"class"``, ``"id"`` and ``"score"``.

Overlaps
--------
Where the masks of several boxes overlap, ``overlap="score"`` (default) gives each pixel to
the box whose mask has the highest predicted IoU (ties: the earlier row); ``"order"`` gives it
to the earliest row. Pixels already labelled in the store are never overwritten. Every box
keeps its id, even if its mask ends up empty (its area is then 0 in the result).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._boxes_read import BOXES_FORMAT, boxes_from_shapes, read_boxes
from ._boxes_table import BoxError, BoxTable
from .prompts import ObjectPrompt

__all__ = ["BoxError", "BoxTable", "BoxesResult", "read_boxes", "boxes_from_shapes",
           "boxes_to_labels", "segment_boxes", "BOXES_FORMAT"]

OVERLAP_POLICIES = ("score", "order")


# ----------------------------------------------------------------------------------- segmenting
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
    from .auto import Cancelled, _is_cancelled
    from .tiling import _restrict

    pieces: list[_Piece] = []
    stats: dict[int, list[tuple[float, int]]] = {}
    i = 0
    while i < len(jobs):
        tile = jobs[i][0]
        j = i
        while j < len(jobs) and jobs[j][0] is tile and j - i < chunk_size:
            j += 1
        if _is_cancelled(cancel):
            raise Cancelled()
        chunk = jobs[i:j]
        pred = backend.predict(get_embedding(tile), [p for _, _, p, _ in chunk],
                               multimask=multimask)
        masks, scores, _ = pred.best()
        oy, ox = (0, 0) if tile is None else (tile.window[0], tile.window[2])
        for (_, row, _, clip), m, s in zip(chunk, masks, scores, strict=True):
            m = _restrict(m, tile) if clip else np.asarray(m, bool)
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
    backend: Any,
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


def segment_boxes(
    session: Any,
    boxes: BoxTable | Any,
    *,
    plane: Any = None,
    classes: Any = None,
    ids: Any = None,
    tiled: Any = None,
    chunk_size: int = 64,
    overlap: str = "score",
    multimask: bool = False,
    progress: Callable[[int, int], Any] | None = None,
    cancel: Any = None,
) -> BoxesResult:
    """Segment boxes on one or many planes of a session and write them into its labels store.

    Parameters
    ----------
    session : Session
        With a labels store.
    boxes : BoxTable or array-like
        A table (:func:`read_boxes`, :func:`boxes_from_shapes`, :meth:`BoxTable.from_array`)
        or an ``(N, 4)`` XYXY array, with ``plane``/``classes``/``ids`` then applying to it.
    tiled : TiledEmbeddings, optional
        Route boxes to the tiles of large planes.
    chunk_size : int
        Boxes (or box pieces) per decoder call.
    overlap : {"score", "order"}
    multimask : bool
    progress : callable, optional
        ``progress(done, total)`` in boxes (pieces of boxes split over tiles count apart).
    cancel : threading.Event or callable, optional
        Checked before each decoder call; the plane in progress is then not written.

    Returns
    -------
    BoxesResult
    """
    from .auto import Cancelled, record_objects

    store = session._require_labels()
    if overlap not in OVERLAP_POLICIES:
        raise BoxError(f"overlap must be one of {OVERLAP_POLICIES}, not {overlap!r}")
    if not isinstance(boxes, BoxTable):
        boxes = BoxTable.from_array(boxes, planes=plane, classes=classes, ids=ids)
    elif plane is not None or classes is not None or ids is not None:
        raise BoxError("plane=, classes= and ids= apply to an array of boxes; a BoxTable "
                       "carries its own")
    table = boxes.validated(session.shape)
    n = len(table)
    if tiled is not None and tuple(tiled.plane_shape) != tuple(session.shape[-2:]):
        raise ValueError("the tiled embeddings belong to an image of another shape")
    explicit = table.ids[table.ids > 0]
    first = max(store.next_object_id(), int(explicit.max()) + 1 if explicit.size else 1)
    id_arr = table.ids.copy()
    id_arr[id_arr == 0] = first + np.arange(int((id_arr == 0).sum()))
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
    store.update_provenance(boxes={"source": table.source, "n_boxes": n, "overlap": overlap,
                                   "multimask": bool(multimask),
                                   "tiling": None if tiled is None else tiled.tiling})
    scores = np.full(n, np.nan, np.float32)
    areas = np.zeros(n, np.int64)
    written: list[tuple[int, ...]] = []
    for key, jobs in plans.items():
        key = session.check_plane(key)
        get = (lambda t, key=key: tiled.get(key, t)) if tiled is not None else (
            lambda _t, key=key: session.embedding(key))
        try:
            pieces, stats = _run_jobs(session.backend, jobs, get, max(1, int(chunk_size)),
                                      multimask, cancel, tick)
        except Cancelled:
            return BoxesResult(id_arr, scores, areas, written, cancelled=True)
        rows = by_plane[key]
        for r in rows:
            scores[r] = _score(stats.get(r, []))
        prio = np.full(n, -np.inf)
        prio[rows] = (np.nan_to_num(scores[rows], nan=-np.inf) if overlap == "score"
                      else -np.asarray(rows, np.float64))
        new = _paint(session.shape[-2:], pieces, id_arr, prio)
        existing = store.read_plane(key)
        plane_labels = np.where(existing > 0, existing, new).astype(np.uint32)
        counts = np.bincount(plane_labels.ravel(), minlength=int(id_arr.max()) + 1)
        areas[rows] = counts[id_arr[rows]]
        store.write_plane(key, plane_labels)
        infos: dict[int, dict[str, Any]] = {}
        for r in rows:
            info = infos.setdefault(int(id_arr[r]), {"source": "boxes"})
            if table.classes[r] is not None:
                info["class_name"] = table.classes[r]
        record_objects(store, infos)
        written.append(key)
    return BoxesResult(id_arr, scores, areas, written)
