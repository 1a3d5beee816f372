"""The npe2 reader: labels stores, TIFF and NIfTI files as napari layer data (no Qt).

* a labels store written by napari-segany (a zarr directory whose array attributes hold
  ``"napari_segany"``) -> a Labels layer backed by the zarr array itself: planes are read
  on demand, never the whole volume; edits made in napari go straight to the store (one
  plane chunk at a time);
* TIFF (lazy above 256 MiB, see :func:`napari_segany.io.read_image`) -> an Image layer,
  with the voxel size from ImageJ metadata or from this plugin's TIFF writer; a TIFF of
  labels this plugin wrote (tagged ``napari_segany_labels`` by its napari writer and by
  :func:`napari_segany.exports.export_tiff`) -> a Labels layer, with its scale and offset;
* NIfTI (``.nii``, ``.nii.gz``) -> an Image layer ``(z, y, x)`` (the file's axes reversed)
  with ``scale`` = voxel spacing; the file's affine is kept in metadata;
* DICOM (a folder of a series or a study, a folder with a DICOMDIR, a ``.dcm`` file) -> one
  lazy Image layer ``(z, y, x)`` per image series (slices decoded as they are shown), with
  ``scale`` = voxel spacing in mm, contrast limits from the file's WindowCenter/Width, and
  the affine in metadata;
* video (``.mp4``, ``.m4v``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``) -> a lazy RGB Image
  layer ``(t, y, x, 3)`` decoded with PyAV frame by frame as it is shown (keyframe index,
  LRU of decoded frames), with the frame rate and timestamps in metadata.
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
from ..io.video import VIDEO_SUFFIXES, VideoFile
from ..storage.labels import ATTRS_KEY, LabelsStore, is_labels_store

__all__ = ["get_reader", "read_labels_store", "read_tiff", "read_nifti", "read_dicom_folder",
           "read_video", "fits", "LABELS_TAG"]

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
    if name.endswith(VIDEO_SUFFIXES) and p.is_file():
        return read_video
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


#: The metadata key this plugin's TIFF writers set on labels (shaped or ImageJ metadata).
LABELS_TAG = "napari_segany_labels"


def _tiff_meta(p: Path, ndim: int, rgb: bool) -> tuple[dict[str, Any], bool]:
    """``({"scale": ..., "translate": ...} where known, tagged as labels)`` of a TIFF.

    The voxel size comes from this plugin's writers (shaped metadata ``scale``) or from
    ImageJ metadata (X/Y resolution tags, ``spacing``); the offset only from this
    plugin's napari writer (``translate``).
    """
    import tifffile

    geometry: dict[str, Any] = {}
    with tifffile.TiffFile(p) as tif:
        shaped = tif.shaped_metadata[0] if tif.shaped_metadata else None
        ij = tif.imagej_metadata
        labels = bool((shaped or {}).get(LABELS_TAG) or (ij or {}).get(LABELS_TAG))
        if shaped:  # the napari writer's scale/translate, export_tiff's per-axis spacing
            for key, names in (("scale", ("scale", "spacing")), ("translate", ("translate",))):
                vals = next((v for v in (fits(shaped.get(n), ndim - rgb) for n in names)
                             if v is not None), None)
                if vals is not None:
                    geometry[key] = vals
        if "scale" in geometry or not ij:
            return geometry, labels
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
        return geometry, labels
    scale = [sizes.get(a, 1.0) for a in axes if a != "S"]
    if any(s != 1.0 for s in scale) and all(s > 0 for s in scale):
        geometry["scale"] = scale
    return geometry, labels


def read_tiff(path: str | os.PathLike | list) -> LayerData:
    """A TIFF file as an Image layer (lazy for large files), with its voxel size.

    A TIFF of labels written by this plugin (its napari writer, or
    :func:`~napari_segany.exports.export_tiff`) comes back as a Labels layer instead, with
    the scale and offset it was saved with.
    """
    p = _one(path)
    img = read_image(p)
    try:
        geometry, labels = _tiff_meta(p, len(img.data.shape), img.rgb)
    except Exception:  # metadata is a bonus: never fail to open the pixels because of it
        geometry, labels = {}, False
    labels = labels and not img.rgb and np.dtype(img.data.dtype).kind in "biu"
    kwargs: dict[str, Any] = {"name": file_stem(p), "metadata": {"path": str(p)}}
    if not labels:
        kwargs["rgb"] = bool(img.rgb)
    kwargs.update(geometry)
    return [(img.data, kwargs, "labels" if labels else "image")]


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


def read_video(path: str | os.PathLike | list) -> LayerData:
    """A video file as a lazy RGB Image layer ``(t, y, x, 3)`` (frames decoded when shown).

    ``metadata`` holds ``fps``, ``timestamps`` (seconds per frame), ``codec`` and
    ``pixel_format``; 10-bit and deeper video is uint16 RGB.
    """
    p = _one(path)
    video = VideoFile(p)
    meta = {"path": str(p), "fps": video.fps, "timestamps": video.timestamps.tolist(),
            "variable_frame_rate": video.variable_frame_rate, "codec": video.codec,
            "pixel_format": video.pixel_format}
    kwargs: dict[str, Any] = {"name": file_stem(p), "rgb": True, "metadata": meta}
    if video.dtype != np.uint8:
        kwargs["contrast_limits"] = [0, 65535]
    return [(video, kwargs, "image")]
