"""What :meth:`Session.segment` returns for one object on one plane."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..prompts import ObjectPrompt

__all__ = ["Segmentation"]


@dataclass
class Segmentation:
    """The best mask of one object on one plane."""

    plane: tuple[int, ...]
    obj_id: int
    mask: np.ndarray  # (H, W) bool
    score: float
    logits: np.ndarray | None  # (lr, lr) float32 (None for a region or a hand-made mask)
    prompt: ObjectPrompt | None = None  # what it was segmented from (recorded on commit)
