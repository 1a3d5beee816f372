"""Cell tracking with lineage: objects followed through a ``(t, y, x)`` stack, divisions.

* :mod:`.tracker`: :class:`Tracker` drives slice-wise or SAM2 propagation forward in time
  and turns a mask that splits into two components for K frames
  (``TrackSettings.division_frames``) into two daughter tracks with a parent link;
* :mod:`.run`: :func:`track`, :func:`correct_track` and :func:`mark_division` write a
  session's labels store (one undoable operation each; the lineage in the object
  registry: ``parent``, ``track_start``);
* :mod:`.lineage`: :class:`Track`, :class:`Lineage` and :func:`scan_tracks`, the table of
  ``(t, id, centroid, parent)`` read back from any labels;
* :mod:`.ctc`: the Cell Tracking Challenge format (``res_track.txt`` + label TIFFs; ground
  truth ``TRA/`` + ``SEG/``); :mod:`.tables`: CSV and napari Tracks layer data;
* :mod:`.metrics`: DET, SEG, TRA and division F1 through ``py-ctcmetrics``.

Examples
--------
>>> from napari_segany.tracking import track, TrackSettings, export_ctc   # doctest: +SKIP
>>> result = track(session, prompts, settings=TrackSettings(division_frames=3))
>>> export_ctc(session.labels, "01_RES")                                   # doctest: +SKIP
"""

from .ctc import ctc_tracks, export_ctc, read_ctc
from .lineage import Lineage, Track, TrackTable, lineage_from_registry, scan_tracks
from .metrics import METRICS, tracking_metrics
from .run import TrackResult, correct_track, mark_division, track
from .settings import METHODS, TrackSettings
from .tables import CSV_COLUMNS, export_tracks_csv, tracks_layer_data
from .tracker import Division, FrameMasks, Tracker, mask_prompt, split_components

__all__ = [
    "TrackSettings", "METHODS", "Tracker", "FrameMasks", "Division", "split_components",
    "mask_prompt", "track", "correct_track", "mark_division", "TrackResult", "Track",
    "Lineage", "TrackTable", "scan_tracks", "lineage_from_registry", "export_ctc", "read_ctc",
    "ctc_tracks", "export_tracks_csv", "tracks_layer_data", "CSV_COLUMNS", "tracking_metrics",
    "METRICS",
]
