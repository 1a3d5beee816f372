"""Segmentation metrics: region overlap, instance matching, surface Dice, DAVIS J and F.

All functions take numpy arrays (no torch) and return Python floats or dicts of floats.

Definitions
-----------
IoU, Dice
    ``|A & B| / |A | B|`` and ``2 |A & B| / (|A| + |B|)``; both empty: 1.0 (nothing was
    to be found and nothing was found, as in DAVIS).
Segmentation accuracy at threshold t (micro-sam, python-elf, StarDist)
    ``TP / (TP + FP + FN)`` with an optimal one-to-one matching of true and predicted
    instances that maximises the number of pairs with IoU >= t (Hungarian method on
    ``-(IoU >= t) - IoU / (2 n)``, the StarDist cost); mSA is its mean over
    t = 0.50, 0.55, ..., 0.95; precision ``TP / (TP + FP)``, recall ``TP / (TP + FN)`` and
    F1 at t = 0.5.
Normalised surface Dice (Nikolov et al. 2021), as MONAI's ``compute_surface_dice``
    The surface of a mask is its voxels that binary erosion (face connectivity) removes;
    ``(|S_A within tau of S_B| + |S_B within tau of S_A|) / (|S_A| + |S_B|)`` with
    Euclidean distances in physical units (``spacing``, e.g. mm). Both empty: NaN.
DAVIS J and F (Perazzi et al. 2016; the davis2017-evaluation code)
    J is the IoU above. F is the F-measure of boundary precision and recall: boundaries
    are one-pixel maps (a pixel differs from its east, south or south-east neighbour), a
    boundary pixel counts as matched when the other boundary lies within
    ``ceil(0.008 * image diagonal)`` pixels (a disk).

The matching uses :func:`scipy.optimize.linear_sum_assignment`, overlaps
:func:`skimage.metrics.contingency_table`, distances :func:`scipy.ndimage.distance_transform_edt`
(maintained implementations; what is written here is only the definitions above).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["IOU_THRESHOLDS", "iou", "dice", "overlap_matrix", "match_instances",
           "segmentation_accuracy", "instance_scores", "surface_dice", "boundary_map",
           "davis_j", "davis_f", "bbox_slices"]

#: Thresholds of mSA: 0.50, 0.55, ..., 0.95.
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _bool(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    return arr if arr.dtype == bool else arr != 0


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"masks of different shapes: {a.shape} (truth) and {b.shape} "
                         "(prediction)")


def iou(truth: Any, pred: Any) -> float:
    """IoU of two binary masks of the same shape (1.0 when both are empty)."""
    t, p = _bool(truth, "truth"), _bool(pred, "pred")
    _same_shape(t, p)
    union = np.count_nonzero(t | p)
    return 1.0 if union == 0 else float(np.count_nonzero(t & p) / union)


def dice(truth: Any, pred: Any) -> float:
    """Dice coefficient of two binary masks (1.0 when both are empty)."""
    t, p = _bool(truth, "truth"), _bool(pred, "pred")
    _same_shape(t, p)
    total = np.count_nonzero(t) + np.count_nonzero(p)
    return 1.0 if total == 0 else float(2.0 * np.count_nonzero(t & p) / total)


def bbox_slices(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the bounding box of a non-empty mask, grown by ``margin`` (None if empty)."""
    out = []
    for ax in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        if not idx.size:
            return None
        out.append(slice(max(0, int(idx[0]) - margin),
                         min(mask.shape[ax], int(idx[-1]) + 1 + margin)))
    return tuple(out)


