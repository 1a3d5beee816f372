"""Synthetic images for the scale-out tests: bright discs and balls on a noisy background."""

from __future__ import annotations

import numpy as np


def discs(shape: tuple[int, int], n: int, *, seed: int = 0, rmax: float = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = shape
    img = rng.integers(0, 40, shape).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(n):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, rmax)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 220
    return img


def balls(shape: tuple[int, int, int], n: int, *, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, h, w = shape
    vol = rng.integers(0, 40, shape).astype(np.uint8)
    zz, yy, xx = np.mgrid[:z, :h, :w]
    for _ in range(n):
        cz, cy, cx = rng.uniform(0, z), rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(3, 30)
        vol[((zz - cz) * 8) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 220
    return vol
