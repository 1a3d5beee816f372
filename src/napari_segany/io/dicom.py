"""DICOM series as lazy ``(z, y, x)`` arrays: slices are decoded when they are indexed.

:func:`read_dicom` opens a folder (searched recursively), a ``DICOMDIR`` or one file, picks
one image series (by UID, SeriesNumber or description; the only one when there is one),
orders its slices by position along the slice normal (never by file name or
InstanceNumber), checks that they form one regular grid and returns a
:class:`DicomVolume`: ``shape``, ``dtype`` and numpy-style indexing like every other
reader here, RescaleSlope/RescaleIntercept applied (Hounsfield units for CT), the voxel
spacing from the positions and the orientation kept in :attr:`DicomVolume.affine`.
Enhanced (multi-frame) objects are read frame by frame from their functional groups.

Only the headers are read when a series is opened; a plane's pixels are decoded when the
plane is first indexed (a few recent planes are kept). pydicom is imported inside the
functions that need it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .dicom_geometry import Geometry, geometry
from .dicom_series import DicomError, SeriesInfo, SliceRef, is_dicom_file, scan, select

__all__ = ["DicomError", "DicomVolume", "SeriesInfo", "read_dicom", "read_all_series",
           "list_series", "is_dicom", "LPS_TO_RAS"]

#: World LPS (DICOM) -> RAS (NIfTI): x and y change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class DicomVolume:
    """One DICOM image series as a lazy array, planes decoded on demand.

    Attributes
    ----------
    shape : tuple of int
        ``(z, y, x)``: slices in order along the slice normal, image rows, columns
        (``(z, y, x, 3)`` for RGB images; ``(y, x)`` for a single image without position).
    dtype : numpy.dtype
        After RescaleSlope/RescaleIntercept: the stored integer type when there is no
        rescale, int16 or int32 when slope and intercept are integers, else float32.
    affine : (4, 4) ndarray or None
        Voxel ``(x, y, z)`` (column, row, slice index) -> world RAS millimetres, the
        convention of NIfTI (so labels export onto the same grid as NIfTI).
    affine_lps : (4, 4) ndarray or None
        The same in DICOM's patient LPS coordinates.
    spacing : tuple of float
        Voxel size in mm along the array's axes: ``(dz, dy, dx)``.
    series : SeriesInfo
        UID, description, number, modality, study and frame-of-reference UIDs.
    slices : list of SliceRef
        File, frame and SOPInstanceUID of every plane, in array order.
    window : (center, width) or None
        The file's first WindowCenter/WindowWidth (in rescaled units).
    """

    def __init__(self, info: SeriesInfo, geom: Geometry, *, cache_planes: int = 4) -> None:
        self.series = info
        self.slices = geom.slices
        self.affine_lps = geom.affine_lps
        self.affine = None if geom.affine_lps is None else LPS_TO_RAS @ geom.affine_lps
        self.spacing = geom.spacing
        self.window = info.window
        first = self.slices[0]
        planes = () if len(self.spacing) == 2 else (len(self.slices),)
        self.shape = planes + first.shape
        self.ndim = len(self.shape)
        self.dtype = _output_dtype(self.slices)
        self.rgb = len(first.shape) == 3
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(0, int(cache_planes))
        self._lock = threading.Lock()

    # -- array protocol -------------------------------------------------------------------
    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<DicomVolume {self.series.label()} shape={self.shape} dtype={self.dtype}>"

    @property
    def sop_instance_uids(self) -> list[str]:
        """The SOPInstanceUID of every plane (repeated for frames of one file)."""
        return [s.sop_uid for s in self.slices]

    def plane(self, index: int) -> np.ndarray:
        """Slice ``index`` (0-based along z), rescaled: ``(y, x)`` of :attr:`dtype`."""
        index = range(len(self.slices))[int(index)]
        with self._lock:
            hit = self._cache.get(index)
            if hit is not None:
                self._cache.move_to_end(index)
                return hit
        out = self._decode(self.slices[index])
        out.flags.writeable = False
        if self._cache_size:
            with self._lock:
                self._cache[index] = out
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out

    def _decode(self, s: SliceRef) -> np.ndarray:
        from pydicom.pixels import pixel_array

        where = f"{s.path}" + (f" (frame {s.frame + 1})" if s.frame is not None else "")
        try:
            raw = pixel_array(os.fspath(s.path), index=s.frame)
        except Exception as exc:  # decoders raise many types; name the file
            raise DicomError(f"cannot decode the pixels of {where} in {self.series.label()}: "
                             f"{exc}") from exc
        if raw.shape != s.shape:
            raise DicomError(f"{where} decodes to shape {raw.shape}, its header says "
                             f"{s.shape}; the file is damaged")
        if self.dtype.kind == "f":
            return (raw.astype(np.float64) * s.slope + s.intercept).astype(self.dtype)
        if s.slope == 1.0 and s.intercept == 0.0:
            return raw.astype(self.dtype, copy=False)
        return (raw.astype(np.int64) * int(s.slope) + int(s.intercept)).astype(self.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        if len(self.spacing) == 2:  # one image: a plain 2D array
            return np.array(self.plane(0)[key])
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:i] + fill + key[i + 1:]
        if not key:
            key = (slice(None),)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return np.array(self.plane(int(first))[rest])  # a copy: cached planes are shared
        index = np.arange(len(self.slices))[first]
        planes = [self.plane(int(i)) for i in np.atleast_1d(index)]
        out = (np.stack(planes) if planes
               else np.empty((0,) + self.shape[1:], dtype=self.dtype))
        return out[(slice(None),) + rest]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def _output_dtype(slices: list[SliceRef]) -> np.dtype:
    alloc, stored, signed = slices[0].pixel
    if len(slices[0].shape) == 3:
        return np.dtype(np.uint8 if alloc <= 8 else np.uint16)
    if alloc == 1:
        return np.dtype(np.uint8)
    if alloc not in (8, 16, 32):
        return np.dtype(np.float32)
    base = np.dtype(f"{'i' if signed else 'u'}{alloc // 8}")
    pairs = {(s.slope, s.intercept) for s in slices}
    if pairs == {(1.0, 0.0)}:
        return base
    if not all(float(a).is_integer() and float(b).is_integer() for a, b in pairs):
        return np.dtype(np.float32)
    bits = stored or alloc
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    ends = [v * a + b for a, b in pairs for v in (lo, hi)]
    for name in ("int16", "int32"):
        info = np.iinfo(name)
        if info.min <= min(ends) and max(ends) <= info.max:
            return np.dtype(name)
    return np.dtype(np.float32)


# ------------------------------------------------------------------------------ opening
def is_dicom(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like DICOM: a DICOM file, a ``DICOMDIR``, or a folder holding
    a ``DICOMDIR`` or DICOM files (a few files are sniffed; the folder is not read whole)."""
    p = Path(path)
    if p.is_file():
        return p.name.upper() == "DICOMDIR" or is_dicom_file(p)
    if not p.is_dir() or (p / "zarr.json").exists() or (p / ".zarray").exists():
        return False
    if (p / "DICOMDIR").is_file():
        return True
    sniffed = 0
    for root, dirs, names in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".zarr"))
        for name in sorted(names):
            if name.startswith("."):
                continue
            if is_dicom_file(Path(root) / name):
                return True
            sniffed += 1
            if sniffed >= 8:
                return False
    return False