# ------------------------------------------------------------------------- instances
def _labels(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{what} labels must be integers, got {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"{what} labels must be >= 0 (0 is background)")
    return arr


def overlap_matrix(truth: Any, pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every true with every predicted instance.

    Parameters
    ----------
    truth, pred : np.ndarray
        Integer instance labels of the same shape (any dimension); 0 is background.

    Returns
    -------
    ious : np.ndarray
        ``(n_true, n_pred)`` float64.
    true_ids, pred_ids : np.ndarray
        The instance ids of the rows and columns (sorted, without 0).
    """
    t, p = _labels(truth, "true"), _labels(pred, "predicted")
    _same_shape(t, p)
    from skimage.metrics import contingency_table

    t_ids, t_inv = np.unique(t, return_inverse=True)
    p_ids, p_inv = np.unique(p, return_inverse=True)
    table = contingency_table(t_inv.reshape(t.shape), p_inv.reshape(p.shape),
                              normalize=False).toarray()
    rows = np.flatnonzero(t_ids != 0)
    cols = np.flatnonzero(p_ids != 0)
    inter = table[np.ix_(rows, cols)].astype(np.float64)
    t_area = table.sum(axis=1)[rows].astype(np.float64)
    p_area = table.sum(axis=0)[cols].astype(np.float64)
    union = t_area[:, None] + p_area[None, :] - inter
    ious = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return ious, t_ids[rows], p_ids[cols]


def match_instances(ious: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching maximising the number of pairs with IoU >= ``threshold``.

    Returns the row and column indices of the matched pairs (IoU >= threshold only).
    """
    from scipy.optimize import linear_sum_assignment

    if ious.size == 0:
        return np.zeros(0, int), np.zeros(0, int)
    n = min(ious.shape)
    cost = -(ious >= threshold).astype(np.float64) - ious / (2.0 * n)
    rows, cols = linear_sum_assignment(cost)
    keep = ious[rows, cols] >= threshold
    return rows[keep], cols[keep]


def segmentation_accuracy(truth: Any, pred: Any, threshold: float = 0.5) -> float:
    """``TP / (TP + FP + FN)`` at one IoU threshold (see the module docstring)."""
    ious, t_ids, p_ids = overlap_matrix(truth, pred)
    return _sa(ious, threshold)


def _sa(ious: np.ndarray, threshold: float) -> float:
    n_t, n_p = ious.shape
    if n_t == 0 and n_p == 0:
        return 1.0
    tp = len(match_instances(ious, threshold)[0])
    return tp / (n_t + n_p - tp)


def instance_scores(truth: Any, pred: Any, *,
                    thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, Any]:
    """Instance metrics of a predicted labelling against the true one.

    Returns
    -------
    dict
        ``msa`` (mean SA over ``thresholds``), ``sa50``, ``sa75``, ``precision``,
        ``recall``, ``f1`` (at IoU 0.5), ``n_true``, ``n_pred``, ``tp50``, ``sa`` (SA at
        each threshold) and ``matched_iou``: ``{true id: IoU of its partner}`` under
        the matching at 0.5 (0.0 for a true instance without one; a true instance whose
        best overlap is below 0.5 gets that best IoU).
    """
    ious, t_ids, p_ids = overlap_matrix(truth, pred)
    n_t, n_p = ious.shape
    sa = {float(t): _sa(ious, t) for t in thresholds}
    rows, cols = match_instances(ious, 0.5)
    tp = len(rows)
    best = ious.max(axis=1) if n_p else np.zeros(n_t)
    matched = {int(t_ids[i]): float(best[i]) for i in range(n_t)}
    for r, c in zip(rows, cols, strict=False):
        matched[int(t_ids[r])] = float(ious[r, c])
    precision = tp / n_p if n_p else (1.0 if n_t == 0 else 0.0)
    recall = tp / n_t if n_t else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"msa": float(np.mean(list(sa.values()))), "sa50": _sa(ious, 0.5),
            "sa75": _sa(ious, 0.75), "precision": precision, "recall": recall, "f1": f1,
            "n_true": n_t, "n_pred": n_p, "tp50": tp, "sa": sa, "matched_iou": matched}


# ------------------------------------------------------------------------- surfaces
def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return mask & ~ndi.binary_erosion(mask)


def surface_dice(truth: Any, pred: Any, *, tolerance: float,
                 spacing: Sequence[float] | None = None) -> float:
    """Normalised surface Dice of two binary masks (2D or 3D).

    Parameters
    ----------
    truth, pred : np.ndarray
        Binary masks of the same shape, e.g. ``(Z, Y, X)``.
    tolerance : float
        Distance within which surfaces count as matching, in the unit of ``spacing``
        (e.g. mm).
    spacing : sequence of float, optional
        Voxel size along each axis of the masks (``(dz, dy, dx)``); default 1.

    Returns
    -------
    float
        In [0, 1]; NaN when both masks are empty, 0.0 when one is.
    """
    from scipy import ndimage as ndi

    t, p = _bool(truth, "truth"), _bool(pred, "pred")
    _same_shape(t, p)
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    sp = (1.0,) * t.ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(sp) != t.ndim or min(sp) <= 0:
        raise ValueError(f"spacing {spacing} must give one positive size per axis of {t.shape}")
    box = bbox_slices(t | p, margin=1)
    if box is None:
        return float("nan")
    t, p = t[box], p[box]
    st, sp_ = _surface(t), _surface(p)
    n_t, n_p = np.count_nonzero(st), np.count_nonzero(sp_)
    if n_t == 0 or n_p == 0:
        return 0.0
    d_to_t = ndi.distance_transform_edt(~st, sampling=sp)
    d_to_p = ndi.distance_transform_edt(~sp_, sampling=sp)
    good = np.count_nonzero(d_to_t[sp_] <= tolerance) + np.count_nonzero(d_to_p[st] <= tolerance)
    return float(good / (n_t + n_p))


# ------------------------------------------------------------------------- DAVIS
def boundary_map(mask: Any) -> np.ndarray:
    """One-pixel boundary of a 2D mask, as DAVIS's ``seg2bmap`` (pixels differing from
    their east, south or south-east neighbour; the last row and column compare along
    themselves)."""
    seg = _bool(mask, "mask")
    if seg.ndim != 2:
        raise ValueError(f"boundary maps are 2D, got shape {seg.shape}")
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def davis_j(truth: Any, pred: Any) -> float:
    """DAVIS region similarity J: the IoU, 1.0 when both masks are empty."""
    return iou(truth, pred)


def davis_f(truth: Any, pred: Any, *, bound_th: float = 0.008) -> float:
    """DAVIS boundary F-measure of two 2D masks.

    ``bound_th`` < 1 is a fraction of the image diagonal (DAVIS: 0.008), >= 1 pixels.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    t, p = _bool(truth, "truth"), _bool(pred, "pred")
    _same_shape(t, p)
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*t.shape))
    bt, bp = boundary_map(t), boundary_map(p)
    n_t, n_p = int(np.count_nonzero(bt)), int(np.count_nonzero(bp))
    if n_t == 0 and n_p == 0:
        return 1.0
    if n_t == 0 or n_p == 0:
        return 0.0  # precision 1 / recall 0 (or the reverse): F = 0
    foot = disk(radius).astype(bool)
    box = bbox_slices(bt | bp, margin=int(radius) + 1)
    bt, bp = bt[box], bp[box]
    precision = np.count_nonzero(bp & ndi.binary_dilation(bt, structure=foot)) / n_p
    recall = np.count_nonzero(bt & ndi.binary_dilation(bp, structure=foot)) / n_t
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))
