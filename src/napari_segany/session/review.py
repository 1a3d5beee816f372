"""The review area: automatic results staged beside the labels store until accepted.

Segment everything, boxes to masks and propagation can write into a second labels store,
``<labels>.review.zarr`` next to the session's (a zarr store like the other: memory stays
bounded, and a crash does not lose a finished run awaiting review). Nothing there is part
of the annotation yet. :meth:`ReviewArea.accept` moves chosen objects (or all) into the
labels store as ONE operation of its history, plane by plane, never loading the volume;
:meth:`ReviewArea.discard` drops them. New ids staged there are allocated above every id of
the labels store; one that the labels store took meanwhile is renamed when accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import LabelsStoreError
from ..storage.labels import LabelsStore, check_object_id

__all__ = ["ReviewArea", "AcceptResult", "REVIEW_SUFFIX", "review_path"]

REVIEW_SUFFIX = ".review.zarr"


def review_path(labels_path: str | Path) -> Path:
    """Where the review area of a labels store lives: ``seg.zarr`` -> ``seg.review.zarr``."""
    p = Path(labels_path)
    stem = p.name[:-5] if p.name.endswith(".zarr") else p.name
    return p.with_name(stem + REVIEW_SUFFIX)


@dataclass
class AcceptResult:
    """What :meth:`ReviewArea.accept` moved into the labels store."""

    ids: list[int]  # ids as they now are in the labels store
    planes: list[tuple[int, ...]]
    renamed: dict[int, int] = field(default_factory=dict)  # staged id -> id in the store
    operation: str | None = None

    def __bool__(self) -> bool:
        return bool(self.ids)

    @property
    def message(self) -> str:
        if not self.ids:
            return "Nothing to accept."
        text = (f"Accepted {len(self.ids)} object(s) on {len(self.planes)} plane(s) into the "
                "labels store (one undo step)")
        if self.renamed:
            text += f"; renamed {self.renamed} (those ids were taken meanwhile)"
        return text + "."


def _prompt(rec: dict[str, Any]) -> Any:
    """A recorded prompt as what :meth:`LabelsStore.record_prompts` takes."""
    return SimpleNamespace(points=rec.get("points") or np.empty((0, 2)),
                           labels=rec.get("labels") or [], box=rec.get("box"))


class ReviewArea:
    """The review store of one labels store (created when something is first staged).

    Parameters
    ----------
    labels : LabelsStore
        The labels store results are accepted into.
    """

    def __init__(self, labels: LabelsStore) -> None:
        self.labels = labels
        self.path = review_path(labels.path)
        self._store: LabelsStore | None = None

    def store(self, *, create: bool = True) -> LabelsStore | None:
        """The review store (None when there is none and ``create`` is False)."""
        if self._store is None:
            if self.path.exists():
                self._store = LabelsStore.open(self.path)
                if self._store.shape != self.labels.shape:
                    raise LabelsStoreError(
                        f"the review area {self.path} holds labels of shape "
                        f"{self._store.shape}, not {self.labels.shape}; delete it or choose "
                        "another labels store")
            elif create:
                self._store = LabelsStore.create(
                    self.path, self.labels.shape,
                    chunk_size=self.labels.chunks[-1] if self.labels.chunks[-1] >= 16 else None,
                    provenance={"review_of": str(self.labels.path)})
        return self._store

    def objects(self) -> list[Any]:
        """The staged objects (rows of :meth:`LabelsStore.object_table` with pixels)."""
        store = self.store(create=False)
        return [] if store is None else [r for r in store.object_table() if r.pixels]

    def accept(self, ids: Any = None) -> AcceptResult:
        """Move staged objects (``ids``, default all) into the labels store as one operation.

        Each object replaces its own earlier pixels on the planes it is staged on and takes
        only background there (committed objects keep theirs).
        """
        store = self.store(create=False)
        rows = {r.id: r for r in self.objects()}
        chosen = sorted(rows) if ids is None else [check_object_id(i) for i in ids]
        missing = [i for i in chosen if i not in rows]
        if missing:
            raise LabelsStoreError(f"objects {missing} are not in the review area (staged: "
                                   f"{sorted(rows) or 'none'})")
        if store is None or not chosen:
            return AcceptResult([], [])
        taken = self.labels.objects
        renamed: dict[int, int] = {}
        for i in chosen:
            staged = rows[i].info
            if staged.get("source") in ("auto", "boxes") and i in taken:
                [renamed[i]] = self.labels.reserve_object_ids(1)
        planes = sorted({p for i in chosen for p in rows[i].planes})
        with self.labels.operation("accept", f"accept of {len(chosen)} object(s) from review"
                                   ) as op:
            for key in planes:
                self.labels.paint_labels(key, store.read_plane(key), chosen, mapping=renamed)
            staged_prompts = {(k, renamed.get(i, i)): _prompt(rec)
                              for (k, i), rec in store.recorded_prompts().items()
                              if i in chosen}
            if staged_prompts:
                self.labels.record_prompts(staged_prompts)
            self.labels.set_objects({renamed.get(i, i): {k: v for k, v in rows[i].info.items()
                                                         if k != "review"} for i in chosen})
        self._clear(store, chosen, rows, "accepted")
        return AcceptResult([renamed.get(i, i) for i in chosen], planes, renamed, op.id)

    def discard(self, ids: Any = None) -> int:
        """Drop staged objects (``ids``, default all); returns how many were dropped."""
        store = self.store(create=False)
        rows = {r.id: r for r in self.objects()}
        chosen = sorted(rows) if ids is None else [check_object_id(i) for i in ids
                                                   if int(i) in rows]
        if store is None or not chosen:
            return 0
        self._clear(store, chosen, rows, "discarded")
        return len(chosen)

    def _clear(self, store: LabelsStore, ids: list[int], rows: dict, why: str) -> None:
        with store.operation("delete", f"{why} objects {ids}"):
            gone = np.asarray(ids, np.uint32)
            for key in sorted({p for i in ids for p in rows[i].planes}):
                plane = store.read_plane(key)
                store.write_plane(key, np.where(np.isin(plane, gone), 0, plane).astype(np.uint32))
            store.set_objects({i: {"review": why} for i in ids})
