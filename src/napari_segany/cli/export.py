"""``napari-segany export``: a labels store to TIFF, zarr, NIfTI, RLE CSV, COCO JSON,
DICOM-SEG or RTSTRUCT."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..cases import ClassTable
from ..errors import UsageError
from ..exports import export_labels, resolve_format
from ..storage.labels import LabelsStore
from ._args import parse_floats

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    exp = sub.add_parser(
        "export", help="export a labels store to TIFF, zarr, NIfTI, RLE CSV, COCO JSON, "
                       "DICOM-SEG or RTSTRUCT",
        description="Export a napari-segany labels store plane by plane. Formats: tif "
                    "(ImageJ hyperstack), zarr (copy), nii (NIfTI, .nii or .nii.gz), rle "
                    "(CSV of run-length strings), coco (COCO JSON with RLE masks), "
                    "dicom-seg (DICOM Segmentation) and rtstruct (RT Structure Set) on the "
                    "source DICOM series.")
    exp.add_argument("labels", type=Path,
                     help="labels store (e.g. OUT.zarr, or the folder 'segment' wrote)")
    exp.add_argument("--format", default=None,
                     help="tif | zarr | nii | rle | coco | dicom-seg | rtstruct (default: from "
                          "--out's ending; .seg.dcm and .dcm: dicom-seg, .rtstruct.dcm: rtstruct)")
    exp.add_argument("--out", type=Path, required=True, help="output file (folder for zarr)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exp.add_argument("--axes", default=None, help="tif: axis letters in TZCYX order, e.g. TYX")
    exp.add_argument("--spacing", default=None,
                     help="tif, nii: voxel size per labels axis, e.g. '2,0.5,0.5' for (z, y, x) "
                          "(default: the source image's, if recorded)")
    exp.add_argument("--unit", default=None, help="tif: unit of --spacing, e.g. um")
    exp.add_argument("--no-imagej", action="store_true",
                     help="tif: plain uint32 TIFF instead of an ImageJ hyperstack")
    exp.add_argument("--reference", type=Path, default=None,
                     help="nii: NIfTI image whose header and affine the labels take; "
                          "dicom-seg, rtstruct: the source DICOM series (folder, DICOMDIR or "
                          "file; default: the source the store recorded)")
    exp.add_argument("--series", default=None,
                     help="dicom-seg, rtstruct: which series of --reference (UID, number or "
                          "description) when it holds several")
    exp.add_argument("--class-name", action="append", default=[], metavar="ID=NAME",
                     help="coco, dicom-seg, rtstruct: class of an object, e.g. 3=nucleus "
                          "(repeatable), or NAME for all objects")
    exp.add_argument("--classes", type=Path, default=None,
                     help="dicom-seg, rtstruct: class table (a worklist's classes.json, or one "
                          "name per line) giving names, colours and codes by object id")
    exp.add_argument("--segments", choices=["object", "class"], default=None,
                     help="dicom-seg, rtstruct: one segment per object (default) or per class")
    exp.add_argument("--creator", default=None,
                     help="dicom-seg, rtstruct: who made the segmentation (ContentCreatorName)")
    exp.add_argument("--labelmap", action="store_true",
                     help="dicom-seg: the LABELMAP segmentation type (newer viewers) instead "
                          "of BINARY")
    exp.set_defaults(_run=run)


_DICOM = {"dicom-seg", "rtstruct"}
_EXPORT_OPTIONS = {"axes": ("--axes", {"tif"}), "spacing": ("--spacing", {"tif", "nii"}),
                   "unit": ("--unit", {"tif"}), "imagej": ("--no-imagej", {"tif"}),
                   "reference": ("--reference", {"nii"} | _DICOM),
                   "class_names": ("--class-name", {"coco"} | _DICOM),
                   "series": ("--series", _DICOM), "classes": ("--classes", _DICOM),
                   "segments": ("--segments", _DICOM), "creator": ("--creator", _DICOM),
                   "labelmap": ("--labelmap", {"dicom-seg"})}


def run(args: argparse.Namespace) -> int:
    path = args.labels
    if path.is_dir() and (path / "labels.zarr").exists() and not (path / "zarr.json").exists():
        path = path / "labels.zarr"  # the folder 'segment' wrote
    fmt = resolve_format(args.format, args.out)
    options: dict[str, Any] = {}
    if args.axes:
        options["axes"] = args.axes
    if args.spacing:
        options["spacing"] = parse_floats(args.spacing, "--spacing")
    if args.unit:
        options["unit"] = args.unit
    if args.no_imagej:
        options["imagej"] = False
    if args.reference is not None:
        if not args.reference.exists():
            raise FileNotFoundError(f"reference image not found: {args.reference}")
        options["reference"] = args.reference
    if args.class_name:
        options["class_names"] = _class_names(args.class_name)
    if args.series:
        options["series"] = args.series
    if args.classes is not None:
        options["classes"] = ClassTable.load(args.classes).as_export()
    if args.segments:
        options["segments"] = args.segments
    if args.creator:
        options["creator"] = args.creator
    if args.labelmap:
        options["labelmap"] = True
    for name in options:
        flag, formats = _EXPORT_OPTIONS[name]
        if fmt not in formats:
            raise UsageError(f"{flag} applies to --format {' or '.join(sorted(formats))}, "
                             f"not {fmt}")
    if not path.exists():
        raise FileNotFoundError(f"labels store not found: {path}")
    if not path.is_dir():
        raise UsageError(f"{path} is not a napari-segany labels store (a zarr folder written by "
                         "'segment' or 'propagate')")
    store = LabelsStore.open(path, mode="r")
    t0 = time.perf_counter()
    export_labels(store, args.out, format=fmt, overwrite=args.overwrite, **options)
    n = int(np.prod(store.shape[:-2])) if store.shape[:-2] else 1
    print(f"wrote {args.out} ({fmt}, labels {store.shape}, {n} planes) in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def _class_names(items: list[str]) -> dict[int, str] | str:
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    names: dict[int, str] = {}
    for item in items:
        oid, sep, name = item.partition("=")
        try:
            ok = sep and name and int(oid) >= 1
        except ValueError:
            ok = False
        if not ok:
            raise UsageError(f"malformed --class-name {item!r}; expected ID=NAME, e.g. 3=nucleus")
        names[int(oid)] = name
    return names
