"""Finding DICOM series from the headers alone (no pixels read).

:func:`scan` walks a folder (or reads a DICOMDIR), reads every file's header, sorts the
images into series (one :class:`SliceRef` per image: a file, or a frame of a multi-frame
object) and sets non-image objects aside; :func:`select` picks one series by UID,
SeriesNumber or description. :mod:`.dicom_geometry` then orders and checks its slices.

pydicom is imported inside the functions that need it (importing :mod:`napari_segany.io`
stays light).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DicomError

__all__ = ["DicomError", "SeriesInfo", "SliceRef", "scan", "select", "is_dicom_file",
           "NON_IMAGE_MODALITIES", "UNCOMPRESSED"]


#: Modalities of DICOM objects that hold no image to segment (they are set aside).
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "RTDOSE", "SR",
                                  "PR", "KO", "REG", "DOC", "PLAN", "FID", "RWV", "AU", "ECG"})
#: Transfer syntaxes whose pixels need no decoder.
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                 "1.2.840.10008.1.2.1.99"}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_DCM_SUFFIXES = {".dcm", ".dicom", ".ima"}


@dataclass(frozen=True)
class SliceRef:
    """One 2D image of a series: a single-frame file, or one frame of a multi-frame file."""

    path: Path
    frame: int | None  # 0-based frame of a multi-frame file; None for a single-frame file
    sop_uid: str
    sop_class: str
    position: tuple[float, float, float] | None  # ImagePositionPatient (LPS, mm)
    orientation: tuple[float, ...] | None  # ImageOrientationPatient: row, column cosines
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns), mm
    slope: float
    intercept: float
    shape: tuple[int, ...]  # (rows, columns[, samples])
    pixel: tuple[int, int, int]  # BitsAllocated, BitsStored, PixelRepresentation
    transfer_syntax: str
    thickness: float | None = None


@dataclass
class SeriesInfo:
    """One series found by :func:`scan`: what a user chooses by (UID or description)."""

    uid: str
    description: str
    number: int | None
    modality: str
    study_uid: str
    frame_of_reference_uid: str | None
    slices: list[SliceRef] = field(default_factory=list)
    window: tuple[float, float] | None = None  # first WindowCenter, WindowWidth
    photometric: str = "MONOCHROME2"

    @property
    def files(self) -> list[Path]:
        """The distinct files of the series, in the order found."""
        return list(dict.fromkeys(s.path for s in self.slices))

    def label(self) -> str:
        """``series 3 "AX T2" (MR, 24 images, UID 1.2.3...)`` for messages."""
        num = f" {self.number}" if self.number is not None else ""
        desc = f' "{self.description}"' if self.description else ""
        return (f"series{num}{desc} ({self.modality or 'no modality'}, {len(self.slices)} "
                f"images, UID {self.uid})")


# ------------------------------------------------------------------------------ files
def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _dicomdir_files(dicomdir: Path) -> list[Path]:
    import pydicom

    try:
        ds = pydicom.dcmread(dicomdir)
    except Exception as exc:
        raise DicomError(f"cannot read the DICOMDIR {dicomdir}: {exc}") from exc
    root = dicomdir.parent
    files: list[Path] = []
    for rec in ds.get("DirectoryRecordSequence", []):
        ref = rec.get("ReferencedFileID")
        if ref:
            parts = [ref] if isinstance(ref, str) else list(ref)
            files.append(root.joinpath(*parts))
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DicomError(f"the DICOMDIR {dicomdir} names {len(missing)} files that do not "
                         f"exist (first: {missing[0]}); open the folder itself instead")
    return files


def _candidate_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.name.upper() == "DICOMDIR":
            return _dicomdir_files(path)
        return [path]
    if (path / "DICOMDIR").is_file():
        return _dicomdir_files(path / "DICOMDIR")
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
    return files


# ------------------------------------------------------------------------------ headers
def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def _first(value: Any) -> float | None:
    """The first number of a (possibly multi-valued) DICOM value, or None."""
    if value is None or isinstance(value, bytes):
        return None
    if not isinstance(value, str) and hasattr(value, "__len__"):
        value = value[0] if len(value) else None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _item(ds: Any, seq: str) -> Any:
    items = ds.get(seq) if ds is not None else None
    return items[0] if items else None


def _frame_refs(ds: Any, path: Path, base: dict[str, Any]) -> list[SliceRef]:
    """The frames of an enhanced (multi-frame) image, from its functional groups."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    refs = []
    for i in range(n):
        frame = per[i] if i < len(per) else None

        def group(name: str, frame: Any = frame) -> Any:
            return _item(frame, name) or _item(shared, name)

        pos = group("PlanePositionSequence")
        ori = group("PlaneOrientationSequence")
        meas = group("PixelMeasuresSequence")
        trans = group("PixelValueTransformationSequence")
        refs.append(SliceRef(
            path=path, frame=i,
            position=_floats(pos.get("ImagePositionPatient"), 3) if pos else base["position"],
            orientation=(_floats(ori.get("ImageOrientationPatient"), 6) if ori
                         else base["orientation"]),
            pixel_spacing=_floats(meas.get("PixelSpacing"), 2) if meas else base["spacing"],
            thickness=_first(meas.get("SliceThickness")) if meas else base["thickness"],
            slope=_or(_first(trans.get("RescaleSlope")) if trans else None, base["slope"]),
            intercept=_or(_first(trans.get("RescaleIntercept")) if trans else None,
                          base["intercept"]),
            **base["common"]))
    return refs


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _read_header(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    force = path.suffix.lower() in _DCM_SUFFIXES
    if not force and not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=force)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as exc:
        if force and not is_dicom_file(path):
            return None
        raise DicomError(f"cannot read the DICOM file {path}: {exc}") from exc


