"""A synthetic volume with two moving blobs and its ground truth, shared by the tests of
propagation, the session and the API (``from blobs import VOL, GT1, ...``)."""

from __future__ import annotations

import math

import numpy as np

Z, H, W = 30, 96, 96
YY, XX = np.mgrid[:H, :W]


def disc(cy: float, cx: float, r: float) -> np.ndarray:
    return (YY - cy) ** 2 + (XX - cx) ** 2 <= r**2


# Blob 1: planes 5..24, moves right and grows then shrinks. Blob 2: planes 8..20, elsewhere.
def blob1(z: int, z0: int = 5, z1: int = 24) -> np.ndarray:
    if not z0 <= z <= z1:
        return np.zeros((H, W), bool)
    t = z - z0
    return disc(30, 22 + 1.5 * t, 8 + 5 * math.sin(math.pi * (t + 1) / (z1 - z0 + 2)))


def blob2(z: int) -> np.ndarray:
    if not 8 <= z <= 20:
        return np.zeros((H, W), bool)
    return disc(72, 72 - 1.2 * (z - 8), 6 + 3 * math.sin(math.pi * (z - 7) / 14))


def make_volume(*truths: np.ndarray, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    """Noisy dark background, bright objects (uint8: ~0..40 and ~200..240)."""
    rng = np.random.default_rng(seed)
    shape = truths[0].shape
    vol = rng.integers(0, 40, size=shape).astype(np.float64)
    for t in truths:
        vol[t] += 200
    scale = 1 if dtype == np.uint8 else 40
    return (vol * scale + (0 if dtype == np.uint8 else 500)).astype(dtype)


GT1 = np.stack([blob1(z) for z in range(Z)])
GT2 = np.stack([blob2(z) for z in range(Z)])
VOL = make_volume(GT1, GT2)


def center(mask: np.ndarray) -> list[list[float]]:
    r, c = np.argwhere(mask).mean(axis=0)
    return [[float(c), float(r)]]


def bbox(mask: np.ndarray) -> list[float]:
    r, c = np.nonzero(mask)
    return [c.min() - 2.0, r.min() - 2.0, c.max() + 2.0, r.max() + 2.0]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))
