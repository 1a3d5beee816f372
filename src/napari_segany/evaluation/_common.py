"""What the protocols share: plane keys, rows, progress steps, cancellation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._progress import is_cancelled
from ..errors import Cancelled

__all__ = ["plane_text", "planes_with_objects", "object_ids", "row", "Steps", "check",
           "embeddings_used"]


def plane_text(key: tuple[int, ...]) -> str:
    """``(3,)`` -> ``"3"``, ``(1, 4)`` -> ``"1,4"``, ``()`` -> ``""`` (the CSV's plane)."""
    return ",".join(str(int(k)) for k in key)


def planes_with_objects(truth: np.ndarray) -> list[tuple[int, ...]]:
    """Keys of the planes of ``truth`` (``(..., H, W)``) that hold at least one object."""
    if truth.ndim == 2:
        return [()]
    flat = truth.reshape(truth.shape[:-2] + (-1,)).any(axis=-1)
    return [tuple(int(i) for i in k) for k in zip(*np.nonzero(flat), strict=False)]


def object_ids(labels: np.ndarray) -> list[int]:
    """Sorted ids (> 0) present in a labels array."""
    ids = np.unique(labels)
    return [int(i) for i in ids if i > 0]


def row(model: str, dataset: str, protocol: str, method: str, **values: Any) -> dict[str, Any]:
    """One result row (see :mod:`.table` for the columns)."""
    out = {"model": model, "dataset": dataset, "protocol": protocol, "method": method}
    out.update(values)
    return out


class Steps:
    """Progress in steps (iterations, planes, propagation rounds) for ``progress(done, total)``.

    The total grows as samples are read (``expect``); until then each pending sample and
    model is counted as the average of those seen.
    """

    def __init__(self, progress: Callable[[int, int], Any] | None, pending: int) -> None:
        self.progress, self.pending = progress, max(0, int(pending))
        self.done = 0
        self.planned = 0
        self.seen = 0

    def expect(self, n: int) -> None:
        """A sample-model pair starts with ``n`` steps."""
        self.planned += max(0, int(n))
        self.seen += 1
        self.pending = max(0, self.pending - 1)
        self._report()

    def skip(self) -> None:
        """A sample-model pair was finished before (resumed): nothing to do."""
        self.pending = max(0, self.pending - 1)
        self._report()

    def add(self, n: int) -> None:
        """More steps than expected were found (e.g. objects of a plane)."""
        self.planned += max(0, int(n))
        self._report()

    def tick(self, n: int = 1) -> None:
        self.done += int(n)
        self._report()

    @property
    def total(self) -> int:
        avg = self.planned / self.seen if self.seen else 1
        return max(self.done, int(round(self.planned + self.pending * avg)))

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.done, self.total)


def check(cancel: Any) -> None:
    """Raise :class:`~napari_segany.errors.Cancelled` when ``cancel`` is set."""
    if is_cancelled(cancel):
        raise Cancelled()


def embeddings_used(source: Any) -> dict[str, int]:
    """``{"computed": n, "loaded": m}``: embeddings the source's backend computed or read."""
    lru = getattr(getattr(source, "planes", source), "lru", None)
    stats = getattr(lru, "stats", None) or {}
    return {"computed": int(stats.get("computed", 0)), "loaded": int(stats.get("loaded", 0))}
