"""The Cell Tracking Challenge format: ``res_track.txt`` and one label TIFF per frame.

Results (``kind="result"``), as the challenge's evaluation reads them::

    OUT/res_track.txt        one line per track: "L B E P" (label, first frame, last
                             frame, parent label; 0 = no parent)
    OUT/mask000.tif ...      uint16 labels of each frame (mask0000.tif from 1000 frames)

Ground truth (``kind="truth"``)::

    OUT/TRA/man_track.txt, OUT/TRA/man_track000.tif ...   the tracks (as above)
    OUT/SEG/man_seg000.tif ...                            the segmentation of every frame

A track must cover consecutive frames: a track with a gap (an object lost and found again)
is written as two tracks, the second a child of the first, as the challenge asks. Labels
above 65535 are renumbered 1.. (uint16). Frames are read and written one at a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TrackingError
from ..storage.atomic import replacing
from .lineage import Lineage, Track, TrackTable, scan_tracks

__all__ = ["export_ctc", "read_ctc", "ctc_tracks"]

_KINDS = ("result", "truth")


def _digits(n: int) -> int:
    return 3 if n <= 1000 else len(str(n - 1))


def ctc_tracks(table: TrackTable) -> tuple[Lineage, dict[int, list[tuple[int, int, int]]]]:
    """The CTC tracks of a :class:`TrackTable`: gaps split into child tracks, labels made
    to fit uint16.

    Returns
    -------
    (Lineage, dict)
        The CTC lineage, and ``{object id: [(first frame, last frame, CTC label), ...]}``.
    """
    frames: dict[int, list[int]] = {}
    for t, oid in zip(table.t.tolist(), table.id.tolist(), strict=True):
        frames.setdefault(int(oid), []).append(int(t))
    ids = sorted(frames)
    renumber = bool(ids) and ids[-1] > 65535
    segments: dict[int, list[list[int]]] = {}
    for oid in ids:
        runs: list[list[int]] = []
        for t in sorted(frames[oid]):
            if runs and t == runs[-1][1] + 1:
                runs[-1][1] = t
            else:
                runs.append([t, t])
        segments[oid] = runs
    next_label = (max(ids) if ids and not renumber else 0) + 1
    labels: dict[int, list[tuple[int, int, int]]] = {}
    if renumber:
        mapping = {oid: n for n, oid in enumerate(ids, start=1)}
        next_label = len(ids) + 1
    else:
        mapping = {oid: oid for oid in ids}
    for oid in ids:
        out = []
        for n, (a, b) in enumerate(segments[oid]):
            if n == 0:
                label = mapping[oid]
            else:
                label, next_label = next_label, next_label + 1
            out.append((a, b, label))
        labels[oid] = out
    if next_label - 1 > 65535:
        raise TrackingError(f"{next_label - 1} tracks do not fit the challenge's 16-bit labels")
    tracks = []
    for oid in ids:
        parent = table.lineage[oid].parent
        for n, (a, b, label) in enumerate(labels[oid]):
            if n:
                p = labels[oid][n - 1][2]
            elif parent and parent in labels:
                p = labels[parent][-1][2]
                if labels[parent][-1][1] >= a:  # the parent lasts past the daughter's start
                    p = 0
            else:
                p = 0
            tracks.append(Track(label, a, b, p))
    return Lineage(tracks), labels


def _write_tracks(path: Path, lineage: Lineage) -> None:
    lines = [f"{t.id} {t.start} {t.end} {t.parent}" for t in lineage.values()]
    path.write_text("\n".join(lines) + ("\n" if lines else ""))


def export_ctc(labels: Any, path: str | os.PathLike, *, parents: dict[int, int] | None = None,
               kind: str = "result", overwrite: bool = False) -> Path:
    """Write tracked labels in the Cell Tracking Challenge format.

    Parameters
    ----------
    labels : LabelsStore or array-like
        ``(t, y, x)`` integer labels; a store's registry gives the parents.
    path : str or path
        Output folder (written whole under a temporary name, then renamed).
    parents : dict, optional
        ``{id: parent}`` (default: the store's registry).
    kind : {"result", "truth"}
        ``res_track.txt`` + ``maskTTT.tif``, or ``TRA/`` + ``SEG/`` ground truth.
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    Path
    """
    import tifffile

    if kind not in _KINDS:
        raise TrackingError(f"kind must be one of {_KINDS}, got {kind!r}")
    target = Path(path)
    if target.exists() and not overwrite:
        raise TrackingError(f"{target} already exists; choose another folder or pass "
                            "overwrite=True (--overwrite)")
    if target.exists() and not target.is_dir():
        raise TrackingError(f"{target} is a file, not a folder; choose another output")
    if not target.parent.is_dir():
        raise TrackingError(f"folder {target.parent} does not exist; create it first")
    table = scan_tracks(labels, parents)
    lineage, segments = ctc_tracks(table)
    array = labels.array if hasattr(labels, "objects") and hasattr(labels, "array") else labels
    n = int(array.shape[0])
    digits = _digits(n)
    lut_src, lut_dst = [], []
    for oid, segs in segments.items():
        for a, b, label in segs:
            lut_src.append((oid, a, b))
            lut_dst.append(label)
    with replacing(target) as tmp:
        tmp.mkdir()
        if kind == "result":
            mask_dir, prefix, seg_dir = tmp, "mask", None
            _write_tracks(tmp / "res_track.txt", lineage)
        else:
            mask_dir, prefix, seg_dir = tmp / "TRA", "man_track", tmp / "SEG"
            mask_dir.mkdir()
            seg_dir.mkdir()
            _write_tracks(mask_dir / "man_track.txt", lineage)
        for t in range(n):
            plane = np.asarray(array[t])
            live = sorted((oid, label) for (oid, a, b), label in zip(lut_src, lut_dst,
                                                                      strict=True)
                          if a <= t <= b)
            out = np.zeros(plane.shape, np.uint16)
            if live:
                keys = np.array([k for k, _ in live], dtype=np.int64)
                vals = np.array([v for _, v in live], dtype=np.uint16)
                idx = np.clip(np.searchsorted(keys, plane), 0, len(keys) - 1)
                hit = keys[idx] == plane
                out[hit] = vals[idx[hit]]
            name = f"{t:0{digits}d}.tif"
            tifffile.imwrite(mask_dir / f"{prefix}{name}", out, compression="zlib")
            if seg_dir is not None:
                tifffile.imwrite(seg_dir / f"man_seg{name}", out, compression="zlib")
    return target


def read_ctc(path: str | os.PathLike) -> tuple[np.ndarray, Lineage]:
    """Read a CTC result folder (``res_track.txt`` + masks) or ground-truth folder
    (``TRA/man_track.txt`` + masks): ``((t, y, x) uint16 labels, lineage)``."""
    import tifffile

    p = Path(path)
    if (p / "res_track.txt").is_file():
        txt, folder, prefix = p / "res_track.txt", p, "mask"
    elif (p / "TRA" / "man_track.txt").is_file():
        txt, folder, prefix = p / "TRA" / "man_track.txt", p / "TRA", "man_track"
    else:
        raise TrackingError(f"{p} is not a Cell Tracking Challenge folder: it holds neither "
                            "res_track.txt nor TRA/man_track.txt")
    rows = []
    for n, line in enumerate(txt.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            label, start, end, parent = (int(v) for v in line.split())
        except ValueError:
            raise TrackingError(f"{txt}, line {n}: expected 'L B E P' (four integers), got "
                                f"{line!r}") from None
        rows.append(Track(label, start, end, parent))
    files = sorted(f for f in folder.iterdir() if f.name.startswith(prefix)
                   and f.suffix == ".tif")
    if not files:
        raise TrackingError(f"{folder} holds no {prefix}*.tif frames")
    frames = [tifffile.imread(f) for f in files]
    return np.stack(frames), Lineage(rows)
