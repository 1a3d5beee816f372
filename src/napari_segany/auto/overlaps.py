"""Overlap resolution: candidate masks become one non-overlapping instance labels image.

The overlap rule is described in :mod:`napari_segany.auto`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .settings import MaskRecord

__all__ = ["resolve_overlaps", "remove_fragments", "renumber"]


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
        labels = remove_fragments(labels, int(min_area))
    return labels


def remove_fragments(labels: np.ndarray, min_area: int) -> np.ndarray:
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
    return renumber(out)


def renumber(labels: np.ndarray) -> np.ndarray:
    """Ids ``1..N`` keeping the order of the old ids."""
    ids = np.flatnonzero(np.bincount(labels.ravel()))
    ids = ids[ids != 0]
    if len(ids) and ids[-1] == len(ids):
        return labels.astype(np.uint32, copy=False)
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return lut[labels]
