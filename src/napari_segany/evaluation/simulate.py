"""Simulated user prompts, derived from ground truth (and from a model's errors).

The protocols of micro-sam's ``micro_sam.evaluation`` are followed:

* the first prompt of an object is one positive point at its most interior pixel (the
  maximum of the distance transform; the first such pixel in row-major order) or its
  bounding box ``(x0, y0, x1, y1)`` through the centres of its extreme pixels;
* each correction adds one positive point in the false-negative region (truth, not
  predicted) and one negative point in the false-positive region (predicted, not truth).
  When the prediction has no false negatives, the positive point goes where it is already
  right; without false positives, the negative point goes into a 3-pixel ring around the
  object inside its bounding box, or into the background if that ring is empty. Every
  object therefore gets the same number of points, so all objects of a plane are decoded
  in one batched call.

Two ways to pick a point in a region: ``"center"`` (deterministic: the pixel farthest from
the region's border, i.e. the maximum of its distance transform) and ``"random"`` (uniform
over the region, from a generator seeded per dataset, plane and object, so every model
gets the same random stream). Points are ``(x, y) = (column, row)`` pixel coordinates.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ..prompts import ObjectPrompt
from .metrics import bbox_slices

__all__ = ["POINT_MODES", "interior_point", "region_point", "object_box", "first_prompt",
           "correction_points", "object_rng"]

POINT_MODES = ("center", "random")


def interior_point(mask: np.ndarray) -> np.ndarray:
    """``(2,)`` float ``(x, y)`` of the pixel of a non-empty 2D mask farthest from its border.

    The image border counts as border. Ties go to the first pixel in row-major order.
    """
    from scipy import ndimage as ndi

    box = bbox_slices(mask)
    if box is None:
        raise ValueError("cannot place a point in an empty region")
    crop = np.pad(np.asarray(mask[box], dtype=bool), 1)
    dist = ndi.distance_transform_edt(crop)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([col + box[1].start, row + box[0].start], dtype=np.float64)


def region_point(mask: np.ndarray, mode: str, rng: np.random.Generator | None) -> np.ndarray:
    """A point in a non-empty region: its interior point, or a uniformly random pixel."""
    if mode == "center":
        return interior_point(mask)
    if mode != "random":
        raise ValueError(f"point mode must be one of {POINT_MODES}, got {mode!r}")
    idx = np.flatnonzero(mask)
    if not idx.size:
        raise ValueError("cannot place a point in an empty region")
    k = int(idx[int((rng or np.random.default_rng()).integers(idx.size))])
    row, col = divmod(k, mask.shape[1])
    return np.array([col, row], dtype=np.float64)


def object_box(mask: np.ndarray) -> np.ndarray:
    """``(4,)`` float XYXY box through the centres of a non-empty mask's extreme pixels.

    An object one pixel thin (a sliver left by a tile or image border, a line) would get a
    box of no height or width, which is no box: its box then spans that pixel's extent
    (half a pixel either side of its centre) along the thin side."""
    box = bbox_slices(mask)
    if box is None:
        raise ValueError("an empty object has no box")
    ys, xs = box
    x0, y0, x1, y1 = float(xs.start), float(ys.start), float(xs.stop - 1), float(ys.stop - 1)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def object_rng(seed: int, *parts: Any) -> np.random.Generator:
    """A generator seeded by ``seed`` and e.g. (dataset, plane, object): the same for all
    models, independent of the order objects are visited in."""
    words = [int(seed) & 0xFFFFFFFF]
    for part in parts:
        words.append(zlib.crc32(repr(part).encode()) & 0xFFFFFFFF)
    return np.random.default_rng(words)


def first_prompt(mask: np.ndarray, start: str, *, mode: str = "center",
                 rng: np.random.Generator | None = None) -> ObjectPrompt:
    """The initial prompt of one object: ``start="point"`` (one positive point) or
    ``"box"`` (its bounding box). ``mode="random"`` picks a random object pixel instead
    of the most interior one."""
    if start == "point":
        return ObjectPrompt(points=[region_point(mask, mode, rng)], labels=[1])
    if start == "box":
        return ObjectPrompt(box=object_box(mask))
    raise ValueError(f"start must be 'point' or 'box', got {start!r}")


_RING = 3


def _ring(truth: np.ndarray, width: int = _RING) -> np.ndarray:
    """Pixels of the object's bounding box grown by ``width``, minus the object."""
    box = bbox_slices(truth, margin=width)
    ring = np.zeros_like(truth)
    if box is not None:
        ring[box] = True
    return ring & ~truth


def correction_points(truth: np.ndarray, pred: np.ndarray, mode: str = "center",
                      rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One positive and one negative correction point for one object.

    Parameters
    ----------
    truth, pred : np.ndarray
        ``(H, W)`` bool: the object and the model's current mask of it.
    mode : {"center", "random"}
    rng : numpy Generator, optional
        For ``mode="random"``.

    Returns
    -------
    points : np.ndarray
        ``(2, 2)`` float ``(x, y)``: the positive point, then the negative one.
    labels : np.ndarray
        ``(2,)`` int32 ``[1, 0]``.
    """
    # everything happens inside the union of both masks' boxes grown by the ring width
    box = bbox_slices(truth | pred, margin=_RING + 1)
    if box is None:
        raise ValueError("cannot correct an empty object")
    t, p = truth[box], pred[box]
    offset = np.array([box[1].start, box[0].start], dtype=np.float64)
    fn = t & ~p
    pos_region = fn if fn.any() else (t & p)
    if not pos_region.any():  # cannot happen for a non-empty object; kept for safety
        pos_region = t
    pos = region_point(pos_region, mode, rng) + offset
    neg_region = p & ~t
    if not neg_region.any():
        neg_region = _ring(t)
    if neg_region.any():
        neg = region_point(neg_region, mode, rng) + offset
    elif (~truth).any():  # the background far away (the object fills its grown box)
        neg = region_point(~truth, mode, rng)
    else:  # the object fills the plane: a second positive point
        return np.stack([pos, pos]), np.array([1, 1], dtype=np.int32)
    return np.stack([pos, neg]), np.array([1, 0], dtype=np.int32)
