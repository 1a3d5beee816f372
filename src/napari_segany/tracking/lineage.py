"""Tracks and their lineage: who is whose daughter, where each track starts and ends.

A *track* is one object id through a ``(t, y, x)`` labels stack, from its first frame to
its last; a *division* ends a track and starts two (or more) daughter tracks on the next
frame, each with a ``parent`` link. This is the graph of the Cell Tracking Challenge's
``res_track.txt`` (``L B E P``: label, begin, end, parent; 0 for no parent) and of
napari's Tracks layer (``graph = {daughter: [parent]}``).

In a labels store the lineage lives in the object registry (:meth:`LabelsStore.set_objects`):
each tracked object's info holds ``parent`` (0 for none) and ``track_start`` (its first
frame); the frames themselves are the pixels, read back by :func:`scan_tracks`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import TrackingError

__all__ = ["Track", "Lineage", "TrackTable", "scan_tracks", "lineage_from_registry"]


@dataclass(frozen=True)
class Track:
    """One track: object ``id`` from frame ``start`` to ``end`` (inclusive).

    ``parent`` is the track it divided from (0: none).
    """

    id: int
    start: int
    end: int
    parent: int = 0


class Lineage(Mapping):
    """Tracks by id, with the parent graph (a read-only mapping ``id -> Track``)."""

    def __init__(self, tracks: Any = ()) -> None:
        items = tracks.values() if isinstance(tracks, Mapping) else tracks
        self._tracks = {int(t.id): t for t in sorted(items, key=lambda t: t.id)}

    def __getitem__(self, key: int) -> Track:
        return self._tracks[int(key)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._tracks)

    def __len__(self) -> int:
        return len(self._tracks)

    def __repr__(self) -> str:
        return f"<Lineage of {len(self)} tracks, {len(self.divisions())} divisions>"

    def children(self, track_id: int) -> list[int]:
        """The daughters of ``track_id``."""
        return [t.id for t in self._tracks.values() if t.parent == int(track_id)]

    def descendants(self, track_id: int) -> list[int]:
        """Daughters, their daughters, ... of ``track_id`` (breadth first)."""
        out: list[int] = []
        todo = self.children(track_id)
        while todo:
            out += todo
            todo = [c for t in todo for c in self.children(t)]
        return out

    def divisions(self) -> dict[int, list[int]]:
        """``{parent: [daughters]}`` for every track with daughters."""
        out: dict[int, list[int]] = {}
        for t in self._tracks.values():
            if t.parent:
                out.setdefault(t.parent, []).append(t.id)
        return out

    def graph(self) -> dict[int, list[int]]:
        """napari's Tracks ``graph``: ``{daughter: [parent]}``."""
        return {t.id: [t.parent] for t in self._tracks.values() if t.parent}

    def ctc_rows(self) -> np.ndarray:
        """``(n, 4)`` int64 rows ``L B E P`` of ``res_track.txt``."""
        rows = [(t.id, t.start, t.end, t.parent) for t in self._tracks.values()]
        return np.array(rows, dtype=np.int64).reshape(-1, 4)

    def registry(self) -> dict[int, dict[str, int]]:
        """What the labels store's registry keeps of each track."""
        return {t.id: {"parent": int(t.parent), "track_start": int(t.start)}
                for t in self._tracks.values()}

    def with_track(self, track: Track) -> Lineage:
        return Lineage({**self._tracks, int(track.id): track})

    def without(self, ids: Any) -> Lineage:
        drop = {int(i) for i in ids}
        return Lineage([t for i, t in self._tracks.items() if i not in drop])

    def check(self) -> None:
        """Refuse a graph the Cell Tracking Challenge would refuse (parents that end after
        their daughters start, unknown parents, tracks that end before they start)."""
        for t in self._tracks.values():
            if t.end < t.start:
                raise TrackingError(f"track {t.id} ends (frame {t.end}) before it starts "
                                    f"({t.start})")
            if t.parent:
                p = self._tracks.get(t.parent)
                if p is None:
                    raise TrackingError(f"track {t.id} names parent {t.parent}, which has no "
                                        "pixels")
                if p.end >= t.start:
                    raise TrackingError(f"track {t.id} starts at frame {t.start}, but its "
                                        f"parent {p.id} lasts until frame {p.end}")


