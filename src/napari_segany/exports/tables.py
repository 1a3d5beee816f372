"""Table-like label exports: run-length CSV (RLE) and COCO JSON instance annotations
(see :mod:`napari_segany.exports`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..io import FrameFolder
from .common import ExportError, _check_target, _key_text, _Labels, _target


# ------------------------------------------------------------------------------ RLE
def _runs(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-based starts, lengths and values of the runs of equal values of a 1D array."""
    if flat.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, flat[:0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    lengths = np.diff(np.concatenate([starts, [flat.size]])).astype(np.int64)
    return starts, lengths, flat[starts]


def rle_encode(mask: Any) -> str:
    """Run-length encode a binary mask as ``"start length start length ..."`` text.

    Pixels are numbered in column-major (Fortran) order, top to bottom then left to
    right, starting at 1: the convention of Kaggle segmentation challenges (the
    uncompressed COCO RLE counts the same pixel order).

    Parameters
    ----------
    mask : array_like, shape (H, W)
        Non-zero (or True) pixels are foreground.

    Returns
    -------
    str
        Space-separated pairs, ``""`` for an empty mask, ``"1 {H*W}"`` for a full one.

    Examples
    --------
    >>> rle_encode(np.array([[0, 1], [1, 1]]))
    '2 3'
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ExportError(f"rle_encode needs a 2D (H, W) mask, got shape {arr.shape}")
    starts, lengths, values = _runs(arr.ravel(order="F") != 0)
    keep = values.astype(bool)
    pairs = np.stack([starts[keep] + 1, lengths[keep]], axis=1).ravel()
    return " ".join(map(str, pairs.tolist()))


def rle_decode(text: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode :func:`rle_encode` text into a ``(H, W)`` bool mask.

    Parameters
    ----------
    text : str
        ``"start length ..."`` with 1-based column-major starts; empty for an empty mask.
    shape : (int, int)
        ``(H, W)`` of the mask.

    Raises
    ------
    ExportError
        If the text is not pairs of integers, a run is empty, runs overlap or are out of
        order, or a run leaves the image.
    """
    h, w = (int(s) for s in shape)
    n = h * w
    try:
        values = np.array([int(v) for v in str(text).split()], dtype=np.int64)
    except ValueError:
        raise ExportError(f"RLE text must be integers 'start length ...', got {text!r:.60}") \
            from None
    if values.size % 2:
        raise ExportError(f"RLE text has {values.size} numbers; it needs start/length pairs")
    starts, lengths = values[0::2] - 1, values[1::2]
    ends = starts + lengths
    if np.any(starts < 0) or np.any(lengths < 1) or np.any(ends > n) or np.any(
            starts[1:] < ends[:-1]):
        raise ExportError(f"RLE runs must be sorted, non-overlapping, 1-based and within the "
                          f"{h}x{w} = {n} pixels, with lengths >= 1")
    flat = np.zeros(n + 1, dtype=np.int8)
    np.add.at(flat, starts, 1)
    np.add.at(flat, ends, -1)
    return (np.cumsum(flat[:-1]) > 0).reshape((h, w), order="F")


def _plane_runs(plane: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """object id -> (0-based column-major starts, lengths) of its runs on one plane."""
    starts, lengths, values = _runs(plane.ravel(order="F"))
    fg = values != 0
    if not fg.any():
        return {}
    starts, lengths, values = starts[fg], lengths[fg], values[fg]
    order = np.argsort(values, kind="stable")  # stable: runs stay in pixel order
    ids, first = np.unique(values[order], return_index=True)
    bounds = list(first[1:]) + [len(order)]
    return {int(i): (starts[order[a:b]], lengths[order[a:b]])
            for i, a, b in zip(ids, first, bounds, strict=True)}


def export_rle(labels: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write one CSV row per object and plane: ``id,plane,rle``.

    Parameters
    ----------
    labels : LabelsStore, path of one, or integer array, shape (..., H, W)
        Read one plane at a time.
    path : str or path
        The ``.csv`` file to write.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Columns: ``id`` (object id), ``plane`` (the plane's indices along the leading axes,
    space-separated, e.g. ``"12"`` for z = 12 of a ``(z, y, x)`` volume or ``"3 12"`` for
    ``(t, z, y, x)``; empty for a 2D image) and ``rle`` (:func:`rle_encode` of the object's
    mask on that plane). Rows are sorted by plane, then id; an object absent from a plane
    has no row there. Decoding needs the plane shape ``(H, W)``: :func:`read_rle_csv`.
    """
    lab = _Labels(labels)
    with _target(path, overwrite, lab) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "plane", "rle"])
        for key, plane in lab.planes():
            for oid, (starts, lengths) in _plane_runs(plane).items():
                pairs = np.stack([starts + 1, lengths], axis=1).ravel()
                out.writerow([oid, _key_text(key), " ".join(map(str, pairs.tolist()))])
    return Path(path)


def read_rle_csv(path: str | os.PathLike, shape: tuple[int, ...]) -> np.ndarray:
    """Read an :func:`export_rle` CSV back into a ``shape`` uint32 labels array (in memory).

    Raises
    ------
    ExportError
        If the file does not have the ``id,plane,rle`` columns, or a row does not fit
        ``shape``.
    """
    shape = tuple(int(s) for s in shape)
    out = np.zeros(shape, dtype=np.uint32)
    with open(path, newline="") as f:
        rows = csv.DictReader(f)
        if rows.fieldnames is None or not {"id", "plane", "rle"} <= set(rows.fieldnames):
            raise ExportError(f"{path} is not an id,plane,rle CSV (columns {rows.fieldnames})")
        for n, row in enumerate(rows, start=2):
            key = tuple(int(v) for v in row["plane"].split())
            lead = shape[:-2]
            if len(key) != len(lead) or any(not 0 <= k < s for k, s in zip(key, lead, strict=True)):
                raise ExportError(f"{path} line {n}: plane {key} does not fit shape {shape}")
            out[key][rle_decode(row["rle"], shape[-2:])] = int(row["id"])
    return out


# ------------------------------------------------------------------------------ COCO
def _class_names(lab: _Labels, class_names: Any) -> tuple[dict[int, str], str]:
    """(object id -> class name, name of objects without one)."""
    names = {int(k): str(v["class_name"]) for k, v in lab.provenance.get("objects", {}).items()
             if isinstance(v, dict) and v.get("class_name")}
    if isinstance(class_names, str):
        return {}, class_names
    if class_names is not None:
        if not isinstance(class_names, Mapping):
            raise ExportError("class_names must map object ids to class names, e.g. "
                              "{1: 'nucleus'}, or be one name for all objects")
        names.update({int(k): str(v) for k, v in class_names.items()})
    return names, "object"


def _image_names(lab: _Labels, image_names: Sequence[str] | None) -> list[str]:
    n = math.prod(lab.lead)
    if image_names is not None:
        names = [str(v) for v in image_names]
        if len(names) != n:
            raise ExportError(f"got {len(names)} image names for {n} planes; give one per plane")
        return names
    src = lab.source()
    path = Path(src["path"]) if src.get("path") else None
    if path is not None and not lab.lead:
        return [path.name]
    if path is not None and src.get("format") == "frames" and len(lab.lead) == 1 and path.is_dir():
        with contextlib.suppress(Exception):
            files = FrameFolder(path).files
            if len(files) == n:
                return [f.name for f in files]
    base = path.name.split(".")[0] if path is not None else "plane"
    return [f"{base}_{'_'.join(str(i) for i in key)}" if key else base
            for key in np.ndindex(*lab.lead)]


def export_coco(
    labels_or_store: Any,
    path: str | os.PathLike,
    *,
    class_names: Mapping[int, str] | str | None = None,
    image_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write COCO instance annotations with RLE masks (encoded by pycocotools).

    Parameters
    ----------
    labels_or_store : LabelsStore, path of one, or integer array, shape (..., H, W)
        Read one plane at a time.
    path : str or path
        The ``.json`` file to write.
    class_names : mapping or str, optional
        Object id -> class name (overrides the ``class_name`` recorded in the store's
        ``objects`` attributes), or one name for every object. Objects without a name
        get the category ``"object"``.
    image_names : sequence of str, optional
        ``file_name`` of each plane's image entry, in C order of the planes. Default: the
        source image's file name for a 2D image, its frame file names for a folder of
        frames, else ``"<source>_<i>"`` (``"plane_<i>"`` when no source is recorded).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    One image entry per plane (``id`` from 1 in C order; extra field ``plane``: the
    leading indices), one annotation per object per plane where it has pixels, with
    ``segmentation`` a compressed RLE ``{"size": [H, W], "counts": str}``, ``area``
    (pixels), ``bbox`` ``[x, y, width, height]``, ``iscrowd`` 0, and the extra field
    ``object_id`` (the same object on different planes shares it). Categories are the
    distinct class names, ``id`` from 1 in order of first use by increasing object id.
    """
    from pycocotools import mask as mask_utils

    lab = _Labels(labels_or_store)
    _check_target(path, overwrite, lab)
    names, default = _class_names(lab, class_names)
    files = _image_names(lab, image_names)
    h, w = lab.shape[-2:]
    categories: dict[str, int] = {}
    images, annotations = [], []

    def category(oid: int) -> int:
        name = names.get(oid, default)
        return categories.setdefault(name, len(categories) + 1)

    for n, (key, plane) in enumerate(lab.planes()):
        image_id = n + 1
        images.append({"id": image_id, "file_name": files[n], "height": h, "width": w,
                       "plane": list(key)})
        for oid, (starts, lengths) in _plane_runs(plane).items():
            gaps = starts - np.concatenate([[0], starts[:-1] + lengths[:-1]])
            tail = h * w - int(starts[-1] + lengths[-1])  # COCO counts cover every pixel
            counts = np.stack([gaps, lengths], axis=1).ravel().tolist() + [tail] * (tail > 0)
            rle = mask_utils.frPyObjects({"counts": counts, "size": [h, w]}, h, w)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category(oid),
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0, "object_id": oid,
            })
    given = set(class_names) if class_names is not None and not isinstance(class_names, str) \
        else set()
    missing = sorted(int(k) for k in given - {a["object_id"] for a in annotations})
    if missing:
        raise ExportError(f"class names were given for object(s) {missing}, which the labels do "
                          "not hold; check the ids (e.g. --class-name 3=nucleus)")
    if not categories:
        categories[default] = 1
    doc = {
        "info": {"description": "exported by napari-segany", "version": __version__},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": c, "supercategory": ""} for c, i in categories.items()],
    }
    with _target(path, overwrite, lab) as tmp, open(tmp, "w") as f:
        json.dump(doc, f)
    return Path(path)
