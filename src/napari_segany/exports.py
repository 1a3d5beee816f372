"""Export labels to other tools: TIFF, NIfTI, zarr, run-length CSV and COCO JSON.

Every writer reads its input one 2D plane at a time, so a labels store far larger than
memory exports in bounded memory (COCO and RLE keep only the encoded strings). Inputs are
a :class:`~napari_segany.labels.LabelsStore`, the path of one, or any integer array of
shape ``(..., H, W)`` (numpy, zarr, dask): the leading axes index planes, ``y`` and ``x``
are the last two. Id 0 is background.

Outputs are written to a temporary name next to the target and renamed into place when
complete, so an interrupted export never leaves a half-written file under the target
name. An existing target is refused unless ``overwrite=True``.

See ``docs/formats.md`` for every format's conventions.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ExportError",
    "FORMATS",
    "rle_encode",
    "rle_decode",
    "export_rle",
    "read_rle_csv",
    "export_coco",
    "export_tiff",
    "export_nifti",
    "export_zarr",
    "export_labels",
    "format_from_path",
    "resolve_format",
]

#: Export formats and the file name endings that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "tif": (".tif", ".tiff"),
    "nii": (".nii", ".nii.gz"),
    "zarr": (".zarr",),
    "rle": (".csv",),
    "coco": (".json",),
}
_ALIASES = {"tiff": "tif", "nifti": "nii", "nii.gz": "nii", "csv": "rle", "json": "coco"}
_IMAGEJ_AXES = "TZCYX"
_FLOAT32_EXACT = 2**24  # every integer up to this is exact in float32


class ExportError(ValueError):
    """Labels cannot be exported as asked; the message says why and what to do."""


# ------------------------------------------------------------------------------ inputs
class _Labels:
    """An integer ``(..., H, W)`` array read plane by plane, and its provenance, if any."""

    def __init__(self, source: Any) -> None:
        from .labels import LabelsStore

        self.store: LabelsStore | None = None
        if isinstance(source, (str, os.PathLike)):
            source = LabelsStore.open(source, mode="r")
        if isinstance(source, LabelsStore):
            self.store, self.array = source, source.array
            self.provenance: dict[str, Any] = source.provenance
        else:
            self.array, self.provenance = source, {}
        shape = getattr(self.array, "shape", None)
        dtype = getattr(self.array, "dtype", None)
        if shape is None or dtype is None:
            self.array = np.asarray(self.array)
            shape, dtype = self.array.shape, self.array.dtype
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) < 2 or 0 in self.shape:
            raise ExportError(f"labels must have 2 or more non-empty axes (..., H, W), "
                              f"got shape {self.shape}")
        if np.dtype(dtype).kind not in "biu":
            raise ExportError(f"labels must be integers (0 = background), got dtype {dtype}")
        self.lead = self.shape[:-2]

    @property
    def path(self) -> Path | None:
        return None if self.store is None else Path(self.store.path)

    def planes(self) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
        """``(plane key, (H, W) labels)`` for every plane in C order."""
        for key in np.ndindex(*self.lead):
            plane = np.asarray(self.array[key] if key else self.array[...])
            if plane.dtype.kind == "i" and plane.size and int(plane.min()) < 0:
                raise ExportError(f"plane {key} holds negative labels ({int(plane.min())}); "
                                  "labels must be >= 0")
            yield key, plane

    def max_id(self) -> int:
        """The largest id in the labels (one pass over the planes)."""
        return max((int(p.max()) for _, p in self.planes()), default=0)

    def source(self) -> dict[str, Any]:
        """What the command line recorded about the image the labels were drawn on."""
        src = self.provenance.get("source")
        return src if isinstance(src, dict) else {}


def _smallest_uint(max_id: int, choices: Sequence[str] = ("uint8", "uint16", "uint32")) -> Any:
    for name in choices:
        if max_id <= np.iinfo(name).max:
            return np.dtype(name)
    raise ExportError(f"label id {max_id} does not fit {choices[-1]}")


def _key_text(key: tuple[int, ...]) -> str:
    return " ".join(str(k) for k in key)


# ------------------------------------------------------------------------------ targets
def _check_target(path: str | os.PathLike, overwrite: bool, labels: _Labels) -> Path:
    """Refuse an output that exists (without ``overwrite``), is the input, or has no folder."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExportError(f"{path} already exists; choose another output or pass "
                          "overwrite=True (--overwrite) to replace it")
    if path.exists():
        if labels.path is not None:
            src, dst = labels.path.resolve(), path.resolve()
            if src == dst or dst in src.parents:
                raise ExportError(f"{path} holds the labels being exported; choose another "
                                  "output")
        zarr_dir = (path / "zarr.json").exists() or (path / ".zarray").exists()
        if path.is_dir() and not zarr_dir:
            raise ExportError(f"{path} is a folder that is not a zarr store; it is not "
                              "replaced even with overwrite: choose another output")
    if not path.parent.is_dir():
        raise ExportError(f"folder {path.parent} does not exist; create it first")
    return path


