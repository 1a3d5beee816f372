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

import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .prompts import ObjectPrompt

__all__ = ["BoxError", "BoxTable", "BoxesResult", "read_boxes", "boxes_from_shapes",
           "boxes_to_labels", "segment_boxes", "BOXES_FORMAT"]

BOXES_FORMAT = "napari-segany.boxes"
_ALIASES = {
    "x0": ("x0", "xmin", "x_min"), "y0": ("y0", "ymin", "y_min"),
    "x1": ("x1", "xmax", "x_max"), "y1": ("y1", "ymax", "y_max"),
    "x": ("x",), "y": ("y",), "w": ("width", "w"), "h": ("height", "h"),
    "plane": ("plane", "z", "t", "frame"), "class": ("class", "class_name", "label", "category"),
    "id": ("id", "object_id"), "score": ("score", "confidence"),
}
OVERLAP_POLICIES = ("score", "order")


class BoxError(ValueError):
    """Boxes that cannot be read or do not fit the image; the message says which and why."""


# ----------------------------------------------------------------------------------- tables
@dataclass
class BoxTable:
    """Boxes with their planes, classes, ids and detector scores (one row per box).

    Attributes
    ----------
    boxes : np.ndarray
        ``(N, 4)`` float64 ``(x0, y0, x1, y1)`` in pixel coordinates.
    planes : list of tuple of int
        Plane key of each box (``()`` for a 2D image), or None where not given.
    classes : list of str or None
    ids : np.ndarray
        ``(N,)`` int64 object ids; 0 means "a new id".
    scores : np.ndarray
        ``(N,)`` float64 detector confidences (NaN where not given).
    source : str
        Where the boxes came from (recorded in the provenance).
    """

    boxes: np.ndarray
    planes: list[tuple[int, ...] | None]
    classes: list[str | None]
    ids: np.ndarray
    scores: np.ndarray
    source: str = "array"
    rows: list[str] = field(default_factory=list)  # how to name each row in messages

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def _row(self, i: int) -> str:
        return self.rows[i] if self.rows else f"box {i}"

    @classmethod
    def from_array(
        cls,
        boxes: Any,
        *,
        planes: Any = None,
        classes: Any = None,
        ids: Any = None,
        scores: Any = None,
        box_format: str = "xyxy",
        source: str = "array",
    ) -> BoxTable:
        """Boxes from arrays, e.g. a detector's output.

        Parameters
        ----------
        boxes : array-like
            ``(N, 4)``: ``(x0, y0, x1, y1)`` with ``box_format="xyxy"`` or ``(x, y, width,
            height)`` with ``"xywh"``.
        planes : int, tuple, or sequence of them, optional
            One plane for all boxes, or one per box (``None``: a 2D image).
        classes : str or sequence of str, optional
            One class for all, or one per box (None entries: no class).
        ids : sequence of int, optional
            Object ids; 0 (or None) gives the box a new id.
        scores : sequence of float, optional
            Detector confidences.
        """
        arr = np.asarray(boxes, dtype=np.float64)
        if arr.size == 0:
            arr = arr.reshape(0, 4)
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise BoxError(f"boxes must be an (N, 4) array, got shape {arr.shape}")
        if box_format == "xywh":
            arr = np.concatenate([arr[:, :2], arr[:, :2] + arr[:, 2:]], axis=1)
        elif box_format != "xyxy":
            raise BoxError(f"box_format must be 'xyxy' or 'xywh', not {box_format!r}")
        n = len(arr)
        return cls(arr, _per_box(planes, n, "planes", _plane_value),
                   _per_box(classes, n, "classes", _class_value),
                   np.array(_per_box(ids, n, "ids", _id_or_new, default=0), np.int64),
                   np.array(_per_box(scores, n, "scores", _score_value, default=math.nan),
                            np.float64), source)

    def validated(self, image_shape: Sequence[int]) -> BoxTable:
        """A copy checked against an image ``(*leading, H, W)``: planes exist, boxes are clipped
        to the plane. Raises :class:`BoxError` naming the row."""
        shape = tuple(int(s) for s in image_shape)
        lead, (h, w) = shape[:-2], shape[-2:]
        planes: list[tuple[int, ...]] = []
        boxes = self.boxes.copy()
        for i in range(len(self)):
            p = self.planes[i]
            if p is None:
                if lead:
                    raise BoxError(f"{self._row(i)} has no plane, but the image has leading axes "
                                   f"{lead}: give each box a plane (column 'plane')")
                p = ()
            if len(p) != len(lead) or any(not 0 <= k < n for k, n in zip(p, lead, strict=True)):
                what = "a 2D image takes no plane" if not lead else (
                    f"planes are {len(lead)} indices below {lead}")
                raise BoxError(f"{self._row(i)}: plane {list(p)} does not fit the image ({what})")
            b = boxes[i]
            if not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
                raise BoxError(f"{self._row(i)}: box {b.tolist()} is not a box with x1 > x0 and "
                               "y1 > y0")
            if b[2] < 0 or b[3] < 0 or b[0] > w - 1 or b[1] > h - 1:
                raise BoxError(f"{self._row(i)}: box {b.tolist()} lies outside the {w}x{h} "
                               "(WxH) plane")
            c = np.clip(b, 0.0, [w - 1.0, h - 1.0] * 2)
            if c[2] <= c[0] or c[3] <= c[1]:
                raise BoxError(f"{self._row(i)}: box {b.tolist()} is empty once clipped to the "
                               f"{w}x{h} plane")
            boxes[i] = c
            planes.append(p)
        seen: dict[tuple[tuple[int, ...], int], int] = {}
        named: dict[int, str] = {}
        for i, (p, oid) in enumerate(zip(planes, self.ids.tolist(), strict=True)):
            if not oid:
                continue
            if (p, oid) in seen:
                raise BoxError(f"{self._row(seen[p, oid])} and {self._row(i)} both give object "
                               f"id {oid} on plane {list(p)}; an object has one box per plane")
            seen[p, oid] = i
            c = self.classes[i]
            if c is not None and named.setdefault(oid, c) != c:
                raise BoxError(f"{self._row(i)}: object {oid} has class {c!r} here but "
                               f"{named[oid]!r} on another row")
        return BoxTable(boxes, planes, list(self.classes), self.ids.copy(), self.scores.copy(),
                        self.source, list(self.rows))


