"""Prompt geometry: the layer data -> world :class:`Transform`, validation of labels,
object ids and layer coordinates, and the image-pixel geometry (plane indices, point
clipping, boxes, whether a prompt lies on its plane).

Coordinate conventions and the clipping policy are described in
:mod:`napari_segany.prompts.layers`; :mod:`napari_segany.prompts` re-exports
:class:`Transform` and :func:`check_in_plane`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._planes import MAX_OBJECT_ID
from ..errors import PromptError

_EDGE_TOL = 1e-6  # pixels of slack for floating-point error at the half-pixel border
_CHECK_TF = "check the layers' scale/translate"


__all__ = ["Transform", "check_in_plane"]


# ----------------------------------------------------------------------------------- transforms
def _as_points(coords: Any) -> tuple[np.ndarray, bool]:
    arr = np.array(coords, dtype=np.float64, ndmin=1)
    if arr.ndim > 2:
        raise PromptError(f"coordinates must have shape (N, ndim) or (ndim,), got {arr.shape}")
    return (arr[None, :], True) if arr.ndim == 1 else (arr, False)


def _vector(values: Any, name: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(arr)) or (name == "scale" and np.any(arr == 0)):
        raise PromptError(f"Transform {name} must be finite (scale also non-zero), "
                          f"got {arr.tolist()}")
    return tuple(float(v) for v in arr)


def _align(values: tuple[float, ...] | None, ndim: int, fill: float) -> np.ndarray:
    """Align a per-axis vector to ``ndim`` axes by trailing axes (pad/drop at the front)."""
    v = np.asarray(() if values is None else values, dtype=np.float64)
    if len(v) >= ndim:
        return v[len(v) - ndim :]
    return np.concatenate([np.full(ndim - len(v), fill), v])


def _align_affine(matrix: np.ndarray, ndim: int) -> np.ndarray:
    """Trailing-axis block of a homogeneous matrix, or its embedding in an identity."""
    k = matrix.shape[0] - 1
    if k >= ndim:
        return matrix[k - ndim :, k - ndim :]
    full = np.eye(ndim + 1)
    full[ndim - k :, ndim - k :] = matrix
    return full


@dataclass(frozen=True, eq=False)
class Transform:
    """A napari layer's data -> world transform.

    ``world = affine @ (data * scale + translate)``: per-axis ``scale`` and ``translate``
    (napari axis order), then an optional homogeneous ``(ndim + 1, ndim + 1)`` float64
    ``affine`` (as napari's ``layer.affine``). Missing parts are identity. Coordinates
    with another number of axes use napari's trailing-axis alignment (extra leading
    axes pass through unchanged).
    """

    scale: tuple[float, ...] | None = None
    translate: tuple[float, ...] | None = None
    affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _vector(self.scale, "scale"))
        object.__setattr__(self, "translate", _vector(self.translate, "translate"))
        if self.affine is None:
            return
        m = np.array(self.affine, dtype=np.float64)
        ok = m.ndim == 2 and m.shape[0] == m.shape[1] >= 2 and np.all(np.isfinite(m))
        if not ok or not np.allclose(m[-1], np.eye(m.shape[0])[-1]):
            raise PromptError("Transform affine must be a finite homogeneous (ndim+1, ndim+1) "
                              f"matrix with last row [0, ..., 0, 1], got {m.tolist()}")
        if abs(np.linalg.det(m[:-1, :-1])) < 1e-12:
            raise PromptError(f"Transform affine is not invertible: {m.tolist()}")
        m.setflags(write=False)
        object.__setattr__(self, "affine", m)

    def to_world(self, coords: Any) -> np.ndarray:
        """Map data coordinates ``(N, ndim)`` (or one ``(ndim,)``) to world, float64."""
        pts, single = _as_points(coords)
        nd = pts.shape[1]
        out = pts * _align(self.scale, nd, 1.0) + _align(self.translate, nd, 0.0)
        if self.affine is not None:
            m = _align_affine(self.affine, nd)
            out = out @ m[:nd, :nd].T + m[:nd, nd]
        return out[0] if single else out

    def to_data(self, coords: Any) -> np.ndarray:
        """Map world coordinates ``(N, ndim)`` (or one ``(ndim,)``) to data, float64."""
        out, single = _as_points(coords)
        nd = out.shape[1]
        if self.affine is not None:
            m = _align_affine(self.affine, nd)
            try:
                out = np.linalg.solve(m[:nd, :nd], (out - m[:nd, nd]).T).T
            except np.linalg.LinAlgError as exc:
                raise PromptError(f"affine restricted to the last {nd} axes is singular") from exc
        out = (out - _align(self.translate, nd, 0.0)) / _align(self.scale, nd, 1.0)
        return out[0] if single else out

    @classmethod
    def from_layer(cls, layer: Any) -> Transform:
        """Read ``layer.scale``, ``layer.translate``, ``layer.affine`` (duck-typed, no napari).

        ``layer.affine`` may be a napari ``Affine`` (its ``affine_matrix`` is used) or an
        array; an identity affine is dropped.
        """
        affine = getattr(layer, "affine", None)
        if affine is not None:
            affine = np.asarray(getattr(affine, "affine_matrix", affine), dtype=np.float64)
            if affine.ndim == 2 and np.array_equal(affine, np.eye(affine.shape[0])):
                affine = None
        return cls(scale=getattr(layer, "scale", None),
                   translate=getattr(layer, "translate", None), affine=affine)


# ----------------------------------------------------------------------------------- validation
def _label_value(v: Any, i: int) -> int:
    if isinstance(v, str) and v.strip().lower() in ("positive", "negative"):
        return int(v.strip().lower() == "positive")
    if isinstance(v, numbers.Real) and v in (0, 1):
        return int(v)
    minus = isinstance(v, numbers.Real) and v == -1
    hint = " (napari-sam style -1 is not supported: use 0)" if minus else ""
    raise PromptError(f"label of point {i} is {v!r}; use 1/True/'positive' or "
                      f"0/False/'negative'{hint}")


def _parse_labels(labels: Any, n: int) -> np.ndarray:
    """Labels -> ``(n,)`` int32, 1 positive / 0 negative; None means all positive."""
    if labels is None:
        return np.ones(n, dtype=np.int32)
    arr = np.asarray(labels, dtype=object if isinstance(labels, (list, tuple)) else None)
    if arr.ndim != 1 or len(arr) != n:
        got = "a scalar" if arr.ndim == 0 else f"{len(arr)} labels"
        raise PromptError(f"got {got} for {n} points; pass exactly one label per point")
    return np.array([_label_value(v, i) for i, v in enumerate(arr.tolist())], dtype=np.int32)


def _object_id(v: Any, where: str = "") -> int:
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
    if not (ok and math.isfinite(v) and float(v).is_integer() and 1 <= v <= MAX_OBJECT_ID):
        raise PromptError(f"object id {v}{where} is invalid; ids must be integers from 1 to "
                          f"{MAX_OBJECT_ID} (0 is background)")
    return int(v)


def _parse_ids(ids: Any, n: int, what: str, default: np.ndarray) -> np.ndarray:
    """Object ids (scalar or ``(n,)``) -> ``(n,)`` int64, each >= 1."""
    if ids is None:
        return default
    arr = np.asarray(ids, dtype=object)
    arr = np.full(n, arr.item(), dtype=object) if arr.ndim == 0 else arr
    if arr.ndim != 1 or len(arr) != n:
        raise PromptError(f"got {arr.size} object ids for {n} {what}s; pass one id per {what}")
    return np.array([_object_id(v, f" of {what} {i}") for i, v in enumerate(arr)], np.int64)


def _image_shape(image_shape: Any) -> tuple[int, ...]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) < 2 or min(shape) < 1:
        raise PromptError("image_shape must be >= 2 positive sizes (..., H, W) without an RGB "
                          f"axis, got {tuple(image_shape)}")
    return shape


def _layer_coords(data: Any, what: str) -> np.ndarray:
    """Layer data -> finite ``(N, ndim)`` float64 (``(0, 2)`` when empty without ndim)."""
    try:
        arr = np.array(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PromptError(f"{what}: coordinates are not a numeric (N, ndim) array") from exc
    if arr.size == 0:
        return arr.reshape(0, arr.shape[-1] if arr.ndim == 2 else 2)
    if arr.ndim != 2:
        raise PromptError(f"{what}: coordinates must have shape (N, ndim), got {arr.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
    if bad.size:
        raise PromptError(f"{what}: row {bad[0]} has non-finite coordinates {arr[bad[0]].tolist()}")
    return arr


# ----------------------------------------------------------------------------------- geometry
def _to_image_pixels(coords, shape, src: Transform | None, img: Transform | None, what: str):
    """Layer data ``(N, d)`` -> image data coordinates ``(N, len(shape))`` float64."""
    world = (src or Transform()).to_world(coords)
    d, nd = world.shape[1], len(shape)
    if d < nd:
        raise PromptError(
            f"the {what} layer has {d} dimension(s) but the image has {nd} {shape}; napari aligns "
            f"layers by trailing axes, so these {what} cannot be placed on a plane. Use a {what} "
            f"layer with {nd} dimensions (e.g. create it while the image is shown).")
    return (img or Transform()).to_data(world[:, d - nd :])


def _plane_indices(pix: np.ndarray, shape: tuple[int, ...], name: Callable[[int], str]):
    """Round leading coordinates to plane indices ``(N, len(shape) - 2)`` int64, range-checked."""
    lead = pix[:, :-2]
    idx = np.floor(lead + 0.5).astype(np.int64)
    for axis, size in enumerate(shape[:-2]):
        bad = np.flatnonzero((idx[:, axis] < 0) | (idx[:, axis] >= size))
        if bad.size:
            i = bad[0]
            raise PromptError(
                f"{name(i)}: coordinate {lead[i, axis]:g} on image axis {axis} rounds to plane "
                f"{idx[i, axis]}, outside the valid range 0..{size - 1} (image shape {shape}); "
                f"move it onto an existing plane or {_CHECK_TF}.")
    return idx


def _clip_points(yx: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Clip ``(N, 2)`` (row, col) within half a pixel of the image; raise for farther points."""
    h, w = hw
    limit = np.array([h, w], dtype=np.float64) - 0.5 + _EDGE_TOL
    bad = np.flatnonzero(np.any((yx < -0.5 - _EDGE_TOL) | (yx > limit), axis=1))
    if bad.size:
        i = bad[0]
        raise PromptError(
            f"point {i} at (x={yx[i, 1]:g}, y={yx[i, 0]:g}) lies outside the image (width {w} x "
            f"height {h} pixels; points within half a pixel of the border are clipped). Remove "
            f"the point or {_CHECK_TF}.")
    return np.clip(yx, 0.0, [h - 1.0, w - 1.0])


