"""Settings of automatic segmentation and the candidate mask record it produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["AutoSettings", "MaskRecord"]


@dataclass(frozen=True)
class AutoSettings:
    """Knobs of automatic segmentation (names follow segment-anything's generator).

    Attributes
    ----------
    points_per_side : int
        The point grid has ``points_per_side ** 2`` prompts per crop (32 by default).
    points_per_batch : int
        Prompts per decoder call (progress is reported per batch).
    pred_iou_thresh : float or None
        Keep masks whose predicted IoU is above this; None: the family's default (SAM 0.88,
        SAM2 0.8, others 0.88).
    stability_score_thresh, stability_score_offset : float
        Keep masks whose stability (IoU of the mask thresholded at +-offset) is at least this.
    box_nms_thresh : float
        Box IoU above which duplicates are removed.
    crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor :
        Optional crop layers (SAM/SAM2 generators only; the ``grid`` generator has none).
    min_region_area : int
        Fill holes and remove islands smaller than this inside each candidate mask before
        resolving overlaps (done here with scipy; no OpenCV or CUDA extension needed).
    min_area : int
        Remove fragments and objects smaller than this after resolving overlaps (16).
    max_overlap : float
        Drop a mask that loses more than this fraction of its area to better masks.
    use_m2m : bool
        SAM2 only: one refinement step using the previous mask.
    generator : {"auto", "model", "grid"}
        ``"model"``: the SAM/SAM2 model's own generator; ``"grid"``: the generic point grid
        on the backend protocol (any backend); ``"auto"``: ``"model"`` when available.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float | None = None
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_region_area: int = 0
    min_area: int = 16
    max_overlap: float = 0.5
    use_m2m: bool = False
    generator: str = "auto"

    def __post_init__(self) -> None:
        if int(self.points_per_side) < 1 or int(self.points_per_batch) < 1:
            raise ValueError("points_per_side and points_per_batch must be >= 1, got "
                             f"{self.points_per_side} and {self.points_per_batch}")
        if not 0.0 <= float(self.max_overlap) <= 1.0:
            raise ValueError(f"max_overlap must lie in [0, 1], got {self.max_overlap}")
        if int(self.crop_n_layers) < 0 or int(self.min_area) < 0 or int(self.min_region_area) < 0:
            raise ValueError("crop_n_layers, min_area and min_region_area must be >= 0")
        if self.generator not in ("auto", "model", "grid"):
            raise ValueError(f"generator must be 'auto', 'model' or 'grid', not "
                             f"{self.generator!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MaskRecord:
    """One candidate mask, stored cropped to its bounding box.

    Attributes
    ----------
    mask : np.ndarray
        ``(y1 - y0, x1 - x0)`` bool.
    bbox : (y0, y1, x0, x1)
        End exclusive, in pixels of the image it was generated on.
    score : float
        Predicted IoU.
    stability : float
        Stability score (1.0 when unknown).
    """

    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    score: float = 1.0
    stability: float = 1.0

    @classmethod
    def from_mask(cls, mask: np.ndarray, score: float = 1.0, stability: float = 1.0
                  ) -> MaskRecord | None:
        """Crop a full ``(H, W)`` mask; None when it is empty."""
        m = np.asarray(mask, bool)
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if not rows.size:
            return None
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(m[y0:y1, x0:x1].copy(), (y0, y1, x0, x1), float(score), float(stability))

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def quality(self) -> float:
        return float(self.score) * float(self.stability)

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, bool)
        y0, y1, x0, x1 = self.bbox
        out[y0:y1, x0:x1] = self.mask
        return out
