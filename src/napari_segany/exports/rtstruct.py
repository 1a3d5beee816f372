"""Labels as a DICOM RT Structure Set (RTSTRUCT): closed planar contours per slice.

The same segments as :func:`~napari_segany.exports.dicom.export_dicom_seg` (one ROI per
object or per class, named, coloured and coded) become ROIs; every plane where a segment
has pixels gets its outlines as ``CLOSED_PLANAR`` contours in patient coordinates (mm),
each referencing its slice's SOPInstanceUID (and frame of a multi-frame source).

The outlines are the iso-line at 0.5 of the mask (marching squares,
:func:`skimage.measure.find_contours`): it runs through the midpoints between pixel
centres inside and outside the mask, so a pixel whose centre lies inside the polygon
(even-odd rule for holes) is exactly a pixel of the mask; other planning systems
rasterise contours by their own rules, so a read-back can differ by a pixel at the
border. The dataset is built with pydicom from the RT Structure Set IOD (PS3.3 A.19):
rt-utils would pull in opencv-python, whose bundled Qt clashes with napari's.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .common import ExportError, _check_target, _Labels, _target
from .dicom import present_ids, reference_volume, segments_of

__all__ = ["export_rtstruct", "mask_contours", "RTSTRUCT_STORAGE"]

#: SOP Class UID of the RT Structure Set Storage.
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
_STUDY_COMPONENT = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (RT study refs)
_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
           "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
           "StudyDescription")


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Outlines of a 2D mask as closed polygons of ``(row, col)`` pixel coordinates.

    Parameters
    ----------
    mask : (H, W) bool array

    Returns
    -------
    list of (N, 2) float arrays
        One per outline (outer borders and holes alike), the closing point not repeated.
        Filling them with the even-odd rule, counting pixels whose centre lies inside,
        gives back ``mask`` exactly.
    """
    from skimage.measure import find_contours

    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    out = []
    for c in find_contours(padded, 0.5):
        c = c - 1.0
        if len(c) > 1 and np.allclose(c[0], c[-1]):
            c = c[:-1]
        if len(c) >= 3:
            out.append(c)
    return out


def _ds_text(values: np.ndarray) -> list[str]:
    return [f"{v:.4f}".rstrip("0").rstrip(".") or "0" for v in values]


def export_rtstruct(
    labels: Any,
    path: str | os.PathLike,
    *,
    reference: str | os.PathLike | None = None,
    series: str | None = None,
    classes: Any = None,
    class_names: Any = None,
    segments: str = "object",
    creator: str | None = None,
    series_description: str = "napari-segany structures",
    overwrite: bool = False,
) -> Path:
    """Write labels as an RT Structure Set referencing its source series.

    Parameters
    ----------
    labels : LabelsStore, path of one, or integer array, shape (z, y, x)
        On the grid of the reference series (planes in its order along the slice normal).
    path : str or path
        The ``.dcm`` file to write (e.g. ``case.rtstruct.dcm``).
    reference, series, classes, class_names, segments, creator, series_description :
        As :func:`~napari_segany.exports.dicom.export_dicom_seg`; ``creator`` becomes the
        OperatorsName and the ROI interpreter.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ExportError
        No reference, a reference of another shape, labels without objects, or an
        existing output without ``overwrite``.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    lab = _Labels(labels)
    _check_target(path, overwrite, lab)
    if len(lab.shape) != 3:
        raise ExportError(f"a DICOM export takes (z, y, x) labels, got shape {lab.shape}")
    vol = reference_volume(lab, reference, series)
    ids = present_ids(lab)
    if not ids:
        raise ExportError("the labels hold no objects; an RTSTRUCT needs at least one ROI")
    segs = segments_of(lab, ids, classes=classes, class_names=class_names, segments=segments)
    first = pydicom.dcmread(vol.slices[0].path, stop_before_pixels=True)
    frame_uid = vol.series.frame_of_reference_uid or str(first.get("FrameOfReferenceUID", ""))
    if not frame_uid:
        raise ExportError(f"{vol.series.label()} has no FrameOfReferenceUID; an RTSTRUCT "
                          "cannot refer to its coordinates")
    lps = vol.affine_lps
    assert lps is not None  # reference_volume refuses series without positions

    def image_ref(k: int) -> Dataset:
        s = vol.slices[k]
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = s.sop_class, s.sop_uid
        if s.frame is not None:
            item.ReferencedFrameNumber = s.frame + 1
        return item

    contours: dict[int, list[Dataset]] = {s.number: [] for s in segs}
    for (k,), plane in lab.planes():
        if not plane.any():
            continue
        origin = np.asarray(vol.slices[k].position, dtype=np.float64)
        for seg in segs:
            mask = np.isin(plane, seg.ids)
            if not mask.any():
                continue
            for c in mask_contours(mask):
                world = origin + np.outer(c[:, 1], lps[:3, 0]) + np.outer(c[:, 0], lps[:3, 1])
                item = Dataset()
                item.ContourImageSequence = Sequence([image_ref(k)])
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(world)
                item.ContourData = _ds_text(world.ravel())
                contours[seg.number].append(item)

    now = datetime.datetime.now()
    uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RTSTRUCT_STORAGE, uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_STORAGE, uid
    for key in _COPIED:
        setattr(ds, key, first.get(key, ""))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID, ds.SeriesNumber = generate_uid(), (vol.series.number or 0) + 2000
    ds.SeriesDescription = series_description[:64]
    ds.OperatorsName = creator or ""
    ds.Manufacturer = ds.ManufacturerModelName = "napari-segany"
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "napari-segany"
    ds.StructureSetDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = ds.SeriesTime = now.strftime("%H%M%S")

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = vol.series.uid
    series_ref.ContourImageSequence = Sequence([image_ref(k) for k in range(len(vol.slices))])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = _STUDY_COMPONENT
    study_ref.ReferencedSOPInstanceUID = vol.series.study_uid or str(first.StudyInstanceUID)
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = frame_uid
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])

    rois, roi_contours, observations = [], [], []
    for seg in segs:
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID = seg.number, frame_uid
        roi.ROIName = seg.label[:64]
        roi.ROIDescription = f"napari-segany object(s) {', '.join(map(str, seg.ids))}"[:64]
        roi.ROIGenerationAlgorithm = "SEMIAUTOMATIC"
        rois.append(roi)
        rc = Dataset()
        rc.ROIDisplayColor = list(seg.color)
        rc.ReferencedROINumber = seg.number
        rc.ContourSequence = Sequence(contours[seg.number])
        roi_contours.append(rc)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = seg.number, seg.number
        obs.RTROIInterpretedType = "ORGAN" if seg.category[1] == "91723000" else ""
        obs.ROIInterpreter = creator or ""
        code = Dataset()
        code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning = seg.type
        obs.RTROIIdentificationCodeSequence = Sequence([code])
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(roi_contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    with _target(path, overwrite, lab) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)
