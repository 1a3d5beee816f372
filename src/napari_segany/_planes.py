"""Plane keys: how every part of the package names one 2D plane of an image.

An image (or labels volume) has the shape ``lead + (H, W)``; ``lead`` are the leading,
plane-indexing axes (``()`` for a 2D image, ``(Z,)`` for a volume, ``(T, Z)`` for a
time series of volumes). A plane key is the tuple of indices along ``lead``: ``()`` for
a 2D image, ``(z,)``, ``(t, z)``. These helpers are the one implementation of turning
user input into a key, checking it against a shape, and walking planes along an axis.

The limits every part of the package checks in the same way live here too:

* Object ids are uint32 labels: 1 .. :data:`MAX_OBJECT_ID` (0 is background).
* One plane is read, segmented and written whole: planes above :data:`MAX_PLANE_PIXELS`
  pixels (32768 x 32768) are refused before anything is written, with what to do instead
  (stores that large are fine on disk: an empty 16 GiB store takes a few MiB).
* A prompt of one object holds at most :data:`MAX_POINTS` points (SAM's decoder attends
  over every point pair: memory grows with the square of the number of points).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["PlaneKey", "plane_key", "check_plane", "check_axis", "check_range",
           "plane_order", "along_axis", "iter_keys", "MAX_OBJECT_ID", "MAX_PLANE_PIXELS",
           "MAX_POINTS", "check_plane_pixels", "check_known_shape"]

PlaneKey = tuple[int, ...]


def _index(v: Any) -> int | None:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(v) if f.is_integer() else None


def plane_key(plane: Any, *, error: type[Exception] = ValueError) -> PlaneKey:
    """Normalise ``plane`` to a tuple of ints (``None`` and ``()`` mean the 2D plane).

    An int is a key of one leading axis; a tuple, list or 1D array one index per axis.
    Booleans and non-integral numbers (``True``, ``1.5``) are refused with ``error``.
    """
    if plane is None:
        return ()
    values = (plane,) if np.ndim(plane) == 0 and not isinstance(plane, (tuple, list)) \
        else tuple(np.asarray(plane, dtype=object).ravel()) if isinstance(plane, np.ndarray) \
        else tuple(plane) if isinstance(plane, (tuple, list)) else None
    if values is None:
        raise error(f"plane must be an integer or a tuple of integers, got {plane!r}")
    key = tuple(_index(v) for v in values)
    if any(k is None for k in key):
        raise error(f"plane {plane!r} is not a tuple of integers (one index per leading axis, "
                    "() for a 2D image)")
    return tuple(int(k) for k in key)  # type: ignore[arg-type]


def check_plane(plane: Any, lead: tuple[int, ...], *, error: type[Exception] = ValueError,
                what: str = "the image") -> PlaneKey:
    """The key of ``plane`` when it exists among the leading axes ``lead``, else ``error``."""
    key = plane_key(plane, error=error)
    lead = tuple(int(n) for n in lead)
    if len(key) != len(lead) or any(not 0 <= k < n for k, n in zip(key, lead, strict=True)):
        hint = ("() for a 2D image" if not lead else
                "one index per leading axis" if len(key) != len(lead) else "index out of range")
        raise error(f"plane {key} does not exist: {what} has {len(lead)} leading axes of sizes "
                    f"{lead} ({hint})")
    return key


def check_axis(axis: Any, lead: tuple[int, ...]) -> int:
    """``axis`` (negative counts from the end) as an index into ``lead``."""
    n = len(lead)
    a = _index(axis)
    if a is None or not -n <= a < n:
        raise ValueError(f"axis {axis!r} does not exist: the image has {n} leading axes {lead}"
                         + ("; a 2D image has none" if not n else ""))
    return a % n


def check_range(planes: Any, n: int) -> tuple[int, int]:
    """``planes`` (None, ``(start, stop)`` or a step-1 range) as ``0 <= start < stop <= n``."""
    if planes is None:
        return 0, int(n)
    if isinstance(planes, range):
        if planes.step != 1:
            raise ValueError(f"planes must be a step-1 range, got {planes}")
        planes = (planes.start, planes.stop)
    try:
        start, stop = (_index(v) for v in planes)
    except (TypeError, ValueError):
        raise ValueError(f"planes must be None or (start, stop), got {planes!r}") from None
    if start is None or stop is None:
        raise ValueError(f"planes must be None or (start, stop) integers, got {planes!r}")
    if not 0 <= start < stop <= n:
        raise ValueError(f"planes=({start}, {stop}) must satisfy 0 <= start < stop <= {n} "
                         "(the size of the axis)")
    return start, stop


def along_axis(rest: PlaneKey, axis: int, pos: int) -> PlaneKey:
    """The full key of position ``pos`` along ``axis``; ``rest`` holds the other indices."""
    return rest[:axis] + (int(pos),) + rest[axis:]


def plane_order(lead: tuple[int, ...], planes: Any = None, axis: int = 0) -> list[PlaneKey]:
    """Every plane key, grouped by the other leading axes, in order along ``axis``.

    For a 2D image (``lead == ()``) the only key is ``()`` (``planes`` must then be None).
    """
    lead = tuple(int(n) for n in lead)
    if not lead:
        if planes is not None:
            raise ValueError("planes=(start, stop) needs a volume or stack; this image is 2D")
        return [()]
    ax = check_axis(axis, lead)
    lo, hi = check_range(planes, lead[ax])
    others = [n for i, n in enumerate(lead) if i != ax]
    return [along_axis(tuple(int(v) for v in rest), ax, i)
            for rest in np.ndindex(*others) for i in range(lo, hi)]


def iter_keys(lead: tuple[int, ...]) -> Iterator[PlaneKey]:
    """All plane keys of ``lead`` in C order."""
    for k in np.ndindex(*lead):
        yield tuple(int(v) for v in k)


# -- limits ---------------------------------------------------------------------------------
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

