"""Tests for napari_segany.exports: RLE, COCO, TIFF, NIfTI and zarr round trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from napari_segany.exports import (
    ExportError,
    export_coco,
    export_labels,
    export_nifti,
    export_rle,
    export_tiff,
    export_zarr,
    format_from_path,
    read_rle_csv,
    rle_decode,
    rle_encode,
)
from napari_segany.io import read_image
from napari_segany.storage import LabelsStore

mask_utils = pytest.importorskip("pycocotools.mask")


def make_labels(shape=(4, 20, 30), seed=0) -> np.ndarray:
    """Rectangles of several ids on every plane but one (an empty plane)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, dtype=np.uint32)
    for key in np.ndindex(*shape[:-2]):
        if key and key[-1] == 1:
            continue  # leave plane 1 empty
        for oid in (1, 2, 7):
            y0, x0 = rng.integers(0, shape[-2] - 4), rng.integers(0, shape[-1] - 4)
            h, w = rng.integers(1, 8, size=2)
            lab[key + (slice(y0, y0 + h), slice(x0, x0 + w))] = oid
    return lab


@pytest.fixture
def store(tmp_path) -> LabelsStore:
    lab = make_labels()
    s = LabelsStore.create(tmp_path / "labels.zarr", lab.shape)
    for z in range(lab.shape[0]):
        s.write_plane(z, lab[z])
    s.set_object(1, class_name="nucleus")
    s.set_object(2, class_name="cell")
    s.set_object(7)
    return s


