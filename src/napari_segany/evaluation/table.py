"""The tidy results table: one row per model, dataset, object and iteration/plane/frame.

Rows are written to ``results.csv`` one *unit* at a time (a plane of a 2D protocol, a
propagation method of a volume or video), in a single write that is flushed and synced,
and the unit's key is appended to ``units.txt`` afterwards. A run that is cancelled or
dies keeps every finished unit; running again with the same output folder reads both
files, drops rows of units that were not finished, and skips the finished ones.

Columns
-------
``model, dataset, protocol, method, plane, object_id, iteration, clicks, source`` identify a
row; ``iou, dice, nsd, j, f, score, area_true, area_pred`` are per-object values;
``msa, sa50, sa75, precision, recall, f1, n_true, n_pred`` are per-plane values of the
automatic protocol (its rows with an empty ``object_id``). Empty cells are "not
applicable". ``plane`` is the plane key joined with ``","`` (empty for a 2D image);
``source`` is ``annotated``/``propagated``/``missed`` (volume and video planes),
``volume`` (an object's 3D row), ``matched``/``missed`` (automatic protocol objects) or
``plane`` (automatic per-plane rows).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["COLUMNS", "KEY_COLUMNS", "ResultTable", "unit_key", "read_rows"]

KEY_COLUMNS = ("model", "dataset", "protocol", "method", "plane", "object_id", "iteration",
               "clicks", "source")
VALUE_COLUMNS = ("iou", "dice", "nsd", "j", "f", "score", "area_true", "area_pred", "msa",
                 "sa50", "sa75", "precision", "recall", "f1", "n_true", "n_pred")
COLUMNS = KEY_COLUMNS + VALUE_COLUMNS
_INTS = {"object_id", "iteration", "clicks", "area_true", "area_pred", "n_true", "n_pred"}
_STRS = {"model", "dataset", "protocol", "method", "plane", "source"}


def unit_key(model: str, dataset: str, protocol: str, unit: str) -> str:
    """The key of one unit of work, as written to ``units.txt``."""
    return json.dumps([model, dataset, protocol, unit])


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return "nan" if math.isnan(f) else repr(round(f, 6))
    if isinstance(v, np.integer):
        return str(int(v))
    return str(v)


def _parse(name: str, text: str) -> Any:
    if name in _STRS:
        return text
    if text == "":
        return None
    if name in _INTS:
        return int(text)
    return float(text)


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` (typed: ints, floats, None for empty cells)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = []
        for raw in reader:
            if None in raw or any(v is None for v in raw.values()):
                continue  # a torn last line
            rows.append({k: _parse(k, raw.get(k, "")) for k in COLUMNS})
    return rows


class ResultTable:
    """Rows in memory, mirrored to ``results.csv`` when a folder is given.

    Parameters
    ----------
    folder : path, optional
        Output folder; ``results.csv`` and ``units.txt`` are written there.
    resume : bool
        Read finished units from an existing table (otherwise it is replaced).
    """

    def __init__(self, folder: str | os.PathLike | None = None, *, resume: bool = True) -> None:
        self.rows: list[dict[str, Any]] = []
        self.done: set[str] = set()
        self.resumed = 0
        self.folder = None if folder is None else Path(folder)
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        csv_path, units = self.csv_path, self.folder / "units.txt"
        if resume and csv_path.exists() and units.exists():
            self.done = {ln for ln in units.read_text().splitlines() if ln.strip()}
            kept = [r for r in read_rows(csv_path) if self._key(r) in self.done]
            self.rows, self.resumed = kept, len(self.done)
        self._rewrite()

    @property
    def csv_path(self) -> Path:
        assert self.folder is not None
        return self.folder / "results.csv"

    @staticmethod
    def _key(row: dict[str, Any]) -> str:
        p = row["protocol"]
        unit = row["plane"] if p in ("interactive", "automatic") else row["method"]
        return unit_key(row["model"], row["dataset"], p, unit)

    def _rewrite(self) -> None:
        assert self.folder is not None
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for r in self.rows:
            writer.writerow([_cell(r.get(c)) for c in COLUMNS])
        tmp = self.csv_path.with_suffix(".csv.tmp")
        tmp.write_text(buf.getvalue())
        os.replace(tmp, self.csv_path)
        (self.folder / "units.txt").write_text("".join(f"{k}\n" for k in sorted(self.done)))

    def is_done(self, model: str, dataset: str, protocol: str, unit: str) -> bool:
        return unit_key(model, dataset, protocol, unit) in self.done

    def finished(self, model: str, dataset: str, protocol: str) -> set[str]:
        """Units of ``(model, dataset, protocol)`` already finished."""
        out = set()
        for key in self.done:
            m, d, p, unit = json.loads(key)
            if (m, d, p) == (model, dataset, protocol):
                out.add(unit)
        return out

    def add_unit(self, model: str, dataset: str, protocol: str, unit: str,
                 rows: Iterable[dict[str, Any]]) -> None:
        """Append the rows of one finished unit (and record it as finished)."""
        rows = [{c: r.get(c) for c in COLUMNS} for r in rows]
        key = unit_key(model, dataset, protocol, unit)
        self.rows += rows
        self.done.add(key)
        if self.folder is None:
            return
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for r in rows:
            writer.writerow([_cell(r.get(c)) for c in COLUMNS])
        with open(self.csv_path, "a", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.folder / "units.txt", "a") as fh:
            fh.write(key + "\n")
            fh.flush()
            os.fsync(fh.fileno())
