"""Tracking metrics of the Cell Tracking Challenge, computed by ``py-ctcmetrics``.

DET (detection), SEG (segmentation, Jaccard of matched cells), TRA (tracking: the
normalised cost of the acyclic-graph edits that turn the result into the truth), and
division F1 (the challenge's branching correctness BC(i): the F1 score of divisions found
within ``i`` frames of the true ones), with the counts behind them. Nothing is
re-implemented here: both sides are written as CTC folders (unless they are already) and
handed to the metrics package, which also checks that the result is valid.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TrackingError
from ..storage.labels import LabelsStore, is_labels_store
from .ctc import export_ctc

__all__ = ["tracking_metrics", "METRICS"]

#: What :func:`tracking_metrics` reports by default.
METRICS = ("DET", "SEG", "TRA", "BC")


def _is_result(p: Path) -> bool:
    return (p / "res_track.txt").is_file()


def _is_truth(p: Path) -> bool:
    return (p / "TRA" / "man_track.txt").is_file()


def _folder(x: Any, kind: str, tmp: Path, parents: Any) -> Path:
    if isinstance(x, (str, os.PathLike)) and (_is_result(Path(x)) if kind == "result"
                                              else _is_truth(Path(x))):
        return Path(x)
    if isinstance(x, (str, os.PathLike)):
        p = Path(x)
        if kind == "truth" and _is_result(p):
            raise TrackingError(f"{p} is a result folder (res_track.txt); the truth is a "
                                "ground-truth folder with TRA/man_track.txt")
        if not is_labels_store(p):
            want = "res_track.txt" if kind == "result" else "TRA/man_track.txt"
            raise TrackingError(f"{p} is neither a labels store nor a CTC folder ({want})")
        x = LabelsStore.open(p, mode="r")
    return export_ctc(x, tmp / kind, parents=parents, kind=kind)


def tracking_metrics(result: Any, truth: Any, *, result_parents: dict | None = None,
                     truth_parents: dict | None = None, division_tolerance: int = 1,
                     metrics: tuple[str, ...] = METRICS) -> dict[str, Any]:
    """Score tracked labels against ground truth with the Cell Tracking Challenge metrics.

    Parameters
    ----------
    result : CTC result folder, LabelsStore (or its path), or (t, y, x) labels array
        A store's registry gives the lineage; an array takes ``result_parents``.
    truth : CTC ground-truth folder (``TRA/``, optional ``SEG/``), LabelsStore or array
    result_parents, truth_parents : dict, optional
        ``{id: parent}`` for arrays.
    division_tolerance : int
        Frames a division may be off and still count (BC(i)); the F1 of every i up to
        this is reported too.
    metrics : tuple of str
        Any of ``"DET"``, ``"SEG"``, ``"TRA"``, ``"BC"`` (and the package's others, e.g.
        ``"LNK"``, ``"CT"``, ``"TF"``).

    Returns
    -------
    dict
        ``valid`` (1 when the result is a valid CTC result), ``DET``, ``SEG``, ``TRA``,
        ``AOGM`` and its parts (``AOGM_FN``, ...), ``division_f1`` (= ``BC(i)`` at
        ``division_tolerance``), ``division_tp``, ``division_fp``, ``division_fn``,
        ``divisions_true``, every ``BC(i)``, and ``notes``: what the package said (e.g.
        "Empty frame 3.", why a result is not valid).
    """
    from ctc_metrics.scripts.evaluate import calculate_metrics, load_data

    if int(division_tolerance) < 0:
        raise TrackingError(f"division_tolerance must be >= 0, got {division_tolerance}")
    wanted = [m for m in metrics if m != "BC"]
    if "BC" in metrics:
        wanted.append(f"BC({int(division_tolerance)})")
    with tempfile.TemporaryDirectory(prefix="segany-ctc-") as tmp:
        res = _folder(result, "result", Path(tmp), result_parents)
        gt = _folder(truth, "truth", Path(tmp), truth_parents)
        seg = "SEG" in metrics and (gt / "SEG").is_dir()
        if "SEG" in metrics and not seg:
            wanted.remove("SEG")
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            comp, ref, traj, segm, _, is_valid = load_data(str(res), str(gt), True, seg, 1)
            out = calculate_metrics(comp, ref, traj, segm, ["Valid", *wanted], is_valid)
    notes = list(dict.fromkeys(str(w.message) for w in said))
    scores: dict[str, Any] = {"valid": int(out.get("Valid") or 0), "notes": notes[:20]}
    for key, value in out.items():
        if key in ("Valid", "notes") or value is None:
            continue
        scores[key] = float(value) if isinstance(value, (float, np.floating)) else (
            int(value) if isinstance(value, (int, np.integer)) else value)
    i = int(division_tolerance)
    if f"BC({i})" in scores:
        scores.update(division_f1=scores[f"BC({i})"], division_tp=scores.get(f"tp_div({i})"),
                      division_fp=scores.get(f"fp_div({i})"),
                      division_fn=scores.get(f"fn_div({i})"),
                      divisions_true=scores.get("gt_divisions"))
    return scores