def _box(yx: np.ndarray, hw: tuple[int, int], i: int) -> np.ndarray:
    """Bounding box ``(4,)`` float64 XYXY of vertices ``(n, 2)`` (row, col), clipped."""
    h, w = hw
    (y0, x0), (y1, x1) = yx.min(axis=0), yx.max(axis=0)
    drawn = f"x {x0:g}..{x1:g}, y {y0:g}..{y1:g}; size {x1 - x0:g} x {y1 - y0:g} pixels"
    tol = _EDGE_TOL
    if x1 < -tol or y1 < -tol or x0 > w - 1 + tol or y0 > h - 1 + tol:
        raise PromptError(f"shape {i} ({drawn}) lies entirely outside the image (width {w} x "
                          f"height {h}); redraw it over the image or {_CHECK_TF}.")
    box = np.clip([x0, y0, x1, y1], 0.0, [w - 1.0, h - 1.0] * 2)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise PromptError(
            f"shape {i} is empty: {box[2] - box[0]:g} x {box[3] - box[1]:g} pixels after clipping "
            f"to the image (drawn: {drawn}); draw a rectangle with non-zero width and height.")
    return box


def check_in_plane(prompt: Any, hw: tuple[int, int], where: str) -> None:
    """Refuse a prompt whose points or box lie off a plane of ``hw = (H, W)`` pixels.

    A point may lie up to half a pixel outside (still on a border pixel); a box must be
    non-empty (``x1 > x0``, ``y1 > y0``) and overlap the plane. ``where`` names the
    prompt in the :class:`PromptError` message (e.g. ``"object 2 on plane (5,)"``).
    """
    h, w = (int(v) for v in hw)
    pts = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
    bad = (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)
    if bad.any():
        x, y = pts[np.argmax(bad)]
        raise PromptError(f"{where}: point (x={x:g}, y={y:g}) lies outside the {w}x{h} (WxH) "
                          "plane")
    if prompt.box is not None:
        x0, y0, x1, y1 = (float(v) for v in np.asarray(prompt.box, dtype=np.float64).reshape(4))
        if x1 <= x0 or y1 <= y0:
            raise PromptError(f"{where}: box {[x0, y0, x1, y1]} is empty (need x1 > x0, y1 > y0)")
        if x0 > w - 0.5 or y0 > h - 0.5 or x1 < -0.5 or y1 < -0.5:
            raise PromptError(f"{where}: box {[x0, y0, x1, y1]} lies outside the {w}x{h} (WxH) "
                              "plane")
