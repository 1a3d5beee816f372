"""Reading images from files without loading more than needed.

TIFF files are opened as lazy zarr arrays through tifffile (planes are read on demand),
zarr stores are opened in place, ``.npy`` files are memory-mapped, and PNG/JPEG are read
whole (they are small).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .dicom import is_dicom, read_dicom
from .frames import FrameFolder
from .video import VIDEO_SUFFIXES, VideoFile

__all__ = ["ImageData", "read_image", "file_stem", "IN_MEMORY_MAX_BYTES"]

_PLAIN = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
_TIFF = {".tif", ".tiff"}
#: TIFF series up to this many bytes are read into memory; larger ones are opened lazily.
IN_MEMORY_MAX_BYTES = 256 * 2**20


@dataclass
class ImageData:
    """An image read from disk: the array (possibly lazy) and whether its last axis is RGB."""

    data: Any
    rgb: bool
    path: Path
    affine: np.ndarray | None = None  # NIfTI, DICOM: voxel (x, y, z) -> world RAS (mm)
    spacing: tuple[float, ...] | None = None  # voxel size along ``data``'s axes
    #: What the reader knows beyond the pixels, e.g. DICOM: ``format``, ``series_uid``,
    #: ``series_description``, ``modality``, ``window`` (center, width).
    metadata: dict[str, Any] = field(default_factory=dict)


def file_stem(path: str | os.PathLike) -> str:
    """A file's name without its image extension (``.nii.gz``, ``.ome.tif``, ``.zarr``, ...)."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".zarr"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def _is_rgb_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[-1] in (3, 4)


