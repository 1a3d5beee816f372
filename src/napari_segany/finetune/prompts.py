"""Prompts simulated for training, as micro-sam's trainer samples them.

Every training step takes a batch of objects of one plane and:

1. starts from **one positive point with three candidate masks** (multimask output) on even
   steps and from **the object's box with one mask** on odd steps (micro-sam alternates the
   two the same way);
2. runs ``n_corrections`` correction rounds: each adds one positive point in the object's
   false-negative region and one negative point in its false-positive region of the last
   prediction (the best candidate of a multimask prediction), and with probability
   ``logits_prob`` (0.5) feeds the last low-resolution logits back as a mask input.

Points are random pixels of their region (micro-sam samples randomly too), drawn from a
generator seeded per epoch and step, so a resumed run draws the same prompts. The point
picking of corrections is the evaluation package's (:func:`~napari_segany.evaluation.
simulate.correction_points`), so training and evaluation place corrections alike.

Everything here is numpy, in the frame the targets are given in; the trainer scales the
coordinates to the model's input frame.
"""

from __future__ import annotations

import numpy as np

from ..evaluation.simulate import correction_points, object_box, region_point

__all__ = ["first_prompts", "add_corrections", "start_of_step"]


def start_of_step(step: int) -> str:
    """``"point"`` on even steps, ``"box"`` on odd ones."""
    return "point" if int(step) % 2 == 0 else "box"


def first_prompts(masks: np.ndarray, start: str, rng: np.random.Generator
                  ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """First prompts of a batch of objects.

    Parameters
    ----------
    masks : np.ndarray
        ``(B, H, W)`` bool, one non-empty object each.
    start : {"point", "box"}
    rng : numpy Generator

    Returns
    -------
    coords : ``(B, 1, 2)`` float32 ``(x, y)`` or None
    labels : ``(B, 1)`` int32 or None
    boxes : ``(B, 4)`` float32 XYXY or None
    """
    if start == "point":
        coords = np.stack([region_point(m, "random", rng) for m in masks])[:, None]
        return coords.astype(np.float32), np.ones((len(masks), 1), np.int32), None
    if start == "box":
        return None, None, np.stack([object_box(m) for m in masks]).astype(np.float32)
    raise ValueError(f"start must be 'point' or 'box', got {start!r}")


def add_corrections(masks: np.ndarray, preds: np.ndarray, coords: np.ndarray | None,
                    labels: np.ndarray | None, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Append one positive (false-negative) and one negative (false-positive) point per object.

    ``masks`` and ``preds`` are ``(B, H, W)`` bool; returns the new ``(B, N + 2, 2)`` coords
    and ``(B, N + 2)`` labels.
    """
    new = [correction_points(m, p, "random", rng) for m, p in zip(masks, preds, strict=True)]
    pts = np.stack([c for c, _ in new]).astype(np.float32)
    lab = np.stack([la for _, la in new]).astype(np.int32)
    if coords is None:
        return pts, lab
    return np.concatenate([coords, pts], 1), np.concatenate([labels, lab], 1)
