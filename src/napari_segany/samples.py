"""Sample data the package makes without a network: a 2D nuclei image and a 3D volume.

Both are synthetic fluorescence-like images with their ground-truth labels, so that
demos, the quick start and tests can check what a segmentation found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Sample", "SAMPLES", "load_sample", "nuclei_2d", "blob_volume"]


@dataclass
class Sample:
    """A sample image with its ground truth.

    Attributes
    ----------
    name : str
    image : np.ndarray
        ``nuclei``: ``(256, 256)`` uint16; ``volume``: ``(24, 128, 128)`` uint16 (z, y, x).
    labels : np.ndarray
        Ground-truth uint32 labels of the same shape.
    point : tuple
        A positive click ``(x, y)`` (plus the plane for volumes) on one object.
    point_plane : tuple of int
        Plane key of ``point`` (``()`` for 2D).
    object_id : int
        The ground-truth id under ``point``.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    point: tuple[float, float]
    point_plane: tuple[int, ...]
    object_id: int


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(rng.normal(size=shape), scale)


def nuclei_2d(seed: int = 0) -> Sample:
    """A 256x256 uint16 image of 14 elliptical nuclei with textured interiors and noise."""
    rng = np.random.default_rng(seed)
    h = w = 256
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    labels = np.zeros((h, w), np.uint32)
    image = np.full((h, w), 300.0)
    centres: list[tuple[float, float]] = []
    oid = 0
    while oid < 14:
        cy, cx = rng.uniform(28, h - 28), rng.uniform(28, w - 28)
        if any((cy - y) ** 2 + (cx - x) ** 2 < 42**2 for y, x in centres):
            continue
        ry, rx, theta = rng.uniform(11, 19), rng.uniform(11, 19), rng.uniform(0, np.pi)
        c, s = np.cos(theta), np.sin(theta)
        u = ((xx - cx) * c + (yy - cy) * s) / rx
        v = (-(xx - cx) * s + (yy - cy) * c) / ry
        inside = u**2 + v**2 <= 1
        oid += 1
        labels[inside] = oid
        image[inside] += rng.uniform(1800, 3200)
        centres.append((cy, cx))
    image += 400 * _smooth_noise(rng, (h, w), 2.0) * (labels > 0)
    image += rng.normal(0, 60, size=(h, w))
    image = np.clip(image, 0, 65535).astype(np.uint16)
    cy, cx = centres[0]
    return Sample("nuclei", image, labels, (round(cx, 1), round(cy, 1)), (), 1)


def blob_volume(seed: int = 0, depth: int = 24) -> Sample:
    """A (z, y, x) uint16 volume with one ellipsoid-like blob that moves and changes size.

    The blob exists on planes 2 to ``depth - 3``; its cross-section grows then shrinks.
    """
    rng = np.random.default_rng(seed)
    h = w = 128
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    labels = np.zeros((depth, h, w), np.uint32)
    image = np.full((depth, h, w), 200.0)
    first, last = 2, depth - 3
    mid = (first + last) / 2
    for z in range(first, last + 1):
        t = (z - first) / max(1, last - first)
        radius = 10 + 14 * np.sqrt(max(0.0, 1 - ((z - mid) / (mid - first + 1)) ** 2))
        cy, cx = 50 + 30 * t, 45 + 35 * t
        inside = ((yy - cy) / radius) ** 2 + ((xx - cx) / (radius * 0.8)) ** 2 <= 1
        labels[z][inside] = 1
        image[z][inside] += 2500
    image += rng.normal(0, 80, size=image.shape)
    image = np.clip(image, 0, 65535).astype(np.uint16)
    z0 = int(round(mid))
    ys, xs = np.nonzero(labels[z0])
    return Sample("volume", image, labels, (float(xs.mean()), float(ys.mean())), (z0,), 1)


SAMPLES = {"nuclei": nuclei_2d, "volume": blob_volume}


def load_sample(name: str) -> Sample:
    """A sample by name: ``"nuclei"`` (2D) or ``"volume"`` (3D)."""
    try:
        return SAMPLES[name]()
    except KeyError:
        raise ValueError(f"unknown sample {name!r}; choose one of {sorted(SAMPLES)}") from None
