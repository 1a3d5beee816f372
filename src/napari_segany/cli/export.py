"""``napari-segany export``: a labels store to TIFF, zarr, OME-Zarr, NIfTI, RLE CSV, COCO
JSON, DICOM-SEG, RTSTRUCT or an overlay movie (MP4)."""

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
        "export", help="export a labels store to TIFF, zarr, OME-Zarr, NIfTI, RLE CSV, COCO "
                       "JSON, DICOM-SEG, RTSTRUCT or an overlay movie (MP4)",
        description="Export a napari-segany labels store plane by plane. Formats: tif "
                    "(ImageJ hyperstack), zarr (copy), ome-zarr (NGFF 0.4 labels with "
                    "levels), nii (NIfTI, .nii or .nii.gz), rle "
                    "(CSV of run-length strings), coco (COCO JSON with RLE masks), "
                    "dicom-seg (DICOM Segmentation) and rtstruct (RT Structure Set) on the "
                    "source DICOM series, mp4 (the image with the labels drawn over it).")
    exp.add_argument("labels", type=Path,
                     help="labels store (e.g. OUT.zarr, or the folder 'segment' wrote)")
    exp.add_argument("--format", default=None,
                     help="tif | zarr | ome-zarr | nii | rle | coco | dicom-seg | rtstruct | "
                          "mp4 (default: from --out's ending; .ome.zarr: ome-zarr, .seg.dcm "
                          "and .dcm: dicom-seg, .rtstruct.dcm: rtstruct, .mp4: overlay movie)")
    exp.add_argument("--out", type=Path, required=True, help="output file (folder for zarr)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exp.add_argument("--axes", default=None,
                     help="tif, ome-zarr: axis letters in TZCYX order, e.g. TYX")
    exp.add_argument("--spacing", default=None,
                     help="tif, nii, ome-zarr: voxel size per labels axis, e.g. '2,0.5,0.5' "
                          "for (z, y, x) (default: the source image's, if recorded)")
    exp.add_argument("--unit", default=None, help="tif, ome-zarr: unit of --spacing, e.g. um")
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
                     help="coco, dicom-seg, rtstruct, ome-zarr: class of an object, e.g. "
                          "3=nucleus (repeatable), or NAME for all objects")
    exp.add_argument("--classes", type=Path, default=None,
                     help="dicom-seg, rtstruct, ome-zarr: class table (a worklist's "
                          "classes.json, or one name per line) giving names, colours and "
                          "codes by object id")
    exp.add_argument("--segments", choices=["object", "class"], default=None,
                     help="dicom-seg, rtstruct: one segment per object (default) or per class")
    exp.add_argument("--creator", default=None,
                     help="dicom-seg, rtstruct: who made the segmentation (ContentCreatorName)")
    exp.add_argument("--fps", type=float, default=None,
                     help="mp4: frames per second (default: the source video's, else 10)")
    exp.add_argument("--labelmap", action="store_true",
                     help="dicom-seg: the LABELMAP segmentation type (newer viewers) instead "
                          "of BINARY")
    exp.add_argument("--image", default=None, metavar="PATH|source",
                     help="ome-zarr: write this image (of the labels' shape) at the root, so "
                          "the folder opens as the image with its labels; 'source': the "
                          "image the store recorded (default: labels only); mp4: the image or "
                          "video under the labels (default: the source the store recorded)")
    exp.add_argument("--levels", type=int, default=None,
                     help="ome-zarr: resolution levels, each halving y and x (default: down "
                          "to 512 pixels a side)")
    exp.add_argument("--label-name", default=None,
                     help="ome-zarr: name of the labels (labels/NAME; default: the store's "
                          "folder name)")
    exp.set_defaults(_run=run)


_DICOM = {"dicom-seg", "rtstruct"}
_OME = {"ome-zarr"}
_EXPORT_OPTIONS = {"axes": ("--axes", {"tif"} | _OME),
                   "spacing": ("--spacing", {"tif", "nii"} | _OME),
                   "unit": ("--unit", {"tif"} | _OME), "imagej": ("--no-imagej", {"tif"}),
                   "reference": ("--reference", {"nii"} | _DICOM),
                   "class_names": ("--class-name", {"coco"} | _DICOM | _OME),
                   "series": ("--series", _DICOM), "classes": ("--classes", _DICOM | _OME),
                   "image": ("--image", _OME | {"mp4"}), "levels": ("--levels", _OME),
                   "name": ("--label-name", _OME),
                   "segments": ("--segments", _DICOM), "creator": ("--creator", _DICOM),
                   "labelmap": ("--labelmap", {"dicom-seg"}),
                   "fps": ("--fps", {"mp4"})}


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
    # -- ome-zarr (exports/ome_zarr.py)
    if args.image is not None and fmt != "mp4":
        options["image"] = _image(args.image, source=True)  # default: labels only
    if args.levels is not None:
        options["levels"] = args.levels
    if args.label_name:
        options["name"] = args.label_name
    # -- mp4, the overlay movie (exports/movie.py): its own options, kept apart
    if args.fps is not None:
        options["fps"] = args.fps
    if args.image is not None and fmt == "mp4":
        image = _image(args.image, source=None)  # default: the source the store recorded
        if image is not None:
            options["image"] = image
    # --
    for name in options:
        flag, formats = _EXPORT_OPTIONS[name]
        if fmt not in formats:
            named = sorted(formats, key=lambda f: (f in _OME, f))  # the newest format last
            raise UsageError(f"{flag} applies to --format {' or '.join(named)}, not {fmt}")
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


def _image(value: str, *, source: Any) -> Any:
    """``--image``: a file (it must exist), or ``source`` (the image the store recorded),
    which is ``source`` for the format's writer (``True`` for ome-zarr; ``None``, the
    default, for mp4). A file named ``source`` in the current folder wins."""
    if value == "source" and not Path(value).exists():
        return source
    path = Path(value)
    if not path.exists():
        raise FileNotFoundError(f"--image not found: {value} (a file, a folder of frames, or "
                                "'source' for the image the store recorded)")
    return path


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