@contextlib.contextmanager
def _target(path: str | os.PathLike, overwrite: bool, labels: _Labels) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it to ``path`` when the block succeeds."""
    path = _check_target(path, overwrite, labels)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    _remove(path)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


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
            from .io import FrameFolder

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
    if not categories:
        categories[default] = 1
    from ._version import __version__

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


# ------------------------------------------------------------------------------ TIFF
def _default_axes(ndim: int) -> str:
    if ndim > 5:
        raise ExportError(f"ImageJ TIFF holds at most 5 axes (TZCYX); labels have {ndim}")
    return {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}[ndim]


def _check_axes(axes: str, ndim: int, imagej: bool) -> str:
    axes = axes.upper()
    if len(axes) != ndim or len(set(axes)) != ndim or not axes.endswith("YX"):
        raise ExportError(f"axes {axes!r} must name each of the {ndim} labels axes once and "
                          "end with 'YX', e.g. 'ZYX' or 'TZYX'")
    if imagej and (any(a not in _IMAGEJ_AXES for a in axes)
                   or list(axes) != sorted(axes, key=_IMAGEJ_AXES.index)):
        raise ExportError(f"ImageJ axes must be in the order T, Z, C, Y, X (e.g. 'TZYX'); "
                          f"got {axes!r}")
    return axes


def _spacing(lab: _Labels, spacing: Sequence[float] | None) -> tuple[float, ...] | None:
    if spacing is None:  # the recorded source's, when it fits these labels
        spacing = lab.source().get("spacing")
        if spacing is None or len(spacing) != len(lab.shape):
            return None
    out = tuple(float(s) for s in spacing)
    if len(out) != len(lab.shape) or not all(math.isfinite(s) and s > 0 for s in out):
        raise ExportError(f"spacing must be {len(lab.shape)} positive numbers, one per labels "
                          f"axis {lab.shape}, got {list(spacing)}")
    return out


def export_tiff(
    labels: Any,
    path: str | os.PathLike,
    *,
    axes: str | None = None,
    spacing: Sequence[float] | None = None,
    unit: str | None = None,
    imagej: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write labels as an ImageJ-compatible TIFF hyperstack, one page per plane.

    Parameters
    ----------
    labels : LabelsStore, path of one, or integer array, shape (..., H, W)
        Read and written one plane at a time (contiguous pages, tifffile's TiffWriter).
    path : str or path
        The ``.tif`` file to write.
    axes : str, optional
        Axis letters, in ImageJ order T, Z, C, Y, X. Default by number of axes: ``"YX"``,
        ``"ZYX"``, ``"TZYX"``, ``"TZCYX"``; pass ``"TYX"`` for a time series.
    spacing : sequence of float, optional
        Voxel size per labels axis (e.g. ``(dz, dy, dx)``); default: the source image's,
        when the command line recorded it. Written as the X/Y resolution, the ImageJ
        ``spacing`` (Z) and ``finterval`` (T).
    unit : str, optional
        Unit of `spacing` (ImageJ ``unit``), e.g. ``"um"``; default: the recorded source's.
    imagej : bool
        True: an ImageJ hyperstack, whose pixel types are only uint8/uint16/float32, so
        labels are written as **uint16** when the largest id is <= 65535, else as
        **float32** (exact up to 2**24 = 16777216; larger ids are refused). False: a plain
        **uint32** TIFF with tifffile's shape metadata (not an ImageJ hyperstack).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.
    """
    import tifffile

    lab = _Labels(labels)
    _check_target(path, overwrite, lab)
    ndim = len(lab.shape)
    axes = _check_axes(axes or _default_axes(ndim), ndim, imagej)
    max_id = lab.max_id()
    if not imagej:
        dtype = np.dtype("uint32")
        if max_id > np.iinfo(dtype).max:
            raise ExportError(f"label id {max_id} does not fit uint32")
    elif max_id <= np.iinfo(np.uint16).max:
        dtype = np.dtype("uint16")
    elif max_id <= _FLOAT32_EXACT:
        dtype = np.dtype("float32")
    else:
        raise ExportError(f"label id {max_id} is above 2**24, which ImageJ's float32 pixels "
                          "cannot hold exactly; export to zarr or NIfTI, or pass imagej=False "
                          "(--no-imagej) for a plain uint32 TIFF")
    sp = _spacing(lab, spacing)
    unit = unit or lab.source().get("unit")
    meta: dict[str, Any] = {"axes": axes}
    kwargs: dict[str, Any] = {}
    if sp is not None:
        kwargs["resolution"] = (1.0 / sp[-1], 1.0 / sp[-2])
        if imagej:
            if "Z" in axes:
                meta["spacing"] = sp[axes.index("Z")]
            if "T" in axes:
                meta["finterval"] = sp[axes.index("T")]
        else:
            meta["spacing"] = list(sp)
    if unit and imagej:
        meta["unit"] = unit
    nbytes = math.prod(lab.shape) * dtype.itemsize
    planes = (p.astype(dtype) for _, p in lab.planes())
    with _target(path, overwrite, lab) as tmp:
        bigtiff = not imagej and nbytes > 2**32 - 2**25
        with tifffile.TiffWriter(tmp, imagej=imagej, bigtiff=bigtiff) as tif:
            tif.write(planes, shape=lab.shape, dtype=dtype, metadata=meta,
                      photometric="minisblack", **kwargs)
    return Path(path)


