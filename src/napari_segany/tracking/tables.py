"""Tracks as a CSV table and as napari Tracks layer data (with the parent graph)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TrackingError
from ..storage.atomic import replacing
from .lineage import TrackTable, scan_tracks

__all__ = ["export_tracks_csv", "tracks_layer_data", "CSV_COLUMNS"]

#: Columns of the tracks CSV.
CSV_COLUMNS = ("t", "track_id", "y", "x", "area", "parent", "track_start", "track_end")


def _table(labels_or_table: Any) -> TrackTable:
    return labels_or_table if isinstance(labels_or_table, TrackTable) else scan_tracks(
        labels_or_table)


def export_tracks_csv(labels_or_table: Any, path: str | os.PathLike, *,
                      overwrite: bool = False) -> Path:
    """One row per object per frame: ``t, track_id, y, x, area, parent, track_start,
    track_end`` (centroids in pixels; ``parent`` 0 for none), sorted by track then frame.

    Parameters
    ----------
    labels_or_table : LabelsStore, (t, y, x) array or TrackTable
    path : str or path
    overwrite : bool
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise TrackingError(f"{target} already exists; choose another file or pass "
                            "overwrite=True (--overwrite)")
    table = _table(labels_or_table)
    order = np.lexsort((table.t, table.id))
    with replacing(target) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for i in order:
            tr = table.lineage[int(table.id[i])]
            w.writerow([int(table.t[i]), tr.id, f"{table.y[i]:.2f}", f"{table.x[i]:.2f}",
                        int(table.area[i]), tr.parent, tr.start, tr.end])
    return target


def tracks_layer_data(labels_or_table: Any, *, name: str = "tracks"
                      ) -> tuple[np.ndarray, dict[str, Any], str]:
    """napari Tracks layer data: ``(data, kwargs, "tracks")``.

    ``data`` is ``(N, 4)`` float64 rows ``[track_id, t, y, x]`` sorted by track then
    frame; ``kwargs["graph"]`` is ``{daughter: [parent]}``, so napari draws the lineage;
    ``kwargs["properties"]`` holds ``area`` and ``parent`` per row. Add it with
    ``viewer.add_tracks(data, **kwargs)`` (or as a layer data tuple from a reader).
    """
    table = _table(labels_or_table)
    order = np.lexsort((table.t, table.id))
    data = np.stack([table.id[order], table.t[order], table.y[order], table.x[order]],
                    axis=1).astype(np.float64).reshape(-1, 4)
    kwargs = {"name": name, "graph": table.lineage.graph(),
              "properties": {"area": table.area[order], "parent": table.parent[order]},
              "tail_length": 10}
    return data, kwargs, "tracks"
