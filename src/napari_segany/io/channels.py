"""Channel handling: a lazy view of an image with its channel axis moved last.

SAM takes RGB planes; a multi-channel microscopy image such as ``(C, Z, Y, X)`` becomes a
``(Z, Y, X, C)`` "RGB" image through :class:`ChannelsLast`, read plane by plane (nothing
is copied). The API, the command line and the widget all use :func:`channels_last`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ChannelsLast", "channels_last"]


class ChannelsLast:
    """A lazy view of an array with its channel axis moved to the end (read plane by plane)."""

    def __init__(self, data: Any, axis: int) -> None:
        self.data, self.axis = data, axis
        order = [a for a in range(data.ndim) if a != axis] + [axis]
        self._order = order
        self.shape = tuple(int(data.shape[a]) for a in order)
        self.dtype, self.ndim = data.dtype, data.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        orig: list[Any] = [slice(None)] * self.ndim
        for view_axis, k in enumerate(key):
            orig[self._order[view_axis]] = k
        out = np.asarray(self.data[tuple(orig)])
        kept = [a for a in range(self.ndim) if not isinstance(orig[a], (int, np.integer))]
        if self.axis in kept:
            out = np.moveaxis(out, kept.index(self.axis), -1)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)


def channels_last(data: Any, channel_axis: int | None) -> Any:
    """``data`` with ``channel_axis`` moved last (a lazy view), or ``data`` itself.

    Raises
    ------
    ValueError
        When ``channel_axis`` does not exist for ``data``'s shape, or is already last
        of a 2D array (there would be no plane left).
    """
    if channel_axis is None:
        return data
    ndim = len(data.shape)
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)) or \
            not -ndim <= int(channel_axis) < ndim:
        raise ValueError(f"channel axis {channel_axis!r} does not exist for an image of shape "
                         f"{tuple(data.shape)}")
    if ndim < 3:
        raise ValueError(f"an image of shape {tuple(data.shape)} has no room for a channel axis "
                         "besides its two spatial axes")
    axis = int(channel_axis) % ndim
    return data if axis == ndim - 1 else ChannelsLast(data, axis)