# ------------------------------------------------------------------------------ NIfTI
def _nifti_affine(lab: _Labels, affine: Any, sp: tuple[float, ...] | None) -> np.ndarray:
    if affine is None:
        src = lab.source()
        if src.get("affine") is not None and len(src.get("spacing") or lab.shape) == len(lab.shape):
            affine = src["affine"]
    if affine is not None:
        m = np.asarray(affine, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:3, :3])) < 1e-12:
            raise ExportError(f"affine must be an invertible, finite 4x4 matrix, got {m.tolist()}")
        return m
    zooms = list(sp[::-1][:3]) if sp is not None else []
    return np.diag(zooms + [1.0] * (3 - len(zooms)) + [1.0])


def export_nifti(
    labels: Any,
    path: str | os.PathLike,
    *,
    affine: Any = None,
    reference: str | os.PathLike | None = None,
    spacing: Sequence[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write labels as NIfTI-1 (``.nii`` or gzipped ``.nii.gz``), plane by plane.

    Parameters
    ----------
    labels : LabelsStore, path of one, or integer array, shape (..., H, W)
        In napari-segany's axis order, e.g. ``(z, y, x)`` as :func:`~napari_segany.io.read_image`
        returns a NIfTI volume. The file gets the axes reversed, ``(x, y, z)``: the source
        file's own voxel order, so the labels overlay the source image in any NIfTI viewer.
    path : str or path
        ``.nii`` or ``.nii.gz``.
    affine : (4, 4) array_like, optional
        Voxel ``(x, y, z)`` -> world matrix. Default: the `reference` file's, else the
        source image's recorded in the store's provenance (when the command line read a
        NIfTI image), else ``diag(dx, dy, dz, 1)`` from `spacing` (identity without it).
    reference : str or path, optional
        A NIfTI image whose grid the labels share: its header (affine, qform/sform codes,
        units) is copied; its shape must be the labels' reversed.
    spacing : sequence of float, optional
        Voxel size per labels axis (``(dz, dy, dx)``), used when no affine is known.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Data type: the smallest of uint8, uint16 and uint32 that holds the largest id; no
    intensity scaling. A C-order ``(z, y, x)`` array has the same byte order as the
    Fortran-order ``(x, y, z)`` array NIfTI stores, so planes are streamed as they are read.
    """
    import gzip

    import nibabel as nib

    lab = _Labels(labels)
    _check_target(path, overwrite, lab)
    file_shape = lab.shape[::-1]
    if len(file_shape) > 7:
        raise ExportError(f"NIfTI holds at most 7 axes; labels have {len(file_shape)}")
    dtype = _smallest_uint(lab.max_id())
    sp = _spacing(lab, spacing)
    if reference is not None:
        try:
            ref = nib.load(str(reference))
        except Exception as exc:
            raise ExportError(f"cannot read the reference NIfTI image {reference}: {exc}") from exc
        if tuple(ref.shape[: len(file_shape)]) != file_shape:
            raise ExportError(f"reference {reference} has shape {tuple(ref.shape)} (x, y, z, ...); "
                              f"the labels {lab.shape} need {file_shape}")
        hdr = ref.header.copy()
        del hdr.extensions[:]
        hdr["vox_offset"] = 0
        m = np.asarray(ref.affine) if affine is None else _nifti_affine(lab, affine, sp)
        if affine is not None:
            hdr.set_sform(m)
            hdr.set_qform(m)
    else:
        hdr = nib.Nifti1Header()
        m = _nifti_affine(lab, affine, sp)
        hdr.set_data_shape(file_shape)
        hdr.set_sform(m, code="scanner")
        hdr.set_qform(m, code="scanner")
        src_unit = lab.source().get("unit") or ("mm" if sp is not None else None)
        unit = {"mm": "mm", "um": "micron", "µm": "micron", "micron": "micron",
                "m": "meter"}.get(src_unit, "unknown")  # NIfTI's convention is mm
        hdr.set_xyzt_units(unit, "sec")
    hdr.set_data_shape(file_shape)
    hdr.set_data_dtype(dtype)
    hdr.set_slope_inter(1.0, 0.0)
    hdr["cal_min"], hdr["cal_max"] = 0, 0
    zooms = list(np.sqrt((m[:3, :3] ** 2).sum(axis=0)))[: len(file_shape)]
    extra = list(sp[::-1][3:]) if sp is not None else []
    zooms += extra + [1.0] * (len(file_shape) - len(zooms) - len(extra))
    hdr.set_zooms(zooms)
    out_dtype = dtype.newbyteorder(hdr.endianness)
    gz = str(path).lower().endswith(".gz")
    with _target(path, overwrite, lab) as tmp:
        with (gzip.open(tmp, "wb", compresslevel=6) if gz else open(tmp, "wb")) as f:
            hdr.write_to(f)
            pad = int(hdr["vox_offset"]) - f.tell()
            f.write(b"\x00" * max(0, pad))
            for _, plane in lab.planes():
                f.write(np.ascontiguousarray(plane.astype(out_dtype)).tobytes())
    return Path(path)


# ------------------------------------------------------------------------------ zarr
def export_zarr(labels: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Copy labels into a new zarr v3 labels store, plane by plane.

    The copy is a :class:`~napari_segany.labels.LabelsStore` (uint32, one chunk per plane,
    empty planes not stored) with the source's provenance attributes, so it reopens with
    ``LabelsStore.open``.

    Parameters
    ----------
    labels : LabelsStore, path of one, or integer array, shape (..., H, W)
    path : str or path
        The ``.zarr`` folder to create.
    overwrite : bool
        Replace an existing store.

    Returns
    -------
    Path
        ``path``.
    """
    import zarr

    from ._version import __version__
    from .labels import ATTRS_KEY, FORMAT_VERSION

    lab = _Labels(labels)
    limit = np.iinfo(np.uint32).max
    meta = lab.provenance or {"format": FORMAT_VERSION, "version": __version__,
                              "objects": {}, "planes": []}
    written: list[list[int]] = []
    with _target(path, overwrite, lab) as tmp:
        arr = zarr.create_array(store=str(tmp), shape=lab.shape,
                                chunks=(1,) * len(lab.lead) + lab.shape[-2:], dtype="uint32",
                                fill_value=0, zarr_format=3)
        for key, plane in lab.planes():
            if plane.size and int(plane.max()) > limit:
                raise ExportError(f"plane {key} holds id {int(plane.max())}, above uint32")
            if plane.any():
                arr[key if key else ...] = plane.astype(np.uint32)
                written.append(list(key))
        if not lab.provenance:
            meta["planes"] = written
            meta["objects"] = {}
        arr.attrs[ATTRS_KEY] = meta
    return Path(path)


# ------------------------------------------------------------------------------ dispatch
def format_from_path(path: str | os.PathLike) -> str:
    """The export format chosen by a file name's ending (see :data:`FORMATS`)."""
    name = Path(path).name.lower()
    for fmt, endings in FORMATS.items():
        if name.endswith(endings):
            return fmt
    known = ", ".join(e for ends in FORMATS.values() for e in ends)
    raise ExportError(f"cannot tell the export format from {Path(path).name!r}; use a name "
                      f"ending in {known}, or give the format")


def resolve_format(fmt: str | None, path: str | os.PathLike) -> str:
    """The canonical format name for ``fmt`` (an alias allowed), or from ``path`` if None."""
    if fmt is None:
        return format_from_path(path)
    key = _ALIASES.get(str(fmt).lower().lstrip("."), str(fmt).lower().lstrip("."))
    if key not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return key


def export_labels(
    store_or_array: Any,
    path: str | os.PathLike,
    *,
    format: str | None = None,  # noqa: A002 - the natural name for users
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Export labels in the format given, or chosen by the file name's ending.

    Parameters
    ----------
    store_or_array : LabelsStore, path of one, or integer array, shape (..., H, W)
    path : str or path
        Output file (or folder for zarr).
    format : {"tif", "nii", "zarr", "rle", "coco"}, optional
        Default from the ending of `path`: ``.tif``/``.tiff``, ``.nii``/``.nii.gz``,
        ``.zarr``, ``.csv`` (RLE), ``.json`` (COCO). Aliases: ``tiff``, ``nifti``, ``csv``,
        ``json``.
    overwrite : bool
        Replace an existing output.
    **options
        Passed to the writer: :func:`export_tiff` (``axes``, ``spacing``, ``unit``,
        ``imagej``), :func:`export_nifti` (``affine``, ``reference``, ``spacing``),
        :func:`export_coco` (``class_names``, ``image_names``).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ExportError
        Unknown format, an option the format does not take, existing output without
        `overwrite`, or labels the format cannot hold.
    """
    fmt = resolve_format(format, path)
    writer = {"tif": export_tiff, "nii": export_nifti, "zarr": export_zarr,
              "rle": export_rle, "coco": export_coco}[fmt]
    import inspect

    accepted = set(inspect.signature(writer).parameters) - {"labels", "labels_or_store", "path"}
    bad = sorted(set(options) - accepted)
    if bad:
        raise ExportError(f"the {fmt} export takes no option {', '.join(bad)}; it takes "
                          f"{', '.join(sorted(accepted - {'overwrite'})) or 'none'}")
    return writer(store_or_array, path, overwrite=overwrite, **options)
