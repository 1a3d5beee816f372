"""DICOM-SEG (highdicom) and RTSTRUCT (pydicom) exports of labels stores, read back.

The series are built from the shared NIfTI volumes with their manual segmentations; the
DICOM-SEG must give back every object's voxels exactly, the RTSTRUCT up to the contour
rasterisation (Dice stated), and bad input must leave nothing written.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from dicom_from_nifti import load_nifti, rotation, write_series
from napari_segany.cli import main
from napari_segany.exports import ExportError, code_for, export_labels
from napari_segany.exports.rtstruct import mask_contours
from napari_segany.io import read_dicom
from napari_segany.storage import LabelsStore
from testdata import DATA

SPLEEN = DATA / "msd_spleen_crop"
BRAIN = DATA / "itksnap_mricrop"
needs_brain = pytest.mark.skipif(not BRAIN.exists(), reason="real data absent")


def _store(path, labels, names, source=None):
    store = LabelsStore.create(path, labels.shape, provenance={"source": source} if source
                               else None)
    for k in range(labels.shape[0]):
        if labels[k].any():
            store.write_plane((k,), labels[k].astype(np.uint32))
    for oid, name in names.items():
        store.set_object(oid, class_name=name)
    return store


@pytest.fixture(scope="module")
def spleen_case(tmp_path_factory):
    """An oblique CT series of the MSD spleen crop, and a store: spleen (1) and a lesion (4)."""
    if not SPLEEN.exists():
        pytest.skip("real data absent")
    root = tmp_path_factory.mktemp("spleen")
    vol, affine = load_nifti(SPLEEN / "sub-spleen2_ct.nii.gz")
    mask, _ = load_nifti(SPLEEN / "sub-spleen2_ct_seg-manual.nii.gz")
    w = write_series(root / "ct", vol, rotation(0.1, 0.25, -0.4) @ affine, description="CT")
    labels = (mask > 0).astype(np.uint32)
    labels[8:12, 20:40, 30:45] = 4
    labels[10, 22:26, 33:37] = 0  # a hole in the lesion
    source = {"format": "dicom", "path": str(root / "ct"), "series_uid": w.series_uid}
    store = _store(root / "seg.zarr", labels, {1: "spleen", 4: "lesion"}, source)
    return root, w, labels, store


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def rasterise(rt, volume, *, rule="centre"):
    """RTSTRUCT ROI number -> (z, y, x) mask: each contour filled (even-odd rule), mapped to
    its slice through ContourImageSequence. ``rule="centre"``: pixels whose centre lies
    inside (scikit-image); ``"outline"``: the outline's pixels too (PIL, like OpenCV's
    fillPoly that rt-utils uses)."""
    from PIL import Image, ImageDraw
    from skimage.draw import polygon

    index = {uid: k for k, uid in enumerate(volume.sop_instance_uids)}
    out = {}
    for rc in rt.ROIContourSequence:
        mask = np.zeros(volume.shape, bool)
        for c in rc.ContourSequence:
            k = index[c.ContourImageSequence[0].ReferencedSOPInstanceUID]
            pts = np.asarray(c.ContourData, dtype=np.float64).reshape(-1, 3)
            s = volume.slices[k]
            rel = pts - np.asarray(s.position)
            a = volume.affine_lps
            col = rel @ (a[:3, 0] / np.dot(a[:3, 0], a[:3, 0]))
            row = rel @ (a[:3, 1] / np.dot(a[:3, 1], a[:3, 1]))
            if rule == "centre":
                rr, cc = polygon(row, col, volume.shape[1:])
                fill = np.zeros(volume.shape[1:], bool)
                fill[rr, cc] = True
            else:
                im = Image.new("1", volume.shape[:0:-1], 0)
                ImageDraw.Draw(im).polygon(list(zip(col, row, strict=True)), fill=1, outline=1)
                fill = np.asarray(im, dtype=bool)
            mask[k] ^= fill
        out[int(rc.ReferencedROINumber)] = mask
    return out


# ------------------------------------------------------------------------------ DICOM-SEG
def test_dicom_seg_reads_back_equal(spleen_case):
    root, w, labels, store = spleen_case
    out = export_labels(store, root / "case.seg.dcm", creator="Doe^Jane")
    seg = hd.seg.segread(out)
    volume = read_dicom(root / "ct")
    assert seg.Modality == "SEG" and seg.ContentCreatorName == "Doe^Jane"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == w.series_uid
    assert seg.FrameOfReferenceUID == w.datasets[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == w.datasets[0].StudyInstanceUID
    numbers = {seg.get_segment_description(n).segment_label: n
               for n in seg.get_segment_numbers()}
    assert numbers == {"spleen": 1, "lesion": 2}
    spleen = seg.get_segment_description(1)
    assert (spleen.segmented_property_type.value, spleen.segmented_property_type.meaning) == \
        ("78961009", "Spleen")
    lesion = seg.get_segment_description(2)
    assert lesion.segmented_property_category.meaning == "Morphologically Abnormal Structure"
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=volume.sop_instance_uids, combine_segments=True)
    assert pixels.shape == labels.shape
    np.testing.assert_array_equal(pixels == 1, labels == 1)  # every voxel of every segment
    np.testing.assert_array_equal(pixels == 2, labels == 4)


def test_dicom_seg_class_table_and_segments_per_class(spleen_case):
    root, w, labels, store = spleen_case
    classes = {1: {"name": "spleen", "color": "#102030"},
               4: {"name": "lesion", "code": ("SCT", "108369006", "Neoplasm")}}
    out = export_labels(store, root / "cls.dcm", classes=classes, class_names="organ",
                        segments="class")
    seg = hd.seg.segread(out)
    assert seg.get_segment_numbers() == [1]  # both objects are named "organ": one segment
    px = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=read_dicom(root / "ct").sop_instance_uids,
        combine_segments=True)
    np.testing.assert_array_equal(px > 0, labels > 0)
    out = export_labels(store, root / "cls2.seg.dcm", classes=classes, labelmap=True)
    seg = hd.seg.segread(out)
    assert seg.get_segment_description(2).segmented_property_type.meaning == "Neoplasm"
    lab = seg.get_segment_description(1).RecommendedDisplayCIELabValue
    rgb = hd.color.CIELabColor.from_dicom_value(lab).to_rgb()
    assert tuple(round(v) for v in rgb) == (16, 32, 48)


def test_code_for_names():
    assert code_for("Liver")["type"] == ("SCT", "10200004", "Liver")
    assert code_for("left kidney")["type"][1] == "64033007"
    assert code_for("spinal cord")["type"][2] == "Spinal cord"
    assert code_for("liver lesion")["category"][2] == "Morphologically Abnormal Structure"
    assert code_for("my blob")["type"][2] == "Tissue"


@needs_brain
def test_dicom_seg_on_an_enhanced_multiframe_source(tmp_path):
    vol, affine = load_nifti(BRAIN / "MRIcrop-orig.nii.gz")
    seg8, _ = load_nifti(BRAIN / "MRIcrop-seg.nii.gz")
    w = write_series(tmp_path / "single", vol, affine, modality="MR")
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        w.datasets[::-1], series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1)  # frames in reverse slice order
    (tmp_path / "mf").mkdir()
    enhanced.save_as(tmp_path / "mf" / "mr.dcm")
    labels = seg8.astype(np.uint32)
    store = _store(tmp_path / "seg.zarr", labels, {})
    out = export_labels(store, tmp_path / "mr.seg.dcm", reference=tmp_path / "mf")
    seg = hd.seg.segread(out)
    assert len(seg.get_segment_numbers()) == 8
    source = read_dicom(tmp_path / "mf")
    frames = [s.frame for s in source.slices]
    assert frames == list(range(len(frames)))[::-1]
    for k, frame in enumerate(frames):
        got = seg.get_pixels_by_source_frame(
            source_sop_instance_uid=enhanced.SOPInstanceUID, source_frame_numbers=[frame + 1],
            combine_segments=True)[0]
        np.testing.assert_array_equal(got, labels[k])


# ------------------------------------------------------------------------------ RTSTRUCT
def test_mask_contours_fill_back_exactly():
    rng = np.random.default_rng(3)
    from scipy import ndimage as ndi
    from skimage.draw import polygon

    mask = ndi.binary_opening(rng.random((60, 70)) > 0.45)
    fill = np.zeros_like(mask)
    for c in mask_contours(mask):
        rr, cc = polygon(c[:, 0], c[:, 1], mask.shape)
        part = np.zeros_like(mask)
        part[rr, cc] = True
        fill ^= part
    np.testing.assert_array_equal(fill, mask)


def test_rtstruct_reads_back_within_rasterisation(spleen_case):
    root, w, labels, store = spleen_case
    out = export_labels(store, root / "case.rtstruct.dcm", creator="Doe^Jane")
    rt = pydicom.dcmread(out)
    assert rt.Modality == "RTSTRUCT" and rt.PatientID == w.datasets[0].PatientID
    ref = rt.ReferencedFrameOfReferenceSequence[0]
    assert ref.FrameOfReferenceUID == w.datasets[0].FrameOfReferenceUID
    series = ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == w.series_uid
    assert len(series.ContourImageSequence) == labels.shape[0]
    names = {r.ROINumber: r.ROIName for r in rt.StructureSetROISequence}
    assert names == {1: "spleen", 2: "lesion"}
    code = rt.RTROIObservationsSequence[0].RTROIIdentificationCodeSequence[0]
    assert (code.CodeValue, code.CodeMeaning) == ("78961009", "Spleen")
    volume = read_dicom(root / "ct")
    masks = rasterise(rt, volume)
    dice = {"spleen": _dice(masks[1], labels == 1), "lesion": _dice(masks[2], labels == 4)}
    print("RTSTRUCT read-back Dice, pixel centres inside the contours:", dice)
    assert dice["spleen"] == 1.0 and dice["lesion"] == 1.0  # the hole stays a hole
    assert not masks[2][10, 23, 34]
    outline = rasterise(rt, volume, rule="outline")
    dice = _dice(outline[1], labels == 1)
    print(f"RTSTRUCT read-back Dice, outline pixels included: spleen {dice:.4f}")
    assert dice > 0.97  # 0.982 measured: a one-pixel rim around each outline


# ------------------------------------------------------------------------------ refusals
def test_bad_input_writes_nothing(spleen_case, tmp_path):
    root, w, labels, store = spleen_case
    other = _store(tmp_path / "other.zarr", labels[:, :-1], {})  # one row short
    with pytest.raises(ExportError, match="the store records no DICOM source"):
        export_labels(other, tmp_path / "a.seg.dcm")
    with pytest.raises(ExportError, match=r"shape \(26, 165, 164\).*\(26, 166, 164\)"):
        export_labels(other, tmp_path / "a.seg.dcm", reference=root / "ct")
    empty = _store(tmp_path / "empty.zarr", np.zeros_like(labels), {})
    with pytest.raises(ExportError, match="no objects"):
        export_labels(empty, tmp_path / "b.rtstruct.dcm", reference=root / "ct")
    with pytest.raises(ExportError, match="takes no option axes"):
        export_labels(store, tmp_path / "c.seg.dcm", axes="ZYX")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.zarr", "other.zarr"]


def test_cli_export_dicom_formats(spleen_case, tmp_path, capsys):
    root, w, labels, store = spleen_case
    assert main(["export", str(store.path), "--format", "dicom-seg", "--reference",
                 str(root / "ct"), "--out", str(tmp_path / "x.dcm"), "--creator",
                 "Doe^J"]) == 0
    assert hd.seg.segread(tmp_path / "x.dcm").ContentCreatorName == "Doe^J"
    assert main(["export", str(store.path), "--format", "rtstruct", "--out",
                 str(tmp_path / "y.dcm"), "--segments", "class"]) == 0
    assert pydicom.dcmread(tmp_path / "y.dcm").Modality == "RTSTRUCT"
    assert main(["export", str(store.path), "--format", "dicom-seg", "--axes", "ZYX",
                 "--out", str(tmp_path / "z.dcm")]) == 2
    assert "--axes applies to --format tif" in capsys.readouterr().err
    assert main(["export", str(store.path), "--format", "nii", "--labelmap",
                 "--out", str(tmp_path / "z.nii")]) == 2
    assert not (tmp_path / "z.dcm").exists() and not (tmp_path / "z.nii").exists()
