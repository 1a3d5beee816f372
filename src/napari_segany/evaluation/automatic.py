"""Protocol 2, automatic 2D: segment everything on a plane and match it to the instances.

Each plane with ground truth is segmented with :func:`napari_segany.auto.segment_everything`
(the model's own generator for SAM/SAM2, the generic point grid otherwise) on the plane's
embedding, and scored with :func:`.metrics.instance_scores`: mSA over IoU thresholds
0.50:0.05:0.95, SA50, SA75, and precision, recall and F1 at IoU 0.5. A given prediction
(e.g. a labels store) is scored the same way, plane by plane.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..auto import AutoSettings, segment_everything
from ._common import Steps, check, plane_text, planes_with_objects, row
from .metrics import IOU_THRESHOLDS, instance_scores

__all__ = ["AutomaticSettings", "run_automatic", "score_plane"]

PROTOCOL = "automatic"


@dataclass(frozen=True)
class AutomaticSettings:
    """Settings of the automatic protocol.

    Attributes
    ----------
    auto : AutoSettings
        Automatic segmentation (points per side, thresholds, generator, ...).
    thresholds : tuple of float
        IoU thresholds averaged into mSA.
    """

    auto: AutoSettings = field(default_factory=AutoSettings)
    thresholds: tuple[float, ...] = IOU_THRESHOLDS

    def __post_init__(self) -> None:
        if not self.thresholds or not all(0 < t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds must lie in (0, 1], got {self.thresholds}")


def score_plane(gt: np.ndarray, pred: np.ndarray, *, model: str, dataset: str, method: str,
                key: tuple[int, ...], thresholds: tuple[float, ...]) -> list[dict[str, Any]]:
    """Rows of one plane: one with the instance scores, one per true object (its matched IoU)."""
    sc = instance_scores(gt, pred, thresholds=thresholds)
    plane = plane_text(key)
    out = [row(model, dataset, PROTOCOL, method, plane=plane, source="plane",
               **{k: sc[k] for k in ("msa", "sa50", "sa75", "precision", "recall", "f1",
                                     "n_true", "n_pred")})]
    areas = np.bincount(gt.ravel().astype(np.int64))
    for oid, value in sc["matched_iou"].items():
        out.append(row(model, dataset, PROTOCOL, method, plane=plane, object_id=oid,
                       source="matched" if value >= 0.5 else "missed", iou=value,
                       area_true=int(areas[oid])))
    return out


def run_automatic(
    source: Any,
    truth: np.ndarray,
    *,
    model: str,
    dataset: str,
    settings: AutomaticSettings,
    prediction: np.ndarray | None = None,
    skip: set[str] = frozenset(),
    steps: Steps | None = None,
    cancel: Any = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Segment everything on each plane with objects (or read ``prediction``); yields
    ``(unit, rows)`` per plane."""
    keys = [k for k in planes_with_objects(truth) if plane_text(k) not in skip]
    if steps is not None:
        steps.add(len(keys))
    method = "prediction" if prediction is not None else "everything"
    for key in keys:
        check(cancel)
        gt = np.asarray(truth[key])
        if prediction is not None:
            pred = np.asarray(prediction[key])
        else:
            pred = segment_everything(source.backend, source.plane_rgb(key),
                                      embedding=source.embedding(key), settings=settings.auto,
                                      cancel=cancel)
        yield plane_text(key), score_plane(gt, pred, model=model, dataset=dataset,
                                           method=method, key=key,
                                           thresholds=settings.thresholds)
        if steps is not None:
            steps.tick()