def scan(path: str | os.PathLike) -> tuple[list[SeriesInfo], list[tuple[Path, str]]]:
    """Read the headers of every DICOM file under ``path`` and sort them into series.

    Parameters
    ----------
    path : str or path
        A folder (searched recursively; a ``DICOMDIR`` in it is used instead), a
        ``DICOMDIR`` file, or one DICOM file.

    Returns
    -------
    series : list of SeriesInfo
        The image series, in order of SeriesNumber, then description.
    others : list of (path, what)
        Files set aside: non-image objects (e.g. ``"RTSTRUCT"``, ``"SEG"``) and files that
        are not DICOM (``"not DICOM"``).
    """
    path = Path(path)
    found: dict[str, SeriesInfo] = {}
    others: list[tuple[Path, str]] = []
    for f in _candidate_files(path):
        ds = _read_header(f)
        if ds is None:
            others.append((f, "not DICOM"))
            continue
        meta = ds.get("file_meta")
        sop_class = str(ds.get("SOPClassUID", "") or (
            meta.get("MediaStorageSOPClassUID", "") if meta is not None else ""))
        modality = str(ds.get("Modality", "") or "")
        if sop_class == _DICOMDIR_CLASS:
            continue
        if modality.upper() in NON_IMAGE_MODALITIES or "Rows" not in ds or "Columns" not in ds:
            others.append((f, modality or _sop_name(sop_class) or "no image"))
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        if not uid:
            raise DicomError(f"{f} has no SeriesInstanceUID; it cannot be assigned to a "
                             "series (fix the file or remove it from the folder)")
        info = found.get(uid)
        if info is None:
            number = ds.get("SeriesNumber")
            info = found[uid] = SeriesInfo(
                uid=uid, description=str(ds.get("SeriesDescription", "") or ""),
                number=int(number) if number not in (None, "") else None, modality=modality,
                study_uid=str(ds.get("StudyInstanceUID", "") or ""),
                frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or "") or None,
                photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")))
        info.slices += _slices(ds, f, sop_class)
        if info.window is None:
            info.window = _window(ds)
    series = sorted(found.values(), key=lambda s: (s.number is None, s.number or 0,
                                                   s.description, s.uid))
    return series, others


