"""Volume label exports: ImageJ TIFF, NIfTI-1 and zarr (see :mod:`napari_segany.exports`)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..storage.labels import LabelsStore
from .common import ExportError, _check_target, _Labels, _smallest_uint, _target

_IMAGEJ_AXES = "TZCYX"
_FLOAT32_EXACT = 2**24  # every integer up to this is exact in float32


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
    # the tag napari-segany's napari reader opens as a Labels layer (ImageJ ignores it)
    meta: dict[str, Any] = {"axes": axes, "napari_segany_labels": True}
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
        if src.get("format") == "nifti" and src.get("affine") is None and sp is None:
            raise ExportError("the source NIfTI's affine was not usable (NaN or infinite values "
                              "in its header), so the labels' position in space is unknown; "
                              "pass reference=IMAGE.nii (--reference) or affine=")
        if src.get("affine") is not None and len(src.get("spacing") or lab.shape) == len(lab.shape):
            affine = src["affine"]
    if affine is not None:
        m = np.asarray(affine, dtype=np.float64)
        if m.shape != (4, 4) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:3, :3])) < 1e-12:
            raise ExportError(f"affine must be an invertible, finite 4x4 matrix, got {m.tolist()}; "
                              "pass reference=IMAGE.nii (--reference) to take the header and "
                              "affine of the source image instead")
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
    """Copy labels into a new napari-segany labels store, plane by plane.

    The copy is a :class:`~napari_segany.storage.LabelsStore` (uint32, chunked like the
    source store, empty planes not stored) with the source's object registry and the
    latest provenance fields, so it reopens with ``LabelsStore.open``. Its history starts
    empty: the copy is one ``import`` operation.

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
    lab = _Labels(labels)
    limit = np.iinfo(np.uint32).max
    prov = dict(lab.provenance or {})
    objects = {int(k): dict(v) for k, v in prov.pop("objects", {}).items()}
    written = {tuple(p) for p in prov.get("planes", [])}
    fields = {k: v for k, v in prov.items()
              if k not in ("format", "version", "chunks", "planes", "runs", "log")}
    if prov.get("runs"):  # the source's own history of runs, kept as one field
        fields["copied_runs"] = prov["runs"]
    tile = lab.store.chunks[-1] if lab.store is not None else None
    with _target(path, overwrite, lab) as tmp:
        out = LabelsStore.create(tmp, lab.shape, provenance=fields or None,
                                 chunk_size=max(tile, 16) if tile else None)
        try:
            with out.operation("import", f"copy of {lab.path or 'an array'}"):
                for key, plane in lab.planes():
                    if plane.size and int(plane.max()) > limit:
                        raise ExportError(f"plane {key} holds id {int(plane.max())}, above "
                                          "uint32")
                    if plane.any() or key in written:
                        out.write_plane(key, plane.astype(np.uint32))
                if objects:
                    out.set_objects(objects)
        finally:
            out.close()
    return Path(path)