def read_image(path: str | os.PathLike, *, series: str | None = None) -> ImageData:
    """Open an image file or store.

    Parameters
    ----------
    path : str or path
        ``.tif``/``.tiff`` (2D to 4D, lazy), ``.png``/``.jpg`` (2D gray or RGB), a ``.zarr``
        array, ``.npy`` (memory-mapped), ``.nii``/``.nii.gz`` (NIfTI; returned as
        ``(z, y, x)``, i.e. the file's axes reversed, with the affine kept), a DICOM series
        (a folder, a DICOMDIR or a ``.dcm`` file: a lazy ``(z, y, x)``
        :class:`~napari_segany.io.DicomVolume`, rescaled, with the affine and spacing from
        its positions; see :func:`~napari_segany.io.read_dicom`), or a folder of
        PNG/JPEG/TIFF frames (a lazy ``(t, y, x[, c])`` stack read frame by frame, sorted
        by file name), or a video (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``: a
        lazy ``(t, y, x, 3)`` :class:`~napari_segany.io.VideoFile` decoded with PyAV,
        ``metadata`` holding ``fps``, ``timestamps`` and the codec).
    series : str, optional
        DICOM only: the SeriesInstanceUID, SeriesNumber or SeriesDescription to open when
        the folder holds several series.

    Raises
    ------
    FileNotFoundError
        If nothing exists at ``path``.
    ValueError
        If the format is not supported or the file cannot be read.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image not found: {p}")
    suffix = p.suffix.lower()
    if p.name.lower().endswith((".nii", ".nii.gz")):
        return _read_nifti(p)
    if p.is_file() and p.name.lower().endswith(VIDEO_SUFFIXES):
        return _read_video(p)
    if _maybe_dicom(p) and is_dicom(p):
        return _read_dicom(p, series)
    if series is not None:
        raise ValueError(f"series={series!r} applies to DICOM input only; {p} is not DICOM")
    if p.is_dir() and not (p / "zarr.json").exists() and not (p / ".zarray").exists():
        frames = FrameFolder(p)
        return ImageData(frames, _is_rgb_shape(frames.shape[1:]), p)
    try:
        if suffix in _TIFF:
            data = _read_tiff(p)
        elif suffix in _PLAIN:
            from PIL import Image

            with Image.open(p) as im:
                data = np.asarray(im.convert("RGB") if im.mode in ("P", "CMYK") else im)
        elif suffix == ".npy":
            data = np.load(p, mmap_mode="r")
        elif suffix == ".zarr" or (p / "zarr.json").exists() or (p / ".zarray").exists():
            import zarr

            data = zarr.open_array(str(p), mode="r")
        else:
            raise ValueError(
                f"unsupported image format {suffix or p.name!r}; use TIFF, PNG, JPEG, zarr or .npy"
            )
    except (OSError, ValueError, KeyError, IndexError) as exc:  # tifffile: IndexError when cut
        if isinstance(exc, ValueError) and "unsupported image format" in str(exc):
            raise
        raise ValueError(f"cannot read image {p}: {exc}") from exc
    if getattr(data, "ndim", 0) < 2 or 0 in data.shape:
        raise ValueError(f"{p} holds an array of shape {data.shape}; need a 2D or larger image")
    if data.dtype.kind not in "biuf":
        raise ValueError(f"{p} holds {data.dtype} data; need integer, float or bool pixels")
    rgb = suffix in _PLAIN and _is_rgb_shape(data.shape)
    if suffix in _TIFF and _is_rgb_shape(data.shape):
        rgb = True
    if suffix in _TIFF and data.ndim - (data.shape[-1] in (3, 4) and data.ndim == 5) > 4:
        raise ValueError(f"{p} holds a {data.ndim}D image {tuple(data.shape)}; TIFF images of "
                         "2 to 4 axes are supported (e.g. (t, z, y, x)): split it first")
    return ImageData(data, rgb, p)


def _maybe_dicom(p: Path) -> bool:
    if p.is_dir():
        return not ((p / "zarr.json").exists() or (p / ".zarray").exists())
    known = _PLAIN | _TIFF | {".npy", ".zarr"}
    return p.name.upper() == "DICOMDIR" or p.suffix.lower() not in known


def _read_video(p: Path) -> ImageData:
    video = VideoFile(p)
    meta = {"format": "video", "fps": video.fps, "timestamps": video.timestamps,
            "variable_frame_rate": video.variable_frame_rate, "codec": video.codec,
            "pixel_format": video.pixel_format}
    return ImageData(video, True, p, metadata=meta)


def _read_dicom(p: Path, series: str | None) -> ImageData:
    vol = read_dicom(p, series=series)
    info = vol.series
    meta = {"format": "dicom", "series_uid": info.uid, "series_description": info.description,
            "series_number": info.number, "modality": info.modality,
            "window": None if vol.window is None else list(vol.window)}
    return ImageData(vol, vol.rgb, p, affine=vol.affine, spacing=vol.spacing, metadata=meta)


def _read_tiff(p: Path) -> Any:
    import tifffile
    import zarr

    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        nbytes = int(np.prod(series.shape)) * series.dtype.itemsize
        if nbytes <= IN_MEMORY_MAX_BYTES:
            return series.asarray()
    store = tifffile.imread(p, aszarr=True)
    return zarr.open_array(store, mode="r")


def _read_nifti(p: Path) -> ImageData:
    try:
        import nibabel as nib

        img = nib.load(str(p))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises several error types for bad files
        raise ValueError(f"cannot read NIfTI image {p}: {exc}") from exc
    if data.ndim < 2 or 0 in data.shape or data.dtype.kind not in "biuf":
        raise ValueError(f"{p} holds a {data.dtype} array of shape {data.shape}; need a 2D+ image")
    zooms = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    affine = np.asarray(img.affine, dtype=np.float64)
    if not all(np.isfinite(zooms)) or min(zooms, default=1) <= 0:
        warnings.warn(f"{p}: the header's voxel sizes {zooms} are not positive numbers; they "
                      "are ignored", stacklevel=3)
        zooms = None
    if not np.all(np.isfinite(affine)):
        warnings.warn(f"{p}: the header's affine holds NaN or infinite values; it is ignored "
                      "(exports to NIfTI then need a reference image)", stacklevel=3)
        affine = None
    # NIfTI stores (x, y, z[, t]); planes of a volume are the last axes reversed: (z, y, x)
    return ImageData(np.ascontiguousarray(data.T), False, p, affine=affine,
                     spacing=None if zooms is None else zooms[::-1])