def _slices(ds: Any, path: Path, sop_class: str) -> list[SliceRef]:
    meta = ds.get("file_meta")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    shape = (int(ds.Rows), int(ds.Columns)) + ((samples,) if samples > 1 else ())
    common = dict(
        sop_uid=str(ds.get("SOPInstanceUID", "")), sop_class=sop_class, shape=shape,
        pixel=(int(ds.get("BitsAllocated", 16) or 16), int(ds.get("BitsStored", 0) or 0),
               int(ds.get("PixelRepresentation", 0) or 0)),
        transfer_syntax=str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1"))
        if meta is not None else "1.2.840.10008.1.2.1")
    base = dict(position=_floats(ds.get("ImagePositionPatient"), 3),
                orientation=_floats(ds.get("ImageOrientationPatient"), 6),
                spacing=_floats(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"), 2),
                thickness=_first(ds.get("SliceThickness")),
                slope=_or(_first(ds.get("RescaleSlope")), 1.0),
                intercept=_or(_first(ds.get("RescaleIntercept")), 0.0))
    if int(ds.get("NumberOfFrames", 1) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return _frame_refs(ds, path, {**base, "common": common})
    return [SliceRef(path=path, frame=None, position=base["position"],
                     orientation=base["orientation"], pixel_spacing=base["spacing"],
                     slope=base["slope"], intercept=base["intercept"],
                     thickness=base["thickness"], **common)]


def _window(ds: Any) -> tuple[float, float] | None:
    c, w = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if c is None or w is None:
        voi = _item(_item(ds, "SharedFunctionalGroupsSequence"), "FrameVOILUTSequence")
        if voi is None:
            voi = _item(_item(ds, "PerFrameFunctionalGroupsSequence"), "FrameVOILUTSequence")
        if voi is not None:
            c, w = _first(voi.get("WindowCenter")), _first(voi.get("WindowWidth"))
    return (c, w) if c is not None and w is not None and w > 0 else None


def _sop_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        return UID(uid).name if uid else ""
    except Exception:  # unknown UIDs have no name
        return uid


# ------------------------------------------------------------------------------ choosing
def select(series: list[SeriesInfo], choice: str | None, *, where: Path,
           others: list[tuple[Path, str]] = ()) -> SeriesInfo:
    """The series chosen by UID, SeriesNumber or description (the only one when None).

    Raises
    ------
    DicomError
        No image series; several and no choice; a choice that matches none or several.
    """
    if not series:
        kinds = sorted({w for _, w in others if w != "not DICOM"})
        what = (f"only non-image objects ({', '.join(kinds)}, e.g. "
                f"{next(p for p, w in others if w != 'not DICOM')})") if kinds else \
            "no DICOM files"
        raise DicomError(f"{where} holds no DICOM image series: {what}; open the folder of "
                         "the image series (CT, MR, ...) these refer to")
    listing = "; ".join(s.label() for s in series)
    if choice is None:
        if len(series) == 1:
            return series[0]
        raise DicomError(f"{where} holds {len(series)} image series: {listing}. Choose one by "
                         "UID, number or description (series=... in Python, --series on the "
                         "command line)")
    text = str(choice).strip()
    for test in (lambda s: s.uid == text,
                 lambda s: s.number is not None and str(s.number) == text,
                 lambda s: s.description.lower() == text.lower(),
                 lambda s: text.lower() in s.description.lower()):
        hits = [s for s in series if test(s)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise DicomError(f"series {text!r} matches {len(hits)} series in {where}: "
                             f"{'; '.join(s.label() for s in hits)}; give its UID")
    raise DicomError(f"no series {text!r} in {where}; it holds: {listing}")