@dataclass
class TrackTable:
    """One row per object per frame: ``(t, id, y, x, area, parent)``.

    Attributes
    ----------
    t, id, area, parent : numpy.ndarray
        int64 ``(n,)``.
    y, x : numpy.ndarray
        float64 ``(n,)`` centroid (pixels, rows and columns).
    lineage : Lineage
        Start, end and parent of every track (from the pixels and the registry).
    gaps : dict
        ``{id: [frames]}`` frames missing inside a track (between its start and end).
    """

    t: np.ndarray
    id: np.ndarray
    y: np.ndarray
    x: np.ndarray
    area: np.ndarray
    parent: np.ndarray
    lineage: Lineage
    gaps: dict[int, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)

    def rows(self) -> Iterator[tuple[int, int, float, float, int, int]]:
        for i in range(len(self)):
            yield (int(self.t[i]), int(self.id[i]), float(self.y[i]), float(self.x[i]),
                   int(self.area[i]), int(self.parent[i]))

    def centroid(self, track_id: int, frame: int) -> tuple[float, float] | None:
        sel = np.flatnonzero((self.id == int(track_id)) & (self.t == int(frame)))
        return None if not len(sel) else (float(self.y[sel[0]]), float(self.x[sel[0]]))


def lineage_from_registry(objects: Mapping[int, Mapping[str, Any]]) -> dict[int, int]:
    """``{id: parent}`` of the tracked objects of a store's registry (``parent`` key)."""
    out = {}
    for oid, info in objects.items():
        if isinstance(info, Mapping) and "parent" in info:
            try:
                out[int(oid)] = int(info.get("parent") or 0)
            except (TypeError, ValueError):
                continue
    return out


def _planes(labels: Any) -> Iterator[tuple[int, np.ndarray]]:
    shape = tuple(int(s) for s in labels.shape)
    if len(shape) != 3:
        raise TrackingError(f"tracks need (t, y, x) labels, got shape {shape}")
    for t in range(shape[0]):
        yield t, np.asarray(labels[t])


def scan_tracks(labels: Any, parents: Mapping[int, int] | None = None) -> TrackTable:
    """Read a ``(t, y, x)`` labels stack plane by plane into a :class:`TrackTable`.

    Parameters
    ----------
    labels : array-like or LabelsStore
        Integer labels ``(t, y, x)``; a store's registry gives the parents.
    parents : dict, optional
        ``{id: parent}`` (default: the store's registry, else none). A parent without
        pixels is dropped (the track becomes a root).
    """
    if parents is None and hasattr(labels, "objects") and hasattr(labels, "array"):
        parents = lineage_from_registry(labels.objects)
    array = labels.array if hasattr(labels, "array") and hasattr(labels, "objects") else labels
    parents = {int(k): int(v) for k, v in (parents or {}).items()}
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("t", "id", "y", "x", "area")}
    frames: dict[int, list[int]] = {}
    for t, plane in _planes(array):
        flat = plane.ravel()
        ids = np.unique(flat)
        ids = ids[ids > 0]
        if not ids.size:
            continue
        index = np.searchsorted(ids, flat)
        fg = flat > 0
        index, pos = index[fg], np.flatnonzero(fg)
        area = np.bincount(index, minlength=len(ids))
        ys = np.bincount(index, weights=pos // plane.shape[1], minlength=len(ids)) / area
        xs = np.bincount(index, weights=pos % plane.shape[1], minlength=len(ids)) / area
        cols["t"].append(np.full(len(ids), t, np.int64))
        cols["id"].append(ids.astype(np.int64))
        cols["y"].append(ys)
        cols["x"].append(xs)
        cols["area"].append(area.astype(np.int64))
        for i in ids.tolist():
            frames.setdefault(int(i), []).append(t)
    tracks, gaps = [], {}
    for oid, fr in frames.items():
        start, end = fr[0], fr[-1]
        if len(fr) != end - start + 1:
            have = set(fr)
            gaps[oid] = [f for f in range(start, end + 1) if f not in have]
        tracks.append(Track(oid, start, end, 0))
    lineage = Lineage(tracks)
    lineage = Lineage([replace(t, parent=parents.get(t.id, 0) if parents.get(t.id, 0) in
                               lineage else 0) for t in lineage.values()])
    joined = {k: (np.concatenate(v) if v else np.zeros(0, np.float64 if k in "yx" else np.int64))
              for k, v in cols.items()}
    parent_col = np.array([lineage[int(i)].parent for i in joined["id"]], dtype=np.int64)
    return TrackTable(joined["t"], joined["id"], joined["y"], joined["x"], joined["area"],
                      parent_col, lineage, gaps)
