"""DICOM series in: real series built from the shared NIfTI volumes, read back lazily.

Round trips (shuffled names, oblique orientation, rescale, reversed slice order, enhanced
multi-frame objects, DICOMDIR) must give the NIfTI source's voxels, spacing and affine;
bad input (two series, a missing slice, irregular spacing, mixed orientations, a
compression without decoder, non-image objects) must be refused naming the series and file.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicom_from_nifti import load_nifti, rotation, write_series
from napari_segany.intensity import IntensityError, Normalizer
from napari_segany.io import (
    DicomError,
    DicomVolume,
    is_dicom,
    list_series,
    read_dicom,
    read_image,
)
from testdata import DATA

SPLEEN = DATA / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz"
CORD_T2 = DATA / "spinalcord_mri" / "sub-unf01_T2w.nii.gz"
CORD_T1 = DATA / "spinalcord_mri" / "sub-unf01_T1w.nii.gz"
TOTAL_CT = DATA / "totalsegmentator" / "example_ct_sm.nii.gz"
BRAIN = DATA / "itksnap_mricrop" / "MRIcrop-orig.nii.gz"


def needs(path):
    return pytest.mark.skipif(not path.exists(), reason=f"real data {path} absent")


def _small(n=8, h=24, w=20):
    """A synthetic CT-like volume and a 1.5 x 0.7 x 0.6 mm affine (no shared data needed)."""
    rng = np.random.default_rng(0)
    vol = rng.integers(-1000, 1500, (n, h, w)).astype(np.int16)
    return vol, np.diag([0.6, 0.7, 1.5, 1.0])


# ------------------------------------------------------------------------- round trips
@needs(SPLEEN)
def test_ct_series_with_shuffled_names_reads_back_the_nifti(tmp_path):
    vol, affine = load_nifti(SPLEEN)  # float32 HU, 0.79 x 0.79 x 5 mm
    w = write_series(tmp_path / "ct", vol, affine)  # random names, shuffled InstanceNumber
    assert sorted(p.name for p in w.files) != [p.name for p in w.files]  # names are shuffled
    img = read_image(tmp_path / "ct")
    data = img.data
    assert isinstance(data, DicomVolume) and data.shape == vol.shape
    assert data.dtype == np.int32  # uint16 stored, intercept -1024 applied: HU
    np.testing.assert_array_equal(np.asarray(data), vol)
    np.testing.assert_allclose(img.spacing, (5.0, 0.7949219, 0.7949219), rtol=1e-6)
    np.testing.assert_allclose(img.affine, affine, atol=1e-4)
    assert img.metadata["format"] == "dicom" and img.metadata["modality"] == "CT"
    assert img.metadata["series_uid"] == w.series_uid


@needs(CORD_T2)
def test_oblique_mr_with_rescale_slope(tmp_path):
    vol, affine = load_nifti(CORD_T2)  # float MR, already oblique (9.3 degrees about x)
    oblique = rotation(0.35, -0.25, 0.6) @ affine
    w = write_series(tmp_path / "mr", vol, oblique, modality="MR")
    assert w.slope != 1.0 and w.intercept != 0.0
    data = read_dicom(tmp_path / "mr")
    assert data.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(data), w.expected())
    np.testing.assert_allclose(np.asarray(data), vol, atol=w.slope / 2 + 1e-3)
    np.testing.assert_allclose(data.affine, oblique, atol=1e-4)
    np.testing.assert_allclose(data.spacing, np.linalg.norm(affine[:3, :3], axis=0)[::-1],
                               rtol=1e-5)


@needs(TOTAL_CT)
def test_slices_follow_the_normal_not_the_file_order(tmp_path):
    vol, affine = load_nifti(TOTAL_CT)
    n = vol.shape[0]
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1.0, n - 1  # the same voxels, k running against the normal
    w = write_series(tmp_path / "rev", vol[::-1], affine @ flip, shuffle=False)
    assert [p.name for p in w.files] == sorted(p.name for p in w.files)
    data = read_dicom(tmp_path / "rev")
    np.testing.assert_array_equal(np.asarray(data), vol)  # sorted along the normal
    np.testing.assert_allclose(data.affine, affine, atol=1e-4)
    assert data.slices[0].path == w.files[-1]


@needs(BRAIN)
def test_enhanced_multiframe_object(tmp_path):
    highdicom = pytest.importorskip("highdicom")
    vol, affine = load_nifti(BRAIN)
    oblique = rotation(0.2, 0.1, -0.3) @ affine
    w = write_series(tmp_path / "single", vol, oblique, modality="MR")
    enhanced = highdicom.legacy.LegacyConvertedEnhancedMRImage(
        w.datasets, series_instance_uid=highdicom.UID(), series_number=7,
        sop_instance_uid=highdicom.UID(), instance_number=1)
    (tmp_path / "multi").mkdir()
    enhanced.save_as(tmp_path / "multi" / "enhanced.dcm")
    data = read_dicom(tmp_path / "multi" / "enhanced.dcm")
    assert data.slices[0].frame is not None and len(data.series.files) == 1
    np.testing.assert_array_equal(np.asarray(data), vol)
    np.testing.assert_allclose(data.affine, oblique, atol=1e-4)
    assert read_dicom(tmp_path / "multi").shape == vol.shape  # the folder too


def test_dicomdir(tmp_path):
    from pydicom.fileset import FileSet

    vol, affine = _small()
    w = write_series(tmp_path / "src", vol, affine)
    fs = FileSet()
    for f in w.files:
        fs.add(pydicom.dcmread(f))
    fs.write(tmp_path / "media")
    assert (tmp_path / "media" / "DICOMDIR").is_file()
    for path in (tmp_path / "media", tmp_path / "media" / "DICOMDIR"):
        data = read_dicom(path)
        np.testing.assert_array_equal(np.asarray(data), vol)
        np.testing.assert_allclose(data.affine, affine, atol=1e-6)


def test_planes_are_read_lazily(tmp_path, monkeypatch):
    vol, affine = _small(n=12)
    write_series(tmp_path / "s", vol, affine)
    decoded = []
    real = DicomVolume._decode
    monkeypatch.setattr(DicomVolume, "_decode",
                        lambda self, s: decoded.append(s.path) or real(self, s))
    data = read_image(tmp_path / "s").data
    assert decoded == []  # opening reads headers only
    np.testing.assert_array_equal(data[5], vol[5])
    np.testing.assert_array_equal(data[5, 3:9, ::2], vol[5, 3:9, ::2])  # cached plane
    assert len(decoded) == 1
    np.testing.assert_array_equal(data[2:4, 1], vol[2:4, 1])
    np.testing.assert_array_equal(data[..., 3], vol[..., 3])
    assert len(data[3:3]) == 0 and data[-1].shape == vol.shape[1:]
    data[0][0, 0] = 1  # a copy: the cached plane is not changed
    assert data[0][0, 0] == vol[0, 0, 0]


def test_window_presets_from_the_file(tmp_path):
    vol, affine = _small()
    write_series(tmp_path / "w", vol, affine, window=(40.0, 400.0))
    data = read_dicom(tmp_path / "w")
    assert data.window == (40.0, 400.0)
    norm = Normalizer.fit(data, mode="window", window="file")
    assert (norm.low, norm.high) == ((-160.0,), (240.0,))
    liver = Normalizer.fit(data, mode="window", window="ct_liver")
    assert (liver.low, liver.high) == ((-45.0,), (105.0,))
    with pytest.raises(IntensityError, match="WindowCenter"):
        Normalizer.fit(vol, mode="window", window="file")  # a plain array has no window


def test_cli_series_and_window_options(tmp_path):
    from napari_segany.cli import build_parser
    from napari_segany.cli._common import build_normalizer, load_image

    vol, affine = _small()
    w = write_series(tmp_path / "two", vol, affine, description="AX CT", number=3,
                     window=(50.0, 100.0))
    write_series(tmp_path / "two", vol[:, ::-1], affine, description="COR", number=4,
                 study_uid=w.datasets[0].StudyInstanceUID, prefix="b")
    args = build_parser().parse_args(["embed", str(tmp_path / "two"), "--series", "ax ct",
                                      "--window", "file", "--cache", str(tmp_path / "c")])
    data, rgb, source = load_image(args)
    assert source["format"] == "dicom" and source["series_uid"] == w.series_uid
    assert source["unit"] == "mm" and source["spacing"] == [1.5, 0.7, 0.6]
    norm = build_normalizer(args, data, rgb)
    assert (norm.low, norm.high) == ((0.0,), (100.0,))


# ------------------------------------------------------------------------- bad input
@needs(SPLEEN)
@needs(CORD_T1)
def test_real_ct_and_mr_in_one_folder_then_a_missing_slice(tmp_path):
    ct, ct_affine = load_nifti(SPLEEN)
    mr, mr_affine = load_nifti(CORD_T1)
    a = write_series(tmp_path / "study", ct, ct_affine, description="CT abdomen", number=2)
    b = write_series(tmp_path / "study", mr, mr_affine, modality="MR", description="T1w cord",
                     number=5, prefix="mr", seed=1)
    with pytest.raises(DicomError, match=r'2 image series: series 2 "CT abdomen" \(CT, 26 '
                                         r'images.*series 5 "T1w cord" \(MR, 16 images'):
        read_dicom(tmp_path / "study")
    got_ct = read_dicom(tmp_path / "study", series="CT abdomen")
    np.testing.assert_array_equal(np.asarray(got_ct), ct)
    np.testing.assert_allclose(got_ct.affine, ct_affine, atol=1e-4)
    got_mr = read_dicom(tmp_path / "study", series=b.series_uid)
    np.testing.assert_array_equal(np.asarray(got_mr), b.expected())
    np.testing.assert_allclose(got_mr.affine, mr_affine, atol=1e-4)
    b.files[7].unlink()
    with pytest.raises(DicomError, match=rf'series 5 "T1w cord".*1 slice\(s\) missing.*'
                                         rf'{b.files[6].name}.*{b.files[8].name}'):
        read_dicom(tmp_path / "study", series="5")
    assert read_dicom(tmp_path / "study", series=a.series_uid).shape == ct.shape


def test_two_series_in_one_folder(tmp_path):
    vol, affine = _small()
    a = write_series(tmp_path / "mixed", vol, affine, description="AX T1", number=2)
    b = write_series(tmp_path / "mixed", vol * 2, affine, description="AX T2", number=3,
                     modality="MR", prefix="x")
    with pytest.raises(DicomError, match=r"2 image series.*AX T1.*AX T2.*--series"):
        read_image(tmp_path / "mixed")
    assert [s.description for s in list_series(tmp_path / "mixed")] == ["AX T1", "AX T2"]
    np.testing.assert_array_equal(read_dicom(tmp_path / "mixed", series=b.series_uid)[:],
                                  vol * 2)
    np.testing.assert_array_equal(read_dicom(tmp_path / "mixed", series="ax t1")[:], vol)
    assert read_dicom(tmp_path / "mixed", series="3").series.uid == b.series_uid
    assert read_image(a.files[0]).data.series.uid == a.series_uid  # a file: its own series
    with pytest.raises(DicomError, match="matches 2 series"):
        read_dicom(tmp_path / "mixed", series="AX")
    with pytest.raises(DicomError, match="no series 'sagittal'.*AX T1"):
        read_dicom(tmp_path / "mixed", series="sagittal")


def test_missing_slice_is_named(tmp_path):
    vol, affine = _small(n=10)
    w = write_series(tmp_path / "gap", vol, affine)
    w.files[4].unlink()
    with pytest.raises(DicomError) as err:
        read_dicom(tmp_path / "gap")
    msg = str(err.value)
    assert "1 slice(s) missing" in msg and w.files[3].name in msg and w.files[5].name in msg
    assert 'series 1 "test series"' in msg


def _rewrite(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_irregular_spacing_and_mixed_orientation(tmp_path):
    vol, affine = _small(n=10)
    w = write_series(tmp_path / "irr", vol, affine, shuffle=False)
    pos = list(w.datasets[6].ImagePositionPatient)
    _rewrite(w.files[6], ImagePositionPatient=[pos[0], pos[1], float(pos[2]) + 0.5])
    with pytest.raises(DicomError, match="irregular slice spacing"):
        read_dicom(tmp_path / "irr")
    w = write_series(tmp_path / "tilt", vol, affine, shuffle=False)
    for k in range(10):  # a gantry tilt: each slice shifted along y by 0.3 mm more
        p = [float(v) for v in w.datasets[k].ImagePositionPatient]
        _rewrite(w.files[k], ImagePositionPatient=[p[0], p[1] - 0.3 * k, p[2]])
    with pytest.raises(DicomError, match="not along the slice normal.*gantry tilt"):
        read_dicom(tmp_path / "tilt")
    w = write_series(tmp_path / "ori", vol, affine, shuffle=False)
    _rewrite(w.files[3], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    with pytest.raises(DicomError, match=f"mixes slice orientations.*{w.files[3].name}"):
        read_dicom(tmp_path / "ori")
    w = write_series(tmp_path / "dup", vol, affine, shuffle=False)
    _rewrite(w.files[3], ImagePositionPatient=list(w.datasets[2].ImagePositionPatient))
    with pytest.raises(DicomError, match="share a slice position.*several volumes"):
        read_dicom(tmp_path / "dup")
    w = write_series(tmp_path / "size", vol, affine, shuffle=False)
    ds = pydicom.dcmread(w.files[2])
    ds.Rows, ds.PixelData = 12, np.ascontiguousarray(vol[2, :12]).tobytes()
    ds.save_as(w.files[2])
    with pytest.raises(DicomError, match=f"mixes image sizes.*{w.files[2].name}"):
        read_dicom(tmp_path / "size")


def test_compressed_without_decoder(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    candidates = ["1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.57"]

    def available(uid):
        try:
            return get_decoder(UID(uid)).is_available
        except NotImplementedError:
            return False

    missing = [u for u in candidates if not available(u)]
    if not missing:
        pytest.skip("every candidate compression has a decoder installed here")
    vol, affine = _small(n=4)
    w = write_series(tmp_path / "jpg", vol, affine, shuffle=False)
    for f in w.files:
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = UID(missing[0])
        ds.PixelData = encapsulate([b"\xff\xd8not really compressed\xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(DicomError, match=f"no installed decoder.*{w.files[0].name}.*pylibjpeg"):
        read_image(tmp_path / "jpg")


def test_non_image_objects(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def structure_set(path):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.481.3", generate_uid()
        ds.Modality, ds.SeriesInstanceUID = "RTSTRUCT", generate_uid()
        ds.save_as(path, enforce_file_format=True)

    (tmp_path / "rt").mkdir()
    structure_set(tmp_path / "rt" / "rs.dcm")
    (tmp_path / "rt" / "notes.txt").write_text("not DICOM")
    assert is_dicom(tmp_path / "rt")
    with pytest.raises(DicomError, match=r"no DICOM image series: only non-image objects "
                                         r"\(RTSTRUCT.*rs\.dcm"):
        read_image(tmp_path / "rt")
    vol, affine = _small()
    write_series(tmp_path / "rt", vol, affine)  # the series beside them opens
    np.testing.assert_array_equal(read_image(tmp_path / "rt").data[:], vol)


def test_not_dicom_and_series_elsewhere(tmp_path):
    (tmp_path / "frames").mkdir()
    assert not is_dicom(tmp_path / "frames")
    np.save(tmp_path / "a.npy", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="series=.1. applies to DICOM input only"):
        read_image(tmp_path / "a.npy", series="1")


def test_command_line_refuses_bad_series_before_writing(tmp_path, capsys):
    from napari_segany.cli import main

    vol, affine = _small(n=6)
    write_series(tmp_path / "mixed", vol, affine, description="AX T1")
    w = write_series(tmp_path / "mixed", vol, affine, description="AX T2", prefix="x")
    out = tmp_path / "out"
    argv = ["segment", str(tmp_path / "mixed"), "--box", "2,2,9,9", "--plane", "3",
            "--out", str(out), "--model", "sam_tiny", "--random-weights"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 image series" in err and "AX T1" in err and "--series" in err
    w.files[2].unlink()
    assert main(argv + ["--series", "AX T2"]) == 2
    err = capsys.readouterr().err
    assert "slice(s) missing" in err and w.files[1].name in err
    assert not out.exists()  # nothing written
