"""Reading boxes: CSV and JSON box files (:func:`read_boxes`) and napari Shapes layer data
(:func:`boxes_from_shapes`); the formats are described in :mod:`napari_segany.boxes`."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..prompts import shapes_to_prompts
from .table import (
    BoxError,
    BoxTable,
    _class_value,
    _id_value,
    _plane_value,
    _score_value,
)

BOXES_FORMAT = "napari-segany.boxes"
_ALIASES = {
    "x0": ("x0", "xmin", "x_min"), "y0": ("y0", "ymin", "y_min"),
    "x1": ("x1", "xmax", "x_max"), "y1": ("y1", "ymax", "y_max"),
    "x": ("x",), "y": ("y",), "w": ("width", "w"), "h": ("height", "h"),
    "plane": ("plane", "z", "t", "frame"), "class": ("class", "class_name", "label", "category"),
    "id": ("id", "object_id"), "score": ("score", "confidence"),
}


# ----------------------------------------------------------------------------------- reading
def read_boxes(path: str | os.PathLike) -> BoxTable:
    """Read boxes from a CSV (``.csv``, ``.tsv``) or JSON (``.json``) file (see module notes)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"boxes file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BoxError(f"cannot read boxes file {p}: {exc}") from None
    if p.suffix.lower() == ".json":
        return _read_json(text, p)
    if p.suffix.lower() in (".csv", ".tsv", ".txt"):
        return _read_csv(text, p)
    raise BoxError(f"boxes file {p} must end in .csv, .tsv or .json")


def _pick(record: dict[str, Any], name: str) -> Any:
    for alias in _ALIASES[name]:
        if alias in record and record[alias] not in (None, ""):
            return record[alias]
    return None


def _record(rec: dict[str, Any], where: str) -> tuple[list[float], Any, Any, Any, Any]:
    rec = {str(k).strip().lower(): v for k, v in rec.items()}
    box: Any = None
    xywh = False
    if rec.get("box") is not None:
        box = rec["box"]
    elif rec.get("bbox") is not None:
        box, xywh = rec["bbox"], True
    elif all(_pick(rec, k) is not None for k in ("x0", "y0", "x1", "y1")):
        box = [_pick(rec, k) for k in ("x0", "y0", "x1", "y1")]
    elif all(_pick(rec, k) is not None for k in ("x", "y", "w", "h")):
        box, xywh = [_pick(rec, k) for k in ("x", "y", "w", "h")], True
    if box is None:
        raise BoxError(f"{where}: no box; give x0, y0, x1, y1 (or xmin, ymin, xmax, ymax, or x, "
                       "y, width, height)")
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        raise BoxError(f"{where}: box {box!r} is not 4 numbers") from None
    if len(vals) != 4:
        raise BoxError(f"{where}: box {box!r} is not 4 numbers")
    if xywh:
        vals = [vals[0], vals[1], vals[0] + vals[2], vals[1] + vals[3]]
    try:
        plane = _plane_value(_pick(rec, "plane"))
        oid = _pick(rec, "id")
        oid = 0 if oid is None else _id_value(oid)
        score = _pick(rec, "score")
        score = math.nan if score is None else _score_value(score)
    except BoxError as exc:
        raise BoxError(f"{where}: {exc}") from None
    return vals, plane, _class_value(_pick(rec, "class")), oid, score


def _table(records: list[tuple], rows: list[str], source: str) -> BoxTable:
    if not records:
        raise BoxError(f"{source} holds no boxes")
    boxes, planes, classes, ids, scores = zip(*records, strict=True)
    return BoxTable(np.array(boxes, np.float64), list(planes), list(classes),
                    np.array(ids, np.int64), np.array(scores, np.float64), source, rows)


def _read_csv(text: str, p: Path) -> BoxTable:
    lines = text.splitlines()
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t") if lines else csv.excel
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(lines, dialect=dialect)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    have = set(header)
    if not ({"x0", "y0", "x1", "y1"} <= have or {"xmin", "ymin", "xmax", "ymax"} <= have
            or ({"x", "y"} <= have and have & {"w", "width"} and have & {"h", "height"})):
        raise BoxError(f"{p}: the header {header} lacks box columns; expected x0,y0,x1,y1 (or "
                       "xmin,ymin,xmax,ymax, or x,y,width,height) plus optional plane,class,id,"
                       "score")
    records, rows = [], []
    for n, row in enumerate(reader, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        where = f"{p.name} line {n}"
        records.append(_record({k: (v.strip() if isinstance(v, str) else v)
                                for k, v in row.items() if k is not None}, where))
        rows.append(where)
    return _table(records, rows, str(p))


def _read_json(text: str, p: Path) -> BoxTable:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BoxError(f"{p} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        if data.get("format", BOXES_FORMAT) != BOXES_FORMAT or "boxes" not in data:
            raise BoxError(f"{p}: expected a list of boxes or {{'format': '{BOXES_FORMAT}', "
                           "'version': 1, 'boxes': [...]}")
        data = data["boxes"]
    if not isinstance(data, list):
        raise BoxError(f"{p}: expected a list of box records")
    records, rows = [], []
    for i, rec in enumerate(data):
        where = f"{p.name} box {i}"
        if not isinstance(rec, dict):
            raise BoxError(f"{where} is not an object like {{'box': [x0, y0, x1, y1]}}")
        records.append(_record(rec, where))
        rows.append(where)
    return _table(records, rows, str(p))


def boxes_from_shapes(
    shapes: Any,
    *,
    image_shape: Sequence[int],
    shape_types: Any = None,
    classes: Any = None,
    shapes_transform: Any = None,
    image_transform: Any = None,
) -> BoxTable:
    """Boxes from napari Shapes layer data (rectangles), one row per shape, in order.

    Parameters are those of :func:`napari_segany.prompts.shapes_to_prompts`, plus
    ``classes``: one class per shape (e.g. ``layer.features["class"]``) or one for all.
    """
    n = len(shapes)
    prompts = shapes_to_prompts(shapes, image_shape=image_shape, shape_types=shape_types,
                                object_ids=np.arange(1, n + 1) if n else None,
                                shapes_transform=shapes_transform,
                                image_transform=image_transform)
    boxes = np.zeros((n, 4))
    planes: list[tuple[int, ...] | None] = [None] * n
    for key, objects in prompts.items():
        for oid, p in objects.items():
            boxes[oid - 1], planes[oid - 1] = p.box, key
    table = BoxTable.from_array(boxes, planes=planes, classes=classes, source="shapes")
    table.rows = [f"shape {i}" for i in range(n)]
    return table
