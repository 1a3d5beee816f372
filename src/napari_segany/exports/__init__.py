"""Export labels to other tools: TIFF, NIfTI, zarr, OME-Zarr (NGFF labels), run-length
CSV, COCO JSON, DICOM-SEG, DICOM RTSTRUCT, and overlay movies (MP4).

Every writer reads its input one 2D plane at a time, so a labels store far larger than
memory exports in bounded memory (COCO and RLE keep only the encoded strings). Inputs are
a :class:`~napari_segany.storage.LabelsStore`, the path of one, or any integer array of
shape ``(..., H, W)`` (numpy, zarr, dask): the leading axes index planes, ``y`` and ``x``
are the last two. Id 0 is background.

Outputs are written to a temporary name next to the target and renamed into place when
complete, so an interrupted export never leaves a half-written file under the target
name. An existing target is refused unless ``overwrite=True``.

See ``docs/formats.md`` for every format's conventions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ExportError
from .dicom import code_for, export_dicom_seg
from .movie import export_movie
from .ome_zarr import export_ome_zarr
from .rtstruct import export_rtstruct
from .tables import export_coco, export_rle, read_rle_csv, rle_decode, rle_encode
from .volumes import export_nifti, export_tiff, export_zarr

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
    "export_ome_zarr",
    "export_dicom_seg",
    "export_rtstruct",
    "export_movie",
    "code_for",
    "export_labels",
    "format_from_path",
    "resolve_format",
]

#: Export formats and the file name endings that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "tif": (".tif", ".tiff"),
    "nii": (".nii", ".nii.gz"),
    "ome-zarr": (".ome.zarr",),  # before "zarr": the longer ending wins
    "zarr": (".zarr",),
    "rle": (".csv",),
    "coco": (".json",),
    "rtstruct": (".rtstruct.dcm", ".rt.dcm"),
    "dicom-seg": (".seg.dcm", ".dcm"),
    "mp4": (".mp4", ".m4v", ".mov", ".mkv"),
}
_ALIASES = {"tiff": "tif", "nifti": "nii", "nii.gz": "nii", "csv": "rle", "json": "coco",
            "seg": "dicom-seg", "dicomseg": "dicom-seg", "dicom_seg": "dicom-seg",
            "dcm": "dicom-seg", "rtss": "rtstruct", "rt-struct": "rtstruct",
            "rt_struct": "rtstruct", "ome.zarr": "ome-zarr", "omezarr": "ome-zarr",
            "ome_zarr": "ome-zarr", "ngff": "ome-zarr", "movie": "mp4", "video": "mp4",
            "h264": "mp4"}


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
    format : {"tif", "nii", "zarr", "ome-zarr", "rle", "coco", "dicom-seg", "rtstruct", "mp4"}
        Optional; default from the ending of `path`: ``.tif``/``.tiff``, ``.nii``/``.nii.gz``,
        ``.zarr``, ``.csv`` (RLE), ``.json`` (COCO), ``.rtstruct.dcm`` (RTSTRUCT), ``.dcm``
        (DICOM-SEG), ``.mp4`` (overlay movie), ``.ome.zarr`` (``ome-zarr``, NGFF labels).
        Aliases: ``tiff``, ``nifti``, ``csv``, ``json``, ``seg``, ``rtss``, ``movie``,
        ``ngff``.
    overwrite : bool
        Replace an existing output.
    **options
        Passed to the writer: :func:`export_tiff` (``axes``, ``spacing``, ``unit``,
        ``imagej``), :func:`export_nifti` (``affine``, ``reference``, ``spacing``),
        :func:`export_coco` (``class_names``, ``image_names``), :func:`export_dicom_seg`
        and :func:`export_rtstruct` (``reference``, ``series``, ``classes``,
        ``class_names``, ``segments``, ``creator``, ...), :func:`export_movie` (``image``,
        ``fps``, ``timestamps``, ``alpha``, ``contours``, ``ids``, ``codec``, ...),
        :func:`export_ome_zarr` (``image``, ``name``, ``axes``, ``spacing``, ``translate``,
        ``unit``, ``levels``, ``class_names``, ``classes``).

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
              "rle": export_rle, "coco": export_coco, "dicom-seg": export_dicom_seg,
              "rtstruct": export_rtstruct, "mp4": export_movie,
              "ome-zarr": export_ome_zarr}[fmt]
    import inspect

    accepted = set(inspect.signature(writer).parameters) - {"labels", "labels_or_store", "path"}
    bad = sorted(set(options) - accepted)
    if bad:
        raise ExportError(f"the {fmt} export takes no option {', '.join(bad)}; it takes "
                          f"{', '.join(sorted(accepted - {'overwrite'})) or 'none'}")
    return writer(store_or_array, path, overwrite=overwrite, **options)
