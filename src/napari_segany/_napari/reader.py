"""The npe2 reader: labels stores, TIFF and NIfTI files as napari layer data (no Qt).

* a labels store written by napari-segany (a zarr directory whose array attributes hold
  ``"napari_segany"``) -> a Labels layer backed by the zarr array itself: planes are read
  on demand, never the whole volume; edits made in napari go straight to the store (one
  plane chunk at a time);
* TIFF (lazy above 256 MiB, see :func:`napari_segany.io.read_image`) -> an Image layer,
  with the voxel size from ImageJ metadata or from this plugin's TIFF writer;
* NIfTI (``.nii``, ``.nii.gz``) -> an Image layer ``(z, y, x)`` (the file's axes reversed)
  with ``scale`` = voxel spacing; the file's affine is kept in metadata;
* DICOM (a folder of a series or a study, a folder with a DICOMDIR, a ``.dcm`` file) -> one
  lazy Image layer ``(z, y, x)`` per image series (slices decoded as they are shown), with
  ``scale`` = voxel spacing in mm, contrast limits from the file's WindowCenter/Width, and
  the affine in metadata.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LabelsStoreError
from ..io import file_stem, is_dicom, read_image
from ..io.dicom import read_all_series
from ..storage.labels import ATTRS_KEY, LabelsStore, is_labels_store

__all__ = ["get_reader", "read_labels_store", "read_tiff", "read_nifti", "read_dicom_folder",
           "fits"]

LayerData = list[tuple[Any, dict[str, Any], str]]
_TIFF = (".tif", ".tiff")
_NIFTI = (".nii", ".nii.gz")
_DICOM = (".dcm", ".dicom", ".ima")


def get_reader(path: str | list[str]) -> Callable[[Any], LayerData] | None:
    """npe2 reader: a reader function for ``path``, or None when this plugin cannot read it."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    name = p.name.lower()
    if name.endswith(_NIFTI) and p.is_file():
        return read_nifti
    if name.endswith(_TIFF) and p.is_file():
        return read_tiff
    if p.is_dir() and is_labels_store(p):
        return read_labels_store
    if (p.is_dir() or name.endswith(_DICOM) or name == "dicomdir") and is_dicom(p):
        return read_dicom_folder
    return None


def _one(path: Any) -> Path:
    return Path(path[0] if isinstance(path, (list, tuple)) else path)


def fits(values: Any, ndim: int) -> list[float] | None:
    if not isinstance(values, (list, tuple)) or len(values) != ndim:
        return None
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(np.isfinite(out)) else None


def read_labels_store(path: str | os.PathLike | list) -> LayerData:
    """A napari-segany labels store as a lazy Labels layer (read from the zarr array).

    The layer's ``scale``/``translate`` come from the store's provenance (the image layer
    the widget segmented), its ``metadata`` holds the provenance and the store path. Its
    data is the store's :class:`~napari_segany.storage.StoreArray`: napari's brush, fill
    and eraser write through the store (each write one operation of its history, under
    its lock); a store that cannot be written is shown read-only (its zarr array).
    """
    p = _one(path)
    try:
        store = LabelsStore.open(p, mode="r+")
    except (LabelsStoreError, OSError, PermissionError):
        store = LabelsStore.open(p, mode="r")
    prov = store.provenance
    kwargs: dict[str, Any] = {"name": file_stem(p),
                              "metadata": {ATTRS_KEY: prov, "path": str(p)}}
    layer = prov.get("layer") or {}
    for key in ("scale", "translate"):
        vals = fits(layer.get(key), len(store.shape))
        if vals is not None:
            kwargs[key] = vals
    data = store.as_array() if store.mode == "r+" else store.array
    return [(data, kwargs, "labels")]


def _tiff_scale(p: Path, ndim: int, rgb: bool) -> list[float] | None:
    """Voxel size along the data axes from ImageJ metadata or this plugin's writer."""
    import tifffile

    with tifffile.TiffFile(p) as tif:
        shaped = tif.shaped_metadata[0] if tif.shaped_metadata else None
        if shaped and fits(shaped.get("scale"), ndim - rgb):
            return fits(shaped.get("scale"), ndim - rgb)
        ij = tif.imagej_metadata
        if not ij:
            return None
        axes = tif.series[0].axes  # e.g. "TZYX", "ZCYX", "YXS"
        page = tif.pages.first
        sizes: dict[str, float] = {}
        for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
            t = page.tags.get(tag)
            if t is not None:
                num, den = t.value
                if num and den:
                    sizes[axis] = den / num
        if ij.get("spacing"):
            sizes["Z"] = float(ij["spacing"])
    if len(axes) != ndim:
        return None
    scale = [sizes.get(a, 1.0) for a in axes if a != "S"]
    return scale if any(s != 1.0 for s in scale) and all(s > 0 for s in scale) else None


def read_tiff(path: str | os.PathLike | list) -> LayerData:
    """A TIFF file as an Image layer (lazy for large files), with its voxel size."""
    p = _one(path)
    img = read_image(p)
    kwargs: dict[str, Any] = {"name": file_stem(p), "rgb": bool(img.rgb),
                              "metadata": {"path": str(p)}}
    try:
        scale = _tiff_scale(p, len(img.data.shape), img.rgb)
    except Exception:  # metadata is a bonus: never fail to open the pixels because of it
        scale = None
    if scale is not None:
        kwargs["scale"] = scale
    return [(img.data, kwargs, "image")]


def read_nifti(path: str | os.PathLike | list) -> LayerData:
    """A NIfTI file as an Image layer ``(z, y, x)`` (``(t, z, y, x)`` for 4D) with scale."""
    p = _one(path)
    img = read_image(p)
    kwargs: dict[str, Any] = {"name": file_stem(p), "rgb": False,
                              "metadata": {"path": str(p), "nifti_affine": img.affine.tolist()
                                           if img.affine is not None else None}}
    if img.spacing is not None:
        scale = [float(s) if s and s > 0 else 1.0 for s in img.spacing]
        if len(scale) == img.data.ndim:
            kwargs["scale"] = scale
    return [(img.data, kwargs, "image")]


def read_dicom_folder(path: str | os.PathLike | list) -> LayerData:
    """Every image series of a DICOM folder (or DICOMDIR, or file) as a lazy Image layer.

    Series that do not form one volume (missing slices, mixed orientations, ...) are left
    out with a warning naming the series and the file; when none does, the error is raised.
    """
    p = _one(path)
    volumes, errors = read_all_series(p)
    if not volumes:
        raise errors[0]
    for exc in errors:
        warnings.warn(f"not opened: {exc}", stacklevel=2)
    layers: LayerData = []
    for vol in volumes:
        info = vol.series
        label = info.description or (f"series {info.number}" if info.number is not None
                                     else info.uid[-8:])
        kwargs: dict[str, Any] = {
            "name": file_stem(p) if len(volumes) == 1 else f"{file_stem(p)} {label}",
            "rgb": bool(vol.rgb), "scale": [float(s) for s in vol.spacing],
            "metadata": {"path": str(p), "dicom_series_uid": info.uid,
                         "series_description": info.description, "modality": info.modality,
                         "dicom_affine": None if vol.affine is None else vol.affine.tolist()}}
        if vol.window is not None and not vol.rgb:
            center, width = vol.window
            kwargs["contrast_limits"] = [center - width / 2.0, center + width / 2.0]
        if info.photometric == "MONOCHROME1":
            kwargs["colormap"] = "gray_r"  # MONOCHROME1: the lowest value is white
        layers.append((vol, kwargs, "image"))
    return layers
