"""Inputs: file pairs, folders, CTC and DAVIS layouts, arrays, a labels store as prediction;
and bad input: one clear message naming the file, rows finished before it kept."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image
from test_eval_protocols import discs

from napari_segany.evaluation import (
    AutomaticSettings,
    FilePair,
    InteractiveSettings,
    Sample,
    VolumeSettings,
    as_samples,
    ctc_pairs,
    davis_pairs,
    evaluate,
    find_samples,
    folder_pairs,
    read_labels,
    read_rows,
)
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend
from testdata import DATA

QUICK = InteractiveSettings(n_iterations=1)


def _write_pair(folder, stem, img, lab, *, label_stem=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    tifffile.imwrite(folder / "images" / f"{stem}.tif", img)
    tifffile.imwrite(folder / "labels" / f"{label_stem or stem}.tif", lab)


def test_folder_pairs_by_stem_and_suffix(tmp_path):
    img, lab = discs(3)
    _write_pair(tmp_path, "a", img, lab)
    _write_pair(tmp_path, "b", img, lab, label_stem="b_mask")
    pairs = folder_pairs(tmp_path / "images", tmp_path / "labels")
    assert [(p.name, p.labels.name) for p in pairs] == [("a", "a.tif"), ("b", "b_mask.tif")]
    assert find_samples(tmp_path / "images", tmp_path / "labels") == pairs
    tifffile.imwrite(tmp_path / "images" / "c.tif", img)
    with pytest.raises(ValueError, match=r"no labels for image .*c\.tif"):
        folder_pairs(tmp_path / "images", tmp_path / "labels")


def test_ctc_layouts(tmp_path):
    img, lab = discs(3)
    root = tmp_path / "DS"
    (root / "01").mkdir(parents=True)
    (root / "01_GT" / "SEG").mkdir(parents=True)
    tifffile.imwrite(root / "01" / "t003.tif", img)
    tifffile.imwrite(root / "01_GT" / "SEG" / "man_seg003.tif", lab)
    pairs = ctc_pairs(tmp_path)  # one level down
    assert [p.name for p in pairs] == ["DS/01/t003"]
    assert pairs[0].image == root / "01" / "t003.tif"
    res = evaluate(pairs, [RuleBackend()], protocol="interactive", settings=QUICK)
    assert {r["dataset"] for r in res.rows} == {"DS/01/t003"}


def test_ctc_shared_data_layout():
    root = DATA / "ctc_2d_nuclei"
    if not root.exists():
        pytest.skip(f"real data not found: {root}")
    pairs = ctc_pairs(root)
    names = [p.name for p in pairs]
    assert len(pairs) == 10 and "N2DH-GOWT1/t21" in names and "N2DL-HeLa/t13" in names
    s = pairs[0].load()
    assert s.shape == np.asarray(s.truth).shape


def test_davis_layout_binary_and_palette_masks(tmp_path):
    seq_img = tmp_path / "JPEGImages" / "480p" / "cat"
    seq_ann = tmp_path / "Annotations" / "480p" / "cat"
    seq_img.mkdir(parents=True)
    seq_ann.mkdir(parents=True)
    for t in range(3):
        frame = np.zeros((32, 48, 3), np.uint8)
        frame[5:15, 5 + t:20 + t] = 200
        Image.fromarray(frame).save(seq_img / f"{t:05d}.jpg")
        mask = np.zeros((32, 48), np.uint8)
        mask[5:15, 5 + t:20 + t] = 255
        Image.fromarray(mask).save(seq_ann / f"{t:05d}.png")
    pairs = davis_pairs(tmp_path)
    s = pairs[0].load()
    assert s.name == "cat" and s.rgb and s.shape == (3, 32, 48)
    assert np.unique(np.asarray(s.truth)).tolist() == [0, 1]  # 255 -> object 1
    pal = Image.fromarray(np.array([[0, 1], [2, 2]], np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    assert read_labels(tmp_path / "pal.png").tolist() == [[0, 1], [2, 2]]  # indices kept
    (seq_ann / "00002.png").unlink()
    with pytest.raises(ValueError, match="every frame needs one"):
        davis_pairs(tmp_path)


def test_arrays_dicts_and_lists():
    img, lab = discs(2)
    assert [s.name for s in as_samples((img, lab))] == ["array"]
    assert [s.name for s in as_samples({"x": (img, lab), "y": (img, lab)})] == ["x", "y"]
    assert [s.name for s in as_samples([(img, lab), (img, lab)])] == ["array0", "array1"]
    with pytest.raises(TypeError, match="cannot evaluate"):
        as_samples(42)


def test_a_labels_store_as_the_prediction(tmp_path):
    img, lab = discs(4)
    store = LabelsStore.create(tmp_path / "pred.zarr", lab.shape)
    store.write_plane((), lab.astype(np.uint32))
    store.close()
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    pair = FilePair(tmp_path / "img.tif", tmp_path / "lab.tif", "d",
                    prediction=tmp_path / "pred.zarr")
    res = evaluate(pair, protocol="automatic", settings=AutomaticSettings())
    plane = next(r for r in res.rows if r["source"] == "plane")
    assert plane["model"] == "prediction" and plane["method"] == "prediction"
    assert plane["msa"] == 1.0
    with pytest.raises(ValueError, match="interactive protocol needs a model"):
        evaluate(pair, protocol="interactive")


def test_nifti_pair_spacing_and_volume_prediction(tmp_path):
    truth = np.zeros((6, 20, 24), np.uint8)
    truth[1:5, 5:15, 6:18] = 1
    vol = (truth * 200 + 10).astype(np.int16)
    aff = np.diag([0.8, 0.7, 2.5, 1.0])
    nib.save(nib.Nifti1Image(vol.T, aff), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(truth.T, aff), tmp_path / "ct_seg.nii.gz")
    pairs = find_samples(tmp_path / "ct.nii.gz", tmp_path / "ct_seg.nii.gz")
    s = pairs[0].load()
    assert s.spacing == pytest.approx((2.5, 0.7, 0.8)) and s.unit == "mm"
    pred = np.roll(truth, 1, axis=2) * 5  # another id, shifted 1 voxel (0.8 mm) in x
    res = evaluate(Sample("ct", vol, truth, spacing=s.spacing, prediction=pred),
                   protocol="volume", settings=VolumeSettings(tolerance=1.0))
    row = next(r for r in res.rows if r["source"] == "volume")
    assert row["object_id"] == 1 and row["dice"] < 1.0 and row["nsd"] == 1.0


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, match", [
    ("shape", r"bad\.tif: labels of shape \(10, 10\) do not match"),
    ("float", r"bad\.tif: labels hold non-integer values"),
    ("empty", r"bad\.tif: the ground truth holds no objects"),
    ("rgb", r"labels .*bad\.png are a colour image"),
])
def test_bad_labels_name_the_file_and_keep_finished_rows(tmp_path, bad, match):
    img, lab = discs(3)
    _write_pair(tmp_path, "a_good", img, lab)
    tifffile.imwrite(tmp_path / "images" / "b.tif", img)
    if bad == "shape":
        tifffile.imwrite(tmp_path / "labels" / "bad.tif", np.ones((10, 10), np.uint8))
    elif bad == "float":
        tifffile.imwrite(tmp_path / "labels" / "bad.tif", lab.astype(np.float32) + 0.5)
    elif bad == "empty":
        tifffile.imwrite(tmp_path / "labels" / "bad.tif", np.zeros_like(lab))
    else:
        Image.fromarray(np.zeros((96, 96, 3), np.uint8)).save(tmp_path / "labels" / "bad.png")
    ext = "png" if bad == "rgb" else "tif"
    pairs = [
        FilePair(tmp_path / "images" / "a_good.tif", tmp_path / "labels" / "a_good.tif", "a"),
        FilePair(tmp_path / "images" / "b.tif", tmp_path / "labels" / f"bad.{ext}", "b")]
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        evaluate(pairs, [RuleBackend()], settings=QUICK, out=out)
    rows = read_rows(out / "results.csv")
    assert {r["dataset"] for r in rows} == {"a"} and len(rows) == 3 * 2
    summary = json.loads((out / "summary.json").read_text())
    assert "bad." in summary["error"]


def test_float_labels_with_integer_values_are_accepted():
    img, lab = discs(2)
    res = evaluate(Sample("f", img, lab.astype(np.float64)), [RuleBackend()], settings=QUICK)
    assert len(res.rows) == 4


def test_model_errors(tmp_path):
    img, lab = discs(2)
    with pytest.raises(ValueError, match="unknown model 'no_such_model'"):
        evaluate(Sample("d", img, lab), ["no_such_model"])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        evaluate(Sample("d", img, lab), checkpoints=[tmp_path / "missing.pth"])
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"model 'broken' cannot be loaded"):
        evaluate(Sample("d", img, lab), [RuleBackend(), broken], settings=QUICK, out=out,
                 device="cpu")
    assert {r["model"] for r in read_rows(out / "results.csv")} == {"rule"}


def test_zarr_and_png_pairs(tmp_path):
    import zarr

    img, lab = discs(3)
    zarr.create_array(str(tmp_path / "img.zarr"), data=img)
    zarr.create_array(str(tmp_path / "lab.zarr"), data=lab)
    Image.fromarray(img).save(tmp_path / "img.png")
    Image.fromarray(lab.astype(np.uint8)).save(tmp_path / "img_mask.png")
    for image, labels in (("img.zarr", "lab.zarr"), ("img.png", "img_mask.png")):
        pairs = find_samples(tmp_path / image, tmp_path / labels)
        res = evaluate(pairs, [RuleBackend()], settings=QUICK)
        assert {r["object_id"] for r in res.rows} == {1, 2, 3}
        assert all(r["iou"] == 1.0 for r in res.rows), image
