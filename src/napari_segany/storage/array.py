"""A labels store as an array napari can paint on, every write an operation of the store.

napari's Labels layer reads planes by slicing and writes brush strokes, fills and erasures
by ``data[index] = values`` (basic slices, or a tuple of index arrays). On the zarr array
itself those writes would bypass the store's lock and journal; :class:`StoreArray` sends
them through :meth:`LabelsStore.write_region` instead. Writes between
:meth:`StoreArray.begin_stroke` and :meth:`StoreArray.end_stroke` are one operation (one
undo step: the dock widget opens a stroke at a layer's first write and ends it at napari's
``paint`` event); other writes are one operation each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["StoreArray", "plane_updates"]


def _full_index(index: Any, ndim: int) -> tuple:
    key = index if isinstance(index, tuple) else (index,)
    if any(k is Ellipsis for k in key):
        i = next(n for n, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1:]
    return key + (slice(None),) * (ndim - len(key))


def plane_updates(store: Any, index: Any, values: Any
                  ) -> Iterator[tuple[tuple[int, ...], Callable[[np.ndarray], np.ndarray]]]:
    """``(plane key, change)`` pairs that write ``values`` at ``index`` plane by plane.

    ``index`` is what napari passes: basic indexing (ints and slices, any axes) or a tuple
    of equally long integer arrays, one per axis. ``change(current_plane)`` returns the
    plane with the values written.
    """
    shape = store.shape
    nd = len(shape)
    key = _full_index(index, nd)
    lead = nd - 2
    if any(isinstance(k, (np.ndarray, list)) for k in key):  # fancy: one point per entry
        idx = [np.asarray(k).reshape(-1) if isinstance(k, (np.ndarray, list))
               else np.full(1, k) for k in key]
        n = max(len(i) for i in idx)
        idx = [np.broadcast_to(i, (n,)).astype(np.int64) for i in idx]
        vals = np.broadcast_to(np.asarray(values), (n,))
        for ax, (i, size) in enumerate(zip(idx, shape, strict=True)):
            if n and (i.min() < -size or i.max() >= size):
                raise IndexError(f"index out of range on axis {ax} (size {size})")
            idx[ax] = np.where(i < 0, i + size, i)
        planes = np.stack(idx[:lead], axis=1) if lead else np.zeros((n, 0), np.int64)
        for p in np.unique(planes, axis=0) if n else []:
            sel = np.all(planes == p, axis=1) if lead else np.ones(n, bool)
            rows, cols, v = idx[-2][sel], idx[-1][sel], vals[sel]

            def change(cur: np.ndarray, rows=rows, cols=cols, v=v) -> np.ndarray:
                new = cur.copy()
                new[rows, cols] = v
                return new

            yield tuple(int(x) for x in p), change
        return
    ranges = []
    for ax, k in enumerate(key[:lead]):
        if isinstance(k, slice):
            ranges.append(range(*k.indices(shape[ax])))
        else:
            ranges.append([int(k) % shape[ax] if int(k) < 0 else int(k)])
    yx = key[lead:]
    region_lead = [len(r) for r, k in zip(ranges, key[:lead], strict=True) if isinstance(k, slice)]
    cell = np.zeros(shape[-2:], bool)[yx]  # the plane region's shape (raises a clear IndexError)
    vals = np.broadcast_to(np.asarray(values), tuple(region_lead) + cell.shape)
    for pos in np.ndindex(*[len(r) for r in ranges]):
        plane = tuple(int(r[i]) for r, i in zip(ranges, pos, strict=True))
        sub = tuple(i for i, k in zip(pos, key[:lead], strict=True) if isinstance(k, slice))
        v = vals[sub]

        def change(cur: np.ndarray, v=v) -> np.ndarray:
            new = cur.copy()
            new[yx] = v
            return new

        yield plane, change


class StoreArray:
    """A read-write view of a labels store for napari (``layer.data``).

    Reading slices reads the zarr array; writing goes through the store as operations.
    """

    def __init__(self, store: Any, *, group_strokes: bool = False) -> None:
        self.store = store
        self._stroke: Any = None
        #: Begin a stroke at the first write and keep it open until :meth:`end_stroke`
        #: (the dock widget ends it at the Labels layer's ``paint`` event).
        self.group_strokes = bool(group_strokes)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.store.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint32)

    @property
    def ndim(self) -> int:
        return len(self.store.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.store.chunks

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        key = index if isinstance(index, tuple) else (index,)
        if any(isinstance(k, (np.ndarray, list)) for k in key):
            return np.asarray(self.store.array.vindex[tuple(np.asarray(k) if isinstance(
                k, (np.ndarray, list)) else k for k in _full_index(index, self.ndim))])
        return np.asarray(self.store.array[index])

    def __setitem__(self, index: Any, values: Any) -> None:
        if self.group_strokes and self._stroke is None:
            self.begin_stroke("napari edit of the labels layer")
        self.store.write_region(index, values)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self.store.array[...])
        return out if dtype is None else out.astype(dtype)

    def begin_stroke(self, what: str = "napari edit") -> None:
        """Start one operation that the following writes (in this thread) join."""
        if self._stroke is None:
            cm = self.store.operation("edit", what)
            cm.__enter__()
            self._stroke = cm

    def end_stroke(self) -> None:
        """End the operation begun by :meth:`begin_stroke` (nothing when none is open)."""
        cm, self._stroke = self._stroke, None
        if cm is not None:
            with contextlib.suppress(Exception):
                cm.__exit__(None, None, None)

    @property
    def in_stroke(self) -> bool:
        return self._stroke is not None

    def __repr__(self) -> str:
        return f"<StoreArray of {self.store!r}>"