class PlaneReader:
    """An array that records every read and refuses reads of more than one plane."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list = []

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        lead = self.ndim - 2
        assert len(key) == lead and all(isinstance(k, (int, np.integer)) for k in key), key
        self.reads.append(key)
        return self.data[key]

    def __array__(self, *a, **k):  # pragma: no cover - must never be called
        raise AssertionError("the whole array was read")


# ------------------------------------------------------------------------------ RLE
def test_rle_known_values():
    m = np.array([[0, 1, 1],
                  [1, 1, 0]], dtype=bool)
    # column-major 1-based: (0,0)=1 (1,0)=2 (0,1)=3 (1,1)=4 (0,2)=5 (1,2)=6
    assert rle_encode(m) == "2 4"
    assert rle_encode(np.zeros((3, 4))) == ""
    assert rle_encode(np.ones((3, 4))) == "1 12"
    assert rle_encode(np.eye(3)) == "1 1 5 1 9 1"
    assert np.array_equal(rle_decode("2 4", (2, 3)), m)
    assert rle_decode("", (2, 3)).shape == (2, 3) and not rle_decode("", (2, 3)).any()


@settings(max_examples=200, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_rle_round_trip(mask):
    text = rle_encode(mask)
    back = rle_decode(text, mask.shape)
    assert back.dtype == bool and np.array_equal(back, mask)
    nums = [int(v) for v in text.split()]
    assert len(nums) % 2 == 0 and sum(nums[1::2]) == mask.sum()


@given(st.integers(1, 9), st.integers(1, 9), st.booleans())
def test_rle_empty_and_full(h, w, full):
    mask = np.full((h, w), full)
    text = rle_encode(mask)
    assert text == (f"1 {h * w}" if full else "")
    assert np.array_equal(rle_decode(text, (h, w)), mask)


@pytest.mark.parametrize("text", ["1 2 3", "a b", "0 2", "1 0", "3 2 1 1", "1 2 2 2", "5 3"])
def test_rle_decode_rejects(text):
    with pytest.raises(ExportError):
        rle_decode(text, (2, 3))


def test_rle_encode_needs_2d():
    with pytest.raises(ExportError, match="2D"):
        rle_encode(np.zeros((2, 2, 2)))


def test_export_rle_3d(tmp_path, store):
    out = export_rle(store, tmp_path / "labels.csv")
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "plane", "rle"]
    lab = store.array[...]
    expected = [(z, oid) for z in range(lab.shape[0]) for oid in (1, 2, 7) if (lab[z] == oid).any()]
    assert [(int(r[1]), int(r[0])) for r in rows[1:]] == expected
    for oid, plane, text in rows[1:]:
        assert np.array_equal(rle_decode(text, lab.shape[1:]), lab[int(plane)] == int(oid))
    assert np.array_equal(read_rle_csv(out, lab.shape), lab)


def test_export_rle_2d_and_4d(tmp_path):
    lab2 = make_labels((20, 30))
    export_rle(lab2, tmp_path / "a.csv")
    with open(tmp_path / "a.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["plane"] for r in rows} == {""}
    assert np.array_equal(read_rle_csv(tmp_path / "a.csv", lab2.shape), lab2)
    lab4 = make_labels((2, 3, 10, 12))
    export_rle(lab4, tmp_path / "b.csv")
    with open(tmp_path / "b.csv", newline="") as f:
        planes = {r["plane"] for r in csv.DictReader(f)}
    assert "1 2" in planes and "0 1" not in planes  # (t, z) indices; z = 1 left empty
    assert np.array_equal(read_rle_csv(tmp_path / "b.csv", lab4.shape), lab4)


# ------------------------------------------------------------------------------ COCO
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_coco_matches_labels(tmp_path, store):
    from pycocotools.coco import COCO

    path = export_coco(store, tmp_path / "coco.json")
    lab = store.array[...]
    coco = COCO(str(path))
    assert len(coco.dataset["images"]) == lab.shape[0]
    assert [im["plane"] for im in coco.dataset["images"]] == [[z] for z in range(lab.shape[0])]
    cats = {c["name"]: c["id"] for c in coco.dataset["categories"]}
    assert cats == {"nucleus": 1, "cell": 2, "object": 3}
    n = 0
    for z in range(lab.shape[0]):
        image_id = z + 1
        img = coco.imgs[image_id]
        assert (img["height"], img["width"]) == lab.shape[1:]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert sorted(a["object_id"] for a in anns) == sorted(set(np.unique(lab[z])) - {0})
        rebuilt = np.zeros(lab.shape[1:], np.uint32)
        for a in anns:
            truth = lab[z] == a["object_id"]
            assert isinstance(a["segmentation"]["counts"], str)
            assert np.array_equal(coco.annToMask(a).astype(bool), truth)
            ref = mask_utils.encode(np.asfortranarray(truth.astype(np.uint8)))
            assert a["segmentation"]["counts"] == ref["counts"].decode()
            assert a["area"] == truth.sum()
            rows, cols = np.nonzero(truth)
            assert a["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                 rows.max() - rows.min() + 1]
            name = {1: "nucleus", 2: "cell"}.get(a["object_id"], "object")
            assert a["category_id"] == cats[name] and a["iscrowd"] == 0
            rebuilt[truth] = a["object_id"]
            n += 1
        assert np.array_equal(rebuilt, lab[z])
    assert n == len(coco.dataset["annotations"])
    assert sorted(a["id"] for a in coco.dataset["annotations"]) == list(range(1, n + 1))


def test_coco_class_names_and_image_names(tmp_path):
    lab = make_labels((2, 16, 16))
    path = export_coco(lab, tmp_path / "c.json", class_names={2: "b", 7: "a"},
                       image_names=["f0.png", "f1.png"])
    doc = json.loads(path.read_text())
    assert [c["name"] for c in doc["categories"]] == ["object", "b", "a"]
    assert [im["file_name"] for im in doc["images"]] == ["f0.png", "f1.png"]
    doc = json.loads(export_coco(lab, tmp_path / "d.json", class_names="thing").read_text())
    assert [c["name"] for c in doc["categories"]] == ["thing"]
    assert [im["file_name"] for im in doc["images"]] == ["plane_0", "plane_1"]
    with pytest.raises(ExportError, match="2 planes"):
        export_coco(lab, tmp_path / "e.json", image_names=["x"])


def test_coco_empty_labels(tmp_path):
    doc = json.loads(export_coco(np.zeros((8, 9), np.uint8), tmp_path / "c.json").read_text())
    assert doc["annotations"] == [] and len(doc["images"]) == 1
    assert doc["categories"] == [{"id": 1, "name": "object", "supercategory": ""}]


# ------------------------------------------------------------------------------ TIFF
def test_tiff_imagej_hyperstack(tmp_path, store):
    path = export_tiff(store, tmp_path / "l.tif", spacing=(2.0, 0.5, 0.25), unit="um")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        meta = tif.imagej_metadata
        assert meta["spacing"] == 2.0 and meta["unit"] == "um"
        assert meta["slices"] == store.shape[0] and meta["hyperstack"]
        assert tif.series[0].axes == "ZYX"
        data = tif.asarray()
        xres, yres = tif.pages[0].resolution
    assert (xres, yres) == pytest.approx((4.0, 2.0))
    assert data.dtype == np.uint16
    assert np.array_equal(data, store.array[...])


def test_tiff_large_ids_and_plain(tmp_path):
    lab = make_labels((3, 10, 12)).astype(np.uint32)
    lab[0, 0, 0] = 70000
    export_tiff(lab, tmp_path / "f.tif")
    back = tifffile.imread(tmp_path / "f.tif")
    assert back.dtype == np.float32 and np.array_equal(back, lab)
    lab[0, 0, 0] = 2**24 + 1
    with pytest.raises(ExportError, match="imagej=False"):
        export_tiff(lab, tmp_path / "g.tif")
    assert not (tmp_path / "g.tif").exists()
    export_tiff(lab, tmp_path / "g.tif", imagej=False)
    back = tifffile.imread(tmp_path / "g.tif")
    assert back.dtype == np.uint32 and np.array_equal(back, lab)


@pytest.mark.parametrize("shape, axes, expected", [
    ((2, 3, 8, 9), None, "TZYX"),
    ((5, 8, 9), "TYX", "TYX"),
    ((8, 9), None, "YX"),
])
def test_tiff_axes(tmp_path, shape, axes, expected):
    lab = make_labels(shape)
    export_tiff(lab, tmp_path / "a.tif", axes=axes)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == expected
        assert np.array_equal(tif.asarray(), lab)


@pytest.mark.parametrize("axes", ["ZTYX", "ZYXQ", "XY", "ZZYX"])
def test_tiff_bad_axes(tmp_path, axes):
    with pytest.raises(ExportError, match="axes"):
        export_tiff(make_labels((2, 2, 8, 9)), tmp_path / "a.tif", axes=axes)


# ------------------------------------------------------------------------------ NIfTI
@pytest.fixture
def nifti_source(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A (x=9, y=7, z=5) NIfTI image with a rotated, anisotropic, translated affine."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 100, size=(9, 7, 5)).astype(np.int16)
    data[2:5, 1:4, 1:3] = 1000  # a bright box, in the file's (x, y, z) axes
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.array([[0.8 * c, -0.6 * s, 0.0, -40.0],
                       [0.8 * s, 0.6 * c, 0.0, 12.5],
                       [0.0, 0.0, 2.5, 7.0],
                       [0.0, 0.0, 0.0, 1.0]])
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path, data, affine


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_keeps_source_affine_and_orientation(tmp_path, nifti_source, suffix):
    path, data, affine = nifti_source
    img = read_image(path)
    assert img.data.shape == (5, 7, 9)  # (z, y, x)
    store = LabelsStore.create(tmp_path / "l.zarr", img.data.shape)
    for z in range(img.data.shape[0]):
        store.write_plane(z, (np.asarray(img.data[z]) > 500).astype(np.uint32) * 3)
    store.update_provenance(source={"path": str(path), "format": "nifti",
                                    "affine": img.affine.tolist(), "spacing": list(img.spacing)})
    out = export_nifti(store, tmp_path / f"labels{suffix}")
    back = nib.load(str(out))
    assert back.shape == data.shape
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    assert back.get_data_dtype() == np.uint8
    labels_file = np.asarray(back.dataobj)
    assert np.array_equal(labels_file == 3, data > 500)  # voxel (x, y, z) for voxel
    np.testing.assert_allclose(back.header.get_zooms(), nib.load(str(path)).header.get_zooms(),
                               rtol=1e-6)
    # read_image gives the labels back in the same (z, y, x) order as the image
    again = read_image(out)
    assert np.array_equal(again.data, store.array[...])
    np.testing.assert_allclose(again.affine, img.affine, atol=1e-6)


def test_nifti_reference_explicit_affine_and_spacing(tmp_path, nifti_source):
    path, data, affine = nifti_source
    lab = (data.T > 500).astype(np.uint16) * 300  # (z, y, x), an id above 255
    export_nifti(lab, tmp_path / "r.nii", reference=path)
    back = nib.load(str(tmp_path / "r.nii"))
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    assert back.get_data_dtype() == np.uint16
    assert np.array_equal(np.asarray(back.dataobj), lab.T)
    export_nifti(lab, tmp_path / "s.nii", spacing=(2.5, 0.6, 0.8))
    back = nib.load(str(tmp_path / "s.nii"))
    np.testing.assert_allclose(back.affine, np.diag([0.8, 0.6, 2.5, 1.0]))
    with pytest.raises(ExportError, match="reference"):
        export_nifti(lab[:, :, :4], tmp_path / "t.nii", reference=path)


def test_nifti_4d_round_trip(tmp_path):
    lab = make_labels((2, 3, 10, 12))
    export_nifti(lab, tmp_path / "v.nii.gz")
    back = nib.load(str(tmp_path / "v.nii.gz"))
    assert back.shape == (12, 10, 3, 2)
    assert np.array_equal(np.asarray(back.dataobj).T, lab)
    assert np.array_equal(read_image(tmp_path / "v.nii.gz").data, lab)


# ------------------------------------------------------------------------------ zarr
def test_zarr_copy(tmp_path, store):
    export_zarr(store, tmp_path / "copy.zarr")
    copy = LabelsStore.open(tmp_path / "copy.zarr")
    assert np.array_equal(copy.array[...], store.array[...])
    got, want = copy.provenance, store.provenance
    for key in ("objects", "planes", "chunks", "source"):
        assert got.get(key) == want.get(key), key
    assert got.get("copied_runs", []) == want["runs"]  # the source's runs are kept
    assert copy.array.chunks == store.array.chunks
    assert [op.kind for op in copy.history()] == ["import"]


def test_zarr_from_array(tmp_path):
    lab = make_labels((3, 8, 9)).astype(np.int64)
    export_zarr(lab, tmp_path / "a.zarr")
    copy = LabelsStore.open(tmp_path / "a.zarr")
    assert copy.array.dtype == np.uint32 and np.array_equal(copy.array[...], lab)
    assert copy.provenance["planes"] == [[0], [2]]


# ------------------------------------------------------------------------------ all formats
@pytest.mark.parametrize("name", ["a.tif", "a.nii.gz", "a.zarr", "a.csv", "a.json"])
def test_every_writer_reads_plane_by_plane(tmp_path, name):
    lab = make_labels((4, 10, 12))
    reader = PlaneReader(lab)
    export_labels(reader, tmp_path / name)
    assert set(reader.reads) == {(z,) for z in range(4)}


def test_zarr_input_is_read_plane_by_plane(tmp_path, store, monkeypatch):
    """The store's zarr array is only ever indexed one plane at a time."""
    lab = store.array[...]
    calls: list = []
    original = zarr.Array.__getitem__

    def spy(self, key):
        calls.append(key)
        return original(self, key)

    monkeypatch.setattr(zarr.Array, "__getitem__", spy)
    for name in ["a.tif", "a.nii", "a.zarr", "a.csv", "a.json"]:
        calls.clear()
        export_labels(store, tmp_path / name)
        assert calls and all(isinstance(k, tuple) and len(k) == 1 and isinstance(k[0], int)
                             for k in calls), (name, calls[:3])
    monkeypatch.undo()
    assert np.array_equal(read_rle_csv(tmp_path / "a.csv", lab.shape), lab)


