"""Overlay figures: labels drawn over an RGB plane, for PNG files and notebooks."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["label_colors", "render_overlay", "save_png"]


def label_colors(n: int, *, seed: int = 3) -> np.ndarray:
    """``(n + 1, 3)`` uint8 colours; row 0 (background) is black, the rest are vivid."""
    import colorsys

    start = np.random.default_rng(seed).uniform()
    rows = [(0.0, 0.0, 0.0)]
    golden = 0.618033988749895
    rows += [colorsys.hsv_to_rgb((start + i * golden) % 1.0, 0.85, 1.0) for i in range(n)]
    return (np.array(rows) * 255).round().astype(np.uint8)


def render_overlay(
    rgb: np.ndarray,
    labels: np.ndarray,
    *,
    alpha: float = 0.45,
    points: np.ndarray | None = None,
) -> np.ndarray:
    """Blend ``labels`` over ``rgb`` with object outlines.

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3)`` uint8 plane.
    labels : np.ndarray
        ``(H, W)`` integer labels (0 = background).
    alpha : float
        Fill opacity of objects.
    points : np.ndarray, optional
        ``(N, 2)`` (x, y) prompt points to mark with small crosses.

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8.
    """
    from skimage.segmentation import find_boundaries

    rgb = np.asarray(rgb)
    labels = np.asarray(labels)
    if rgb.shape[:2] != labels.shape or rgb.ndim != 3:
        raise ValueError(f"rgb {rgb.shape} and labels {labels.shape} do not match")
    ids, inverse = np.unique(labels, return_inverse=True)
    colours = label_colors(len(ids))
    if ids[0] != 0:
        colours = colours[1:]
    col = colours[inverse.reshape(labels.shape)].astype(np.float32)
    out = rgb.astype(np.float32)
    fg = labels > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * col[fg]
    edges = find_boundaries(labels, mode="inner") & fg
    out[edges] = col[edges]
    if points is not None:
        h, w = labels.shape
        for x, y in np.asarray(points, dtype=float).reshape(-1, 2):
            xi, yi = int(round(x)), int(round(y))
            out[max(0, yi - 3) : yi + 4, min(max(xi, 0), w - 1)] = (255, 255, 0)
            out[min(max(yi, 0), h - 1), max(0, xi - 3) : xi + 4] = (255, 255, 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 image as PNG."""
    from PIL import Image

    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(os.fspath(path), format="PNG")
