"""Reading images from files without loading more than needed.

TIFF files are opened as lazy zarr arrays through tifffile (planes are read on demand),
zarr stores are opened in place, ``.npy`` files are memory-mapped, and PNG/JPEG are read
whole (they are small).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .frames import FrameFolder

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
    affine: np.ndarray | None = None  # NIfTI: voxel (x, y, z) -> world, of the file's axes
    spacing: tuple[float, ...] | None = None  # voxel size along ``data``'s axes


def file_stem(path: str | os.PathLike) -> str:
    """A file's name without its image extension (``.nii.gz``, ``.ome.tif``, ``.zarr``, ...)."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".zarr"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(path).stem


def _is_rgb_shape(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[-1] in (3, 4)


def read_image(path: str | os.PathLike) -> ImageData:
    """Open an image file or store.

    Parameters
    ----------
    path : str or path
        ``.tif``/``.tiff`` (2D to 4D, lazy), ``.png``/``.jpg`` (2D gray or RGB), a ``.zarr``
        array, ``.npy`` (memory-mapped), ``.nii``/``.nii.gz`` (NIfTI; returned as
        ``(z, y, x)``, i.e. the file's axes reversed, with the affine kept), or a folder of
        PNG/JPEG/TIFF frames (a lazy ``(t, y, x[, c])`` stack read frame by frame, sorted
        by file name).

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
    except (OSError, ValueError, KeyError) as exc:
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
    return ImageData(data, rgb, p)


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
    # NIfTI stores (x, y, z[, t]); planes of a volume are the last axes reversed: (z, y, x)
    return ImageData(np.ascontiguousarray(data.T), False, p, affine=np.asarray(img.affine),
                     spacing=zooms[::-1])
