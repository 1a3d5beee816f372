"""``napari-segany evaluate --protocol tracking``: DET, SEG, TRA and division F1.

The hook the ``evaluate`` command calls for the tracking protocol (the other protocols are
in :mod:`napari_segany.evaluation`). Two ways:

* score a result: ``evaluate GT --protocol tracking --prediction RES --out OUT``, with GT
  a Cell Tracking Challenge ground-truth folder (``TRA/man_track.txt``, optional ``SEG/``)
  and RES a CTC result folder (``res_track.txt``) or a labels store with its lineage;
* run models: ``evaluate IMAGE --labels GT --protocol tracking --model M --out OUT``: every
  track of GT without a parent is prompted with its mask on its first frame, tracked
  (``--methods slice,sam2``) and scored.

OUT receives ``tracking.csv`` (one row per model and method) and ``tracking.json``. The
metrics are computed by ``py-ctcmetrics`` (:func:`napari_segany.tracking.tracking_metrics`).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.registry import load_model
from ..engine.sam2_video import supports_memory
from ..errors import UsageError
from ..intensity import WINDOW_PRESETS, normalizer_from_options
from ..io import read_image
from ..prompts import PromptSet
from ..session import Session
from ..storage.atomic import replacing
from ..tracking import (
    TrackSettings,
    export_ctc,
    mask_prompt,
    read_ctc,
    scan_tracks,
    track,
    tracking_metrics,
)
from ._args import parse_floats

__all__ = ["PROTOCOLS", "run"]

PROTOCOLS = ("tracking",)
COLUMNS = ("model", "method", "valid", "DET", "SEG", "TRA", "division_f1", "division_tp",
           "division_fp", "division_fn", "divisions_true", "seconds")


def _truth(path: Path) -> tuple[np.ndarray, dict[int, int], Path | None]:
    """GT labels, parents, and the GT folder when it is one."""
    if (path / "TRA" / "man_track.txt").is_file():
        labels, lineage = read_ctc(path)
        return labels, {t.id: t.parent for t in lineage.values()}, path
    labels = np.asarray(read_image(path).data)
    if labels.ndim != 3 or labels.dtype.kind not in "biu":
        raise UsageError(f"--labels {path}: need a CTC ground-truth folder (TRA/man_track.txt) "
                         f"or (t, y, x) integer labels, got {labels.dtype} {labels.shape}")
    return labels, {}, None


def _seeds(truth: np.ndarray, parents: dict[int, int], method: str) -> PromptSet:
    table = scan_tracks(truth, parents)
    prompts = PromptSet()
    for t in table.lineage.values():
        if not t.parent:
            prompts.add((t.start,), t.id, mask_prompt(np.asarray(truth[t.start]) == t.id,
                                                      method))
    return prompts


def _row(model: str, method: str, scores: dict[str, Any], seconds: float) -> dict[str, Any]:
    row = {"model": model, "method": method, "seconds": round(seconds, 2)}
    row.update({k: scores.get(k) for k in COLUMNS if k not in row})
    return row


def _write(out: Path, rows: list[dict[str, Any]], notes: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with replacing(out / "tracking.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    with replacing(out / "tracking.json") as tmp:
        tmp.write_text(json.dumps({"rows": rows, "notes": notes}, indent=2))


def _print(rows: list[dict[str, Any]]) -> None:
    cols = ("model", "method", "valid", "DET", "SEG", "TRA", "division_f1")
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]) for c in cols))


def run(args: argparse.Namespace) -> int:
    if args.prediction is not None:
        gt = args.labels or args.data
        if not (gt / "TRA" / "man_track.txt").is_file():
            raise UsageError(f"{gt} is not a Cell Tracking Challenge ground-truth folder "
                             "(TRA/man_track.txt); give it as DATA or --labels")
        t0 = time.perf_counter()
        scores = tracking_metrics(args.prediction, gt)
        rows = [_row(str(args.prediction), "-", scores, time.perf_counter() - t0)]
        _write(args.out, rows, [])
        _print(rows)
        print(f"wrote {args.out / 'tracking.csv'}, {args.out / 'tracking.json'}")
        return 0
    if args.labels is None:
        raise UsageError("the tracking protocol needs --labels GT (a CTC ground-truth folder "
                         "or (t, y, x) labels), or --prediction RES with DATA the ground truth")
    if not args.model and not args.checkpoint:
        raise UsageError("give --model and/or --checkpoint (repeatable), or --prediction")
    image = read_image(args.data)
    data = image.data
    shape = tuple(int(s) for s in (data.shape[:-1] if image.rgb else data.shape))
    truth, parents, gt_dir = _truth(args.labels)
    if truth.shape != shape:
        raise UsageError(f"the labels {truth.shape} do not fit the image {shape}")
    methods = tuple(m.strip() for m in (args.methods or "slice").split(",") if m.strip())
    for m in methods:
        if m not in ("slice", "sam2"):
            raise UsageError(f"--methods takes slice and/or sam2, not {m!r}")
    window = None
    if args.window:
        window = args.window if args.window in WINDOW_PRESETS else parse_floats(
            args.window, "--window", 2)
    percentiles = parse_floats(args.percentiles, "--percentiles", 2) if args.percentiles \
        else None
    normalizer = normalizer_from_options(data, rgb=image.rgb, window=window,
                                         percentiles=percentiles)
    entries = [(m, None) for m in args.model] + [(str(c), c) for c in args.checkpoint]
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="segany-track-eval-") as tmp:
        gt = gt_dir or export_ctc(truth, Path(tmp) / "gt", parents=parents, kind="truth")
        for name, checkpoint in entries:
            backend = load_model(None if checkpoint else name, checkpoint=checkpoint,
                                 arch=args.arch, device=args.device,
                                 random_weights=args.random_weights, cache_dir=args.cache_dir)
            for method in methods:
                if method == "sam2" and not supports_memory(backend):
                    notes.append(f"{name}: sam2 skipped (not a SAM2 model)")
                    continue
                store = Path(tmp) / f"{len(rows)}.zarr"
                session = Session(data, backend, rgb=image.rgb, normalizer=normalizer,
                                  labels=store)
                t0 = time.perf_counter()
                track(session, _seeds(truth, parents, method),
                      settings=TrackSettings(method=method))
                scores = tracking_metrics(session.labels, gt)
                rows.append(_row(name, method, scores, time.perf_counter() - t0))
                session.close()
    _write(args.out, rows, notes)
    _print(rows)
    for note in notes:
        print(f"note: {note}")
    if args.random_weights:
        print("random weights: every score above is meaningless (compute-only run)")
    print(f"wrote {args.out / 'tracking.csv'}, {args.out / 'tracking.json'}")
    return 0
