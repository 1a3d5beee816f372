"""Limits that every part of the package checks in the same way.

* Object ids are uint32 labels: 1 .. :data:`MAX_OBJECT_ID` (0 is background).
* One plane is read, segmented and written whole: planes above :data:`MAX_PLANE_PIXELS`
  pixels (32768 x 32768) are refused before anything is written, with what to do instead
  (stores that large are fine on disk: an empty 16 GiB store takes a few MiB).
* A prompt of one object holds at most :data:`MAX_POINTS` points (SAM's decoder attends
  over every point pair: memory grows with the square of the number of points).
"""

from __future__ import annotations

import math

__all__ = ["MAX_OBJECT_ID", "MAX_PLANE_PIXELS", "MAX_POINTS", "check_plane_pixels",
           "check_known_shape"]

MAX_OBJECT_ID = 2**32 - 1
MAX_PLANE_PIXELS = 2**30
MAX_POINTS = 1024


def check_known_shape(data: object) -> None:
    """Refuse an array whose shape is not known (a dask array with unknown chunk sizes)."""
    shape = tuple(getattr(data, "shape", ()))
    if any(not isinstance(s, int) and not (hasattr(s, "__index__")) for s in shape):
        raise TypeError(f"the array's shape {shape} has unknown sizes (e.g. a dask array with "
                        "unknown chunk sizes): call .compute_chunk_sizes() on it first")


def check_plane_pixels(shape: tuple[int, ...], what: str, *, error: type[Exception] = ValueError,
                       itemsize: int | None = None) -> None:
    """Refuse data whose 2D planes (the last two axes of ``shape``) are too large to hold."""
    h, w = (int(v) for v in shape[-2:])
    if h * w <= MAX_PLANE_PIXELS:
        return
    size = "" if itemsize is None else f", {h * w * int(itemsize) / 2**30:.3g} GiB"
    side = int(math.isqrt(MAX_PLANE_PIXELS))
    raise error(f"{what} has planes of {h} x {w} pixels{size}; one plane must fit in memory "
                f"(at most {MAX_PLANE_PIXELS} pixels, e.g. {side} x {side}): crop it, or split "
                "it into smaller planes first")

