"""The box table of :mod:`napari_segany.boxes`: :class:`BoxTable`, :class:`BoxError` and the
per-box value checks shared by the readers (see that module for coordinates and file formats)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BoxError


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

