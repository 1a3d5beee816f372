"""Training losses: Dice + class-balanced binary cross-entropy on masks, MSE on predicted IoU."""

from __future__ import annotations

from typing import Any

__all__ = ["mask_losses", "mask_iou"]


def mask_iou(logits: Any, target: Any) -> Any:
    """``(B, M)`` IoU of the thresholded logits ``(B, M, h, w)`` with ``(B, 1, h, w)`` targets."""
    pred = logits > 0
    t = target > 0.5
    inter = (pred & t).sum((-2, -1)).float()
    union = (pred | t).sum((-2, -1)).float()
    return inter / union.clamp(min=1)


def mask_losses(logits: Any, target: Any) -> tuple[Any, Any]:
    """Per-candidate loss ``(B, M)`` (Dice + BCE) and the candidates' true IoU ``(B, M)``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, M, h, w)`` float mask logits.
    target : torch.Tensor
        ``(B, 1, h, w)`` float 0/1.
    """
    import torch.nn.functional as F

    logits = logits.float()
    t = target.float().expand_as(logits)
    prob = logits.sigmoid()
    inter = (prob * t).sum((-2, -1))
    dice = 1 - (2 * inter + 1) / (prob.sum((-2, -1)) + t.sum((-2, -1)) + 1)
    # class-balanced BCE: the mean over the object's pixels and the mean over the others,
    # averaged. A plain mean over the frame lets a small object's pixels count for almost
    # nothing, and a random-init decoder then collapses to "no object" (measured on nuclei).
    per_px = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    n_pos = t.sum((-2, -1))
    n_neg = t[0, 0].numel() - n_pos
    bce = 0.5 * ((per_px * t).sum((-2, -1)) / n_pos.clamp(min=1)
                 + (per_px * (1 - t)).sum((-2, -1)) / n_neg.clamp(min=1))
    return dice + bce, mask_iou(logits.detach(), target)