def _per_box(values: Any, n: int, what: str, conv: Callable[[Any], Any], default: Any = None):
    if values is None:
        return [default] * n
    if isinstance(values, (str, int, np.integer)) or (what == "planes" and isinstance(
            values, tuple)):
        return [conv(values)] * n
    vals = list(values)
    if len(vals) != n:
        raise BoxError(f"got {len(vals)} {what} for {n} boxes; give one per box or one for all")
    return [default if v is None else conv(v) for v in vals]


def _plane_value(v: Any) -> tuple[int, ...] | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, str):
        parts = [t for t in v.replace(";", ":").replace(",", ":").replace(" ", ":").split(":")
                 if t]
        if not parts:
            return None
        v = parts
    vals = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]
    out = []
    for x in vals:
        try:
            f = float(x)
        except (TypeError, ValueError):
            raise BoxError(f"plane {v!r} is not an integer index (or 't:z' for two axes)") \
                from None
        if not f.is_integer() or f < 0:
            raise BoxError(f"plane {v!r} is not a non-negative integer index")
        out.append(int(f))
    return tuple(out)


def _class_value(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def _id_value(v: Any) -> int:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise BoxError(f"object id {v!r} is not an integer") from None
    if not f.is_integer() or f < 1:
        raise BoxError(f"object id {v!r} must be an integer >= 1 (0 is background)")
    return int(f)


def _id_or_new(v: Any) -> int:
    """An id from an array: 0 (or NaN) means "a new id"."""
    if isinstance(v, (float, np.floating)) and math.isnan(v):
        return 0
    return 0 if _score_value(v) == 0 else _id_value(v)


def _score_value(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        raise BoxError(f"score {v!r} is not a number") from None


# ----------------------------------------------------------------------------------- reading
def read_boxes(path: str | os.PathLike) -> BoxTable:
    """Read boxes from a CSV (``.csv``, ``.tsv``) or JSON (``.json``) file (see module notes)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"boxes file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BoxError(f"cannot read boxes file {p}: {exc}") from None
    if p.suffix.lower() == ".json":
        return _read_json(text, p)
    if p.suffix.lower() in (".csv", ".tsv", ".txt"):
        return _read_csv(text, p)
    raise BoxError(f"boxes file {p} must end in .csv, .tsv or .json")


def _pick(record: dict[str, Any], name: str) -> Any:
    for alias in _ALIASES[name]:
        if alias in record and record[alias] not in (None, ""):
            return record[alias]
    return None


def _record(rec: dict[str, Any], where: str) -> tuple[list[float], Any, Any, Any, Any]:
    rec = {str(k).strip().lower(): v for k, v in rec.items()}
    box: Any = None
    xywh = False
    if rec.get("box") is not None:
        box = rec["box"]
    elif rec.get("bbox") is not None:
        box, xywh = rec["bbox"], True
    elif all(_pick(rec, k) is not None for k in ("x0", "y0", "x1", "y1")):
        box = [_pick(rec, k) for k in ("x0", "y0", "x1", "y1")]
    elif all(_pick(rec, k) is not None for k in ("x", "y", "w", "h")):
        box, xywh = [_pick(rec, k) for k in ("x", "y", "w", "h")], True
    if box is None:
        raise BoxError(f"{where}: no box; give x0, y0, x1, y1 (or xmin, ymin, xmax, ymax, or x, "
                       "y, width, height)")
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        raise BoxError(f"{where}: box {box!r} is not 4 numbers") from None
    if len(vals) != 4:
        raise BoxError(f"{where}: box {box!r} is not 4 numbers")
    if xywh:
        vals = [vals[0], vals[1], vals[0] + vals[2], vals[1] + vals[3]]
    try:
        plane = _plane_value(_pick(rec, "plane"))
        oid = _pick(rec, "id")
        oid = 0 if oid is None else _id_value(oid)
        score = _pick(rec, "score")
        score = math.nan if score is None else _score_value(score)
    except BoxError as exc:
        raise BoxError(f"{where}: {exc}") from None
    return vals, plane, _class_value(_pick(rec, "class")), oid, score


def _table(records: list[tuple], rows: list[str], source: str) -> BoxTable:
    if not records:
        raise BoxError(f"{source} holds no boxes")
    boxes, planes, classes, ids, scores = zip(*records, strict=True)
    return BoxTable(np.array(boxes, np.float64), list(planes), list(classes),
                    np.array(ids, np.int64), np.array(scores, np.float64), source, rows)


def _read_csv(text: str, p: Path) -> BoxTable:
    lines = text.splitlines()
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t") if lines else csv.excel
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(lines, dialect=dialect)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    have = set(header)
    if not ({"x0", "y0", "x1", "y1"} <= have or {"xmin", "ymin", "xmax", "ymax"} <= have
            or ({"x", "y"} <= have and have & {"w", "width"} and have & {"h", "height"})):
        raise BoxError(f"{p}: the header {header} lacks box columns; expected x0,y0,x1,y1 (or "
                       "xmin,ymin,xmax,ymax, or x,y,width,height) plus optional plane,class,id,"
                       "score")
    records, rows = [], []
    for n, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        where = f"{p.name} line {n}"
        records.append(_record({k: (v.strip() if isinstance(v, str) else v)
                                for k, v in row.items() if k is not None}, where))
        rows.append(where)
    return _table(records, rows, str(p))


def _read_json(text: str, p: Path) -> BoxTable:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BoxError(f"{p} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        if data.get("format", BOXES_FORMAT) != BOXES_FORMAT or "boxes" not in data:
            raise BoxError(f"{p}: expected a list of boxes or {{'format': '{BOXES_FORMAT}', "
                           "'version': 1, 'boxes': [...]}")
        data = data["boxes"]
    if not isinstance(data, list):
        raise BoxError(f"{p}: expected a list of box records")
    records, rows = [], []
    for i, rec in enumerate(data):
        where = f"{p.name} box {i}"
        if not isinstance(rec, dict):
            raise BoxError(f"{where} is not an object like {{'box': [x0, y0, x1, y1]}}")
        records.append(_record(rec, where))
        rows.append(where)
    return _table(records, rows, str(p))


def boxes_from_shapes(
    shapes: Any,
    *,
    image_shape: Sequence[int],
    shape_types: Any = None,
    classes: Any = None,
    shapes_transform: Any = None,
    image_transform: Any = None,
) -> BoxTable:
    """Boxes from napari Shapes layer data (rectangles), one row per shape, in order.

    Parameters are those of :func:`napari_segany.prompts.shapes_to_prompts`, plus
    ``classes``: one class per shape (e.g. ``layer.features["class"]``) or one for all.
    """
    from .prompts import shapes_to_prompts

    n = len(shapes)
    prompts = shapes_to_prompts(shapes, image_shape=image_shape, shape_types=shape_types,
                                object_ids=np.arange(1, n + 1) if n else None,
                                shapes_transform=shapes_transform,
                                image_transform=image_transform)
    boxes = np.zeros((n, 4))
    planes: list[tuple[int, ...] | None] = [None] * n
    for key, objects in prompts.items():
        for oid, p in objects.items():
            boxes[oid - 1], planes[oid - 1] = p.box, key
    table = BoxTable.from_array(boxes, planes=planes, classes=classes, source="shapes")
    table.rows = [f"shape {i}" for i in range(n)]
    return table


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