def _scan_for(path: Path) -> tuple[list[SeriesInfo], list[tuple[Path, str]], str | None]:
    """Scan ``path``; for a single-frame file, its folder restricted to the file's series."""
    if path.is_file() and path.name.upper() != "DICOMDIR":
        import pydicom

        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception as exc:
            raise DicomError(f"cannot read the DICOM file {path}: {exc}") from exc
        if int(ds.get("NumberOfFrames", 1) or 1) == 1 and "SeriesInstanceUID" in ds:
            series, others = scan(path.parent)
            return series, others, str(ds.SeriesInstanceUID)
    series, others = scan(path)
    return series, others, None


def list_series(path: str | os.PathLike) -> list[SeriesInfo]:
    """The image series under ``path`` (a folder, a DICOMDIR or a file), headers only."""
    return scan(Path(path))[0]


def read_dicom(path: str | os.PathLike, *, series: str | None = None) -> DicomVolume:
    """Open one DICOM image series as a lazy :class:`DicomVolume`.

    Parameters
    ----------
    path : str or path
        A folder with the series' files (searched recursively, any file names), a folder
        with a ``DICOMDIR`` or the ``DICOMDIR`` itself, or one file (a multi-frame object,
        or any slice of a series in its folder).
    series : str, optional
        The SeriesInstanceUID, SeriesNumber or SeriesDescription (exact, else a unique
        part of it) of the series to open; needed when ``path`` holds several.

    Returns
    -------
    DicomVolume
        ``(z, y, x)``, rescaled, with ``affine`` (RAS) and ``spacing`` (mm).

    Raises
    ------
    FileNotFoundError
        Nothing at ``path``.
    DicomError
        Several series and no choice; no image series (only non-image objects such as
        RTSTRUCT or SEG); mixed sizes or orientations; duplicate or missing slices;
        irregular spacing; a compressed transfer syntax no installed decoder reads. The
        message names the series and the file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"DICOM input not found: {p}")
    found, others, uid = _scan_for(p)
    info = select(found, uid if series is None else series, where=p, others=others)
    return DicomVolume(info, geometry(info))


def read_all_series(path: str | os.PathLike) -> tuple[list[DicomVolume], list[DicomError]]:
    """Every image series under ``path`` that forms a volume, and the problems of the rest.

    Raises
    ------
    DicomError
        When ``path`` holds no image series at all.
    """
    p = Path(path)
    found, others, uid = _scan_for(p)
    if uid is not None:
        found = [s for s in found if s.uid == uid]
    if not found:
        select(found, None, where=p, others=others)  # raises, naming what is there
    volumes, errors = [], []
    for info in found:
        try:
            volumes.append(DicomVolume(info, geometry(info)))
        except DicomError as exc:
            errors.append(exc)
    return volumes, errors
