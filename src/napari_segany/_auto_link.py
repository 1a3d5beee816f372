"""Overlap resolution of candidate masks and linking of objects across planes for automatic
segmentation (used by :mod:`napari_segany.auto`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._auto_base import MaskRecord


# ----------------------------------------------------------------------------------- overlaps
def resolve_overlaps(
    masks: Sequence[MaskRecord | np.ndarray],
    scores: Sequence[float] | None = None,
    *,
    shape: tuple[int, int] | None = None,
    min_area: int = 0,
    max_overlap: float = 0.5,
) -> np.ndarray:
    """Turn possibly overlapping masks into one non-overlapping instance labels image.

    Parameters
    ----------
    masks : sequence of MaskRecord or (H, W) bool arrays
    scores : sequence of float, optional
        Painting priority of each mask (higher first). Default: a record's predicted IoU x
        stability, 1.0 for plain arrays. Ties keep the input order.
    shape : (H, W), optional
        Needed when ``masks`` holds only records (or is empty).
    min_area : int
        8-connected fragments, and then objects, with fewer pixels are removed.
    max_overlap : float
        A mask losing more than this fraction of its pixels to masks painted before it is
        dropped.

    Returns
    -------
    np.ndarray
        ``(H, W)`` uint32, ids ``1..N`` consecutive, in painting order.
    """
    recs: list[MaskRecord | None] = []
    for m in masks:
        if isinstance(m, MaskRecord):
            recs.append(m)
        else:
            arr = np.asarray(m, bool)
            if shape is None:
                shape = arr.shape
            elif arr.shape != tuple(shape):
                raise ValueError(f"mask of shape {arr.shape} in a list of {tuple(shape)} masks")
            recs.append(MaskRecord.from_mask(arr))
    if shape is None:
        raise ValueError("give shape=(H, W) for a list of MaskRecords or an empty list")
    h, w = (int(v) for v in shape)
    prio = ([r.quality if r is not None else 0.0 for r in recs] if scores is None
            else [float(v) for v in scores])
    if len(prio) != len(recs):
        raise ValueError(f"got {len(prio)} scores for {len(recs)} masks")
    labels = np.zeros((h, w), np.uint32)
    next_id = 1
    for i in np.argsort(-np.asarray(prio, np.float64), kind="stable"):
        r = recs[i]
        if r is None:
            continue
        y0, y1, x0, x1 = r.bbox
        if y0 < 0 or x0 < 0 or y1 > h or x1 > w:
            raise ValueError(f"mask {i} with box {r.bbox} lies outside the {(h, w)} plane")
        view = labels[y0:y1, x0:x1]
        area = int(r.mask.sum())
        claim = r.mask & (view == 0)
        got = int(claim.sum())
        if area == 0 or got == 0 or (area - got) > max_overlap * area:
            continue
        view[claim] = next_id
        next_id += 1
    if min_area > 0:
        labels = _remove_fragments(labels, int(min_area))
    return labels


def _remove_fragments(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Remove 8-connected pieces smaller than ``min_area`` and renumber ids consecutively."""
    from scipy import ndimage as ndi

    out = labels.copy()
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        obj = labels[sl] == i
        comp, n = ndi.label(obj, structure=np.ones((3, 3)))
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        small = sizes < min_area
        small[0] = False
        if small.any():
            out[sl][small[comp]] = 0
    return _renumber(out)


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Ids ``1..N`` keeping the order of the old ids."""
    ids = np.flatnonzero(np.bincount(labels.ravel()))
    ids = ids[ids != 0]
    if len(ids) and ids[-1] == len(ids):
        return labels.astype(np.uint32, copy=False)
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return lut[labels]


# ----------------------------------------------------------------------------------- linking
def match_labels(previous: np.ndarray, current: np.ndarray, *, min_iou: float = 0.3
                 ) -> dict[int, int]:
    """Optimal one-to-one matching of the objects of two label images by IoU.

    Returns
    -------
    dict
        current id -> previous id. Only pairs with IoU >= ``min_iou`` can be matched; among
        them the assignment maximising the total IoU is chosen (Hungarian method).
    """
    from scipy.optimize import linear_sum_assignment

    a = np.asarray(previous).ravel()
    b = np.asarray(current).ravel()
    if np.shape(previous) != np.shape(current):
        raise ValueError(f"cannot match labels of shapes {np.shape(previous)} and "
                         f"{np.shape(current)}")
    both = (a > 0) & (b > 0)
    if not both.any():
        return {}
    nb = int(b.max()) + 1
    codes, inter = np.unique(a[both].astype(np.int64) * nb + b[both], return_counts=True)
    pa, pb = codes // nb, codes % nb
    area_a, area_b = np.bincount(a.astype(np.int64)), np.bincount(b.astype(np.int64))
    iou = inter / (area_a[pa] + area_b[pb] - inter)
    ok = iou >= max(float(min_iou), 1e-12)
    if not ok.any():
        return {}
    pa, pb, iou = pa[ok], pb[ok], iou[ok]
    ra, ia = np.unique(pa, return_inverse=True)
    rb, ib = np.unique(pb, return_inverse=True)
    matrix = np.zeros((len(ra), len(rb)))
    matrix[ia, ib] = iou
    rows, cols = linear_sum_assignment(-matrix)
    return {int(rb[c]): int(ra[r]) for r, c in zip(rows, cols, strict=True) if matrix[r, c] > 0}


@dataclass
class PlaneLinker:
    """Gives the objects of successive planes stable ids (3D objects, tracks).

    Call it with each plane's labels in order; ``group`` separates independent sequences
    (e.g. each time point of a (t, z, y, x) stack linked along z). Unmatched objects get
    ``next_id``, which only increases.
    """

    min_iou: float = 0.3
    next_id: int = 1
    _previous: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    def __call__(self, labels: np.ndarray, group: Any = ()) -> np.ndarray:
        cur = np.asarray(labels)
        prev = self._previous.get(group)
        mapping = match_labels(prev, cur, min_iou=self.min_iou) if prev is not None else {}
        ids = np.flatnonzero(np.bincount(cur.ravel().astype(np.int64))) if cur.size else []
        lut = np.zeros(int(ids[-1]) + 1 if len(ids) else 1, np.uint32)
        for i in ids[1:] if len(ids) and ids[0] == 0 else ids:
            if int(i) in mapping:
                lut[i] = mapping[int(i)]
            else:
                lut[i] = self.next_id
                self.next_id += 1
        out = lut[cur]
        self._previous[group] = out
        return out


