"""Real DICOM series made from NIfTI volumes, for the tests (pydicom and highdicom).

:func:`write_series` writes one single-frame file per slice of a ``(z, y, x)`` volume with
the geometry of a NIfTI affine (RAS, voxel ``(x, y, z)``), converted to DICOM's LPS:
ImageOrientationPatient from the first two columns, ImagePositionPatient per slice, and
PixelSpacing; the values are stored as integers with RescaleSlope/RescaleIntercept.
File names are random (shuffled) unless asked otherwise. :func:`expected` is what a
reader must return for those stored values.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Written:
    files: list[Path]  # in slice order (z = 0, 1, ...)
    datasets: list  # the pydicom datasets, in slice order
    series_uid: str
    stored: np.ndarray  # (z, y, x) stored integers
    slope: float
    intercept: float

    def expected(self) -> np.ndarray:
        """The rescaled values: int when slope and intercept are integers, else float32."""
        if float(self.slope).is_integer() and float(self.intercept).is_integer():
            return self.stored.astype(np.int64) * int(self.slope) + int(self.intercept)
        return (self.stored.astype(np.float64) * self.slope + self.intercept).astype(np.float32)


def _ds(x: float) -> float:
    """A value exactly representable as a DICOM DS string (16 characters at most)."""
    return float(f"{x:.8g}")


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A 4x4 rotation (radians about x, then y, then z)."""
    cx, sx, cy, sy, cz, sz = (math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay),
                              math.cos(az), math.sin(az))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    out = np.eye(4)
    out[:3, :3] = rz @ ry @ rx
    return out


def quantise(volume: np.ndarray, *, levels: int = 30000) -> tuple[np.ndarray, float, float]:
    """Stored uint16/int16 values, slope and intercept for any real volume."""
    v = np.asarray(volume, dtype=np.float64)
    if np.all(v == np.round(v)) and v.min() >= -32768 and v.max() <= 32767:
        if v.min() >= -1024:  # CT-like integers: unsigned storage with intercept -1024
            return (v + 1024).astype(np.uint16), 1.0, -1024.0
        return v.astype(np.int16), 1.0, 0.0
    lo, hi = float(v.min()), float(v.max())
    slope = _ds((hi - lo) / levels or 1.0)
    intercept = _ds(lo)
    return np.round((v - intercept) / slope).astype(np.uint16), slope, intercept


def write_series(folder: Path, volume: np.ndarray, affine: np.ndarray, *, modality: str = "CT",
                 description: str = "test series", number: int = 1, shuffle: bool = True,
                 series_uid: str | None = None, study_uid: str | None = None,
                 frame_of_reference: str | None = None, window: tuple[float, float] | None = None,
                 seed: int = 0, prefix: str = "") -> Written:
    """Write ``volume`` (z, y, x) as a DICOM series with the geometry of a NIfTI ``affine``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        CTImageStorage,
        ExplicitVRLittleEndian,
        MRImageStorage,
        generate_uid,
    )

    folder.mkdir(parents=True, exist_ok=True)
    stored, slope, intercept = quantise(volume)
    lps = RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    dx, dy = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    row, col = lps[:3, 0] / dx, lps[:3, 1] / dy
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_of_reference = frame_of_reference or generate_uid()
    rng = random.Random(seed)
    nz = stored.shape[0]
    names = [f"{prefix}{k:04d}.dcm" for k in range(nz)]
    if shuffle:
        names = [f"{prefix}IM{rng.getrandbits(48):012x}" for _ in range(nz)]
    order = list(range(nz))
    rng.shuffle(order)  # InstanceNumber does not follow the position either
    files, datasets = [], []
    signed = stored.dtype.kind == "i"
    for k in range(nz):
        uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
        ds.Modality = modality
        ds.PatientName, ds.PatientID = "Test^Phantom", "SEGANY01"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_of_reference
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "ACC1", ""
        ds.SeriesNumber, ds.InstanceNumber = number, order[k] + 1
        ds.SeriesDescription = description
        ds.Manufacturer = "napari-segany tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        if modality == "CT":
            ds.KVP = "120"
        else:
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "SE", "NONE", ""
            ds.MRAcquisitionType = "2D"
            ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength = "10", "500", "1"
            ds.MagneticFieldStrength = "1.5"
        pos = lps @ np.array([0.0, 0.0, float(k), 1.0])
        ds.ImagePositionPatient = [_ds(v) for v in pos[:3]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row, *col)]
        ds.PixelSpacing = [_ds(dy), _ds(dx)]
        ds.SliceThickness = _ds(float(np.linalg.norm(lps[:3, 2])))
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.RescaleType = "HU" if modality == "CT" else "US"
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
        datasets.append(ds)
    return Written(files, datasets, series_uid, stored, slope, intercept)


def load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI volume as ``(z, y, x)`` (the file's axes reversed) and its affine."""
    import nibabel as nib

    img = nib.load(str(path))
    return np.ascontiguousarray(np.asanyarray(img.dataobj).T), np.asarray(img.affine)