def test_dispatch_and_formats(tmp_path, store):
    assert format_from_path("x.TIFF") == "tif" and format_from_path("y.nii.gz") == "nii"
    assert format_from_path("z.csv") == "rle" and format_from_path("c.json") == "coco"
    export_labels(store, tmp_path / "labels.out", format="tiff")
    assert tifffile.TiffFile(tmp_path / "labels.out").is_imagej
    export_labels(str(store.path), tmp_path / "p.csv")  # a store given by its path
    with pytest.raises(ExportError, match="unknown export format 'png'"):
        export_labels(store, tmp_path / "x.tif", format="png")
    with pytest.raises(ExportError, match="cannot tell the export format"):
        export_labels(store, tmp_path / "x.png")
    with pytest.raises(ExportError, match="takes no option axes"):
        export_labels(store, tmp_path / "x.csv", axes="ZYX")


def test_existing_output_needs_overwrite(tmp_path, store):
    target = tmp_path / "x.tif"
    target.write_text("keep me")
    with pytest.raises(ExportError, match="already exists"):
        export_labels(store, target)
    assert target.read_text() == "keep me"
    export_labels(store, target, overwrite=True)
    assert np.array_equal(tifffile.imread(target), store.array[...])
    zdir = tmp_path / "y.zarr"
    export_labels(store, zdir)
    export_labels(np.zeros(store.shape, np.uint8), zdir, overwrite=True)
    assert not LabelsStore.open(zdir).array[...].any()
    with pytest.raises(ExportError, match="holds the labels being exported"):
        export_labels(store, store.path, overwrite=True)
    assert LabelsStore.open(store.path).array[...].any()
    folder = tmp_path / "precious.zarr"  # a folder that is not a zarr store is never deleted
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    with pytest.raises(ExportError, match="not a zarr store"):
        export_labels(store, folder, overwrite=True)
    assert (folder / "notes.txt").exists()


@pytest.mark.parametrize("name", ["a.tif", "a.nii", "a.zarr", "a.csv", "a.json"])
def test_existing_output_is_refused_before_reading(tmp_path, name):
    reader = PlaneReader(make_labels((3, 8, 9)))
    (tmp_path / name).write_text("")
    with pytest.raises(ExportError, match="already exists"):
        export_labels(reader, tmp_path / name)
    assert reader.reads == []


def test_failed_export_leaves_nothing(tmp_path):
    lab = make_labels((3, 8, 9)).astype(np.int32)
    lab[2, 0, 0] = -1  # found only when the last plane is read
    for name in ["a.tif", "a.nii", "a.zarr", "a.csv", "a.json"]:
        with pytest.raises(ExportError, match="negative"):
            export_labels(lab, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_bad_labels(tmp_path):
    with pytest.raises(ExportError, match="integers"):
        export_labels(np.zeros((4, 4), np.float32), tmp_path / "a.tif")
    with pytest.raises(ExportError, match="2 or more"):
        export_labels(np.zeros(4, np.uint8), tmp_path / "a.tif")
    with pytest.raises(ExportError, match="does not exist"):
        export_labels(np.zeros((4, 4), np.uint8), tmp_path / "no" / "a.tif")
