"""Linking objects across planes: optimal one-to-one matching by IoU, stable ids.

Used for 3D objects in volumes and tracks in time stacks (see :mod:`napari_segany.auto`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["match_labels", "PlaneLinker"]


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


