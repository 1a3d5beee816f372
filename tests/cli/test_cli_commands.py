"""End-to-end tests of the propagate, embed and export commands (and image inputs) with
tiny random-weight models, offline."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from napari_segany.cli import main
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.storage import LabelsStore

SAM = ["--model", "sam_tiny", "--random-weights", "--device", "cpu"]
SAM2 = ["--model", "sam2_tiny", "--random-weights", "--device", "cpu"]
# random weights give meaningless masks and scores: never stop a slice-wise walk
KEEP_GOING = ["--min-score", "-1e9", "--min-area", "0", "--max-area-ratio", "inf", "-q"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test here may touch the network or the user's model cache."""
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    monkeypatch.setenv("NAPARI_SEGANY_CACHE_DIR", str(tmp_path / "model-cache"))


def volume(shape=(4, 48, 56), seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.integers(100, 400, size=shape).astype(np.uint16)
    vol[..., 15:35, 20:40] += 2500
    return vol


@pytest.fixture
def tiff3d(tmp_path) -> Path:
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, volume(), photometric="minisblack")
    return path


@pytest.fixture
def nifti(tmp_path) -> tuple[Path, np.ndarray]:
    """(x=40, y=32, z=3) int16 CT-like volume with a rotated, anisotropic affine."""
    rng = np.random.default_rng(2)
    data = rng.integers(-200, 0, size=(40, 32, 3)).astype(np.int16)
    data[10:30, 8:24, :] = 80
    c, s = np.cos(0.4), np.sin(0.4)
    affine = np.array([[0.7 * c, -0.9 * s, 0, -20.0], [0.7 * s, 0.9 * c, 0, 5.0],
                       [0, 0, 3.0, 40.0], [0, 0, 0, 1]])
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    return path, affine


def run_ok(capsys, argv: list[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    return out


def assert_user_error(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-segany: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


def written_planes(store: LabelsStore) -> list[int]:
    return [z for z in range(store.shape[0]) if store.read_plane(z).any()]


# ---------------------------------------------------------------------------- propagate
def test_propagate_box_slicewise(tmp_path, tiff3d, capsys):
    out = tmp_path / "out.zarr"
    text = run_ok(capsys, ["propagate", str(tiff3d), "--box", "18,12,42,38", "--plane", "1",
                           "--percentiles", "2,98", "--out", str(out), *KEEP_GOING, *SAM])
    store = LabelsStore.open(out)
    assert store.shape == (4, 48, 56)
    prov = store.provenance
    assert prov["propagation"]["method"] == "slice" and prov["propagation"]["axis"] == 0
    assert prov["prompts"]["planes"][0]["plane"] == [1]
    assert prov["source"]["format"] == "tiff" and prov["source"]["path"] == str(tiff3d)
    assert prov["objects"] == {"1": {}}
    assert prov["normalization"]["mode"] == "percentile"
    assert set(np.unique(store.array[...])) <= {0, 1}
    assert "object 1: 4 planes, planes 0..3" in text and "meaningless" in text


def test_propagate_direction_range_and_second_object(tmp_path, tiff3d, capsys):
    out = tmp_path / "out.zarr"
    run_ok(capsys, ["propagate", str(tiff3d), "--box", "18,12,42,38", "--plane", "1",
                    "--direction", "forward", "--range", "1:3", "--out", str(out),
                    *KEEP_GOING, *SAM])
    store = LabelsStore.open(out)
    assert written_planes(store) == [1, 2]
    assert store.provenance["propagation"]["planes"] == [1, 3]
    # a second run adds object 2 and keeps object 1
    before = store.array[...]
    text = run_ok(capsys, ["propagate", str(tiff3d), "--points", "30,25", "--plane", "2",
                           "--direction", "backward", "--out", str(out), *KEEP_GOING, *SAM])
    assert "object 2:" in text and "object 1" not in text
    after = LabelsStore.open(out).array[...]
    assert np.array_equal(after == 1, before == 1)
    assert set(LabelsStore.open(out).provenance["objects"]) == {"1", "2"}


def test_propagate_prompts_json_sam2(tmp_path, tiff3d, capsys):
    prompts = PromptSet()
    prompts.add((0,), 3, ObjectPrompt(box=[18, 12, 42, 38]))
    prompts.add((3,), 3, ObjectPrompt(points=[[30, 25]], labels=[1]))
    prompts.add((3,), 5, ObjectPrompt(points=[[5, 5], [8, 8]], labels=[1, 0]))
    pfile = tmp_path / "prompts.json"
    pfile.write_text(json.dumps(prompts.to_dict()))
    out = tmp_path / "out.zarr"
    text = run_ok(capsys, ["propagate", str(tiff3d), "--prompts", str(pfile), "--method", "sam2",
                           "--out", str(out), "-q", *SAM2])
    store = LabelsStore.open(out)
    assert set(store.provenance["objects"]) == {"3", "5"}  # ids from the file
    assert PromptSet.from_dict(store.provenance["prompts"]) == prompts
    assert store.provenance["propagation"]["method"] == "sam2"
    assert set(np.unique(store.array[...])) <= {0, 3, 5}
    assert "object 3: 4 planes" in text and "object 5:" in text


def test_propagate_4d_along_axis_1(tmp_path, capsys):
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, volume((2, 3, 40, 48)), photometric="minisblack")
    out = tmp_path / "o.zarr"
    run_ok(capsys, ["propagate", str(path), "--box", "18,12,42,38", "--plane", "1",
                    "--plane", "0", "--axis", "1", "--window", "ct_soft_tissue",
                    "--out", str(out), *KEEP_GOING, *SAM])
    store = LabelsStore.open(out)
    assert store.shape == (2, 3, 40, 48)
    assert store.provenance["planes"] == [[1, 0], [1, 1], [1, 2]]
    assert store.provenance["propagation"]["axis"] == 1
    assert store.provenance["normalization"]["low"] == [-160.0]
    for z in range(3):
        assert not store.read_plane((0, z)).any()


def test_embed_is_resumable_and_feeds_propagate(tmp_path, tiff3d, capsys):
    cache = tmp_path / "cache"
    out = run_ok(capsys, ["embed", str(tiff3d), "--cache", str(cache), "-q", *SAM])
    assert "computed 4 plane embeddings" in out and "4 of 4 planes cached" in out
    out = run_ok(capsys, ["embed", str(tiff3d), "--cache", str(cache), "-q", *SAM])
    assert "computed 0 plane embeddings" in out
    out = run_ok(capsys, ["propagate", str(tiff3d), "--box", "18,12,42,38", "--plane", "1",
                          "--cache", str(cache), "--out", str(tmp_path / "o.zarr"),
                          *KEEP_GOING, *SAM])
    assert "(0 planes embedded)" in out
    # other intensity settings make other embeddings: the cache refuses them
    assert_user_error(capsys, ["embed", str(tiff3d), "--cache", str(cache), "--percentiles",
                               "5,95", "-q", *SAM], "normalization")


def test_embed_progress_goes_to_stderr(tmp_path, tiff3d, capsys):
    code = main(["embed", str(tiff3d), "--cache", str(tmp_path / "c"), *SAM])
    out, err = capsys.readouterr()
    assert code == 0
    assert "embedding" in err and "4/4" in err
    assert "embedding" not in out.replace("plane embeddings", "")


# ---------------------------------------------------------------------------- image inputs
def test_nifti_to_nii_export_keeps_affine(tmp_path, nifti, capsys):
    path, affine = nifti
    out = tmp_path / "o.zarr"
    run_ok(capsys, ["propagate", str(path), "--box", "8,10,24,30", "--plane", "1",
                    "--window", "-160,240", "--out", str(out), *KEEP_GOING, *SAM])
    store = LabelsStore.open(out)
    assert store.shape == (3, 32, 40)  # (z, y, x)
    assert store.provenance["normalization"]["mode"] == "window"
    assert store.provenance["normalization"]["low"] == [-160.0]
    store.write_plane(2, np.pad(np.full((16, 20), 9, np.uint32), ((8, 8), (10, 10))))
    run_ok(capsys, ["export", str(out), "--format", "nii", "--out", str(tmp_path / "l.nii.gz")])
    back = nib.load(str(tmp_path / "l.nii.gz"))
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    data = np.asarray(back.dataobj)
    assert data.shape == (40, 32, 3)  # the source file's (x, y, z)
    assert np.array_equal(data.T, store.array[...])
    # the painted box covers the bright box of the source volume, voxel for voxel
    src = np.asarray(nib.load(str(path)).dataobj)
    assert np.array_equal(data[..., 2] == 9, src[..., 2] == 80)


@pytest.mark.parametrize("kind", ["png", "rgb_png", "npy", "zarr", "frames", "tiff4d_rgb"])
def test_image_inputs(tmp_path, capsys, kind):
    vol = volume((3, 40, 48))
    if kind == "png":
        path = tmp_path / "a.png"
        Image.fromarray((vol[0] // 16).astype(np.uint8)).save(path)
        shape = (40, 48)
    elif kind == "rgb_png":
        path = tmp_path / "a.png"
        Image.fromarray(np.stack([(vol[0] // 16).astype(np.uint8)] * 3, -1)).save(path)
        shape = (40, 48)
    elif kind == "npy":
        path = tmp_path / "a.npy"
        np.save(path, vol)
        shape = vol.shape
    elif kind == "zarr":
        path = tmp_path / "a.zarr"
        zarr.create_array(str(path), data=vol, chunks=(1, 40, 48))
        shape = vol.shape
    elif kind == "frames":
        path = tmp_path / "frames"
        path.mkdir()
        for t in range(3):
            Image.fromarray((vol[t] // 16).astype(np.uint8)).save(path / f"f{t:03d}.png")
        shape = vol.shape
    else:
        path = tmp_path / "rgb.tif"
        tifffile.imwrite(path, np.stack([(vol // 16).astype(np.uint8)] * 3, -1))
        shape = vol.shape
    extra = ["--rgb"] if kind == "tiff4d_rgb" else []
    plane = ["--plane", "1"] if len(shape) == 3 else []
    run_ok(capsys, ["segment", str(path), "--box", "18,12,42,38", *plane, *extra,
                    "--out", str(tmp_path / "out"), *SAM])
    store = LabelsStore.open(tmp_path / "out" / "labels.zarr")
    assert store.shape == shape
    assert store.provenance["source"]["format"] == {
        "png": "png", "rgb_png": "png", "npy": "npy", "zarr": "zarr", "frames": "frames",
        "tiff4d_rgb": "tiff"}[kind]
    if kind == "frames":  # COCO file names are the frame names
        run_ok(capsys, ["export", str(tmp_path / "out"), "--out", str(tmp_path / "c.json")])
        doc = json.loads((tmp_path / "c.json").read_text())
        assert [im["file_name"] for im in doc["images"]] == ["f000.png", "f001.png", "f002.png"]


def test_channel_axis(tmp_path, capsys):
    vol = volume((3, 40, 48))
    path = tmp_path / "czyx.tif"
    tifffile.imwrite(path, np.stack([vol, vol[::-1], vol // 2, vol // 3]),  # (C, Z, Y, X)
                     photometric="minisblack")
    run_ok(capsys, ["embed", str(path), "--channel-axis", "0", "--channels", "0,2",
                    "--percentiles", "2,98", "--cache", str(tmp_path / "c"), "-q", *SAM])
    out = tmp_path / "o.zarr"
    run_ok(capsys, ["propagate", str(path), "--channel-axis", "0", "--channels", "0,2",
                    "--percentiles", "2,98", "--cache", str(tmp_path / "c"), "--box",
                    "18,12,42,38", "--plane", "0", "--out", str(out), *KEEP_GOING, *SAM])
    store = LabelsStore.open(out)
    assert store.shape == (3, 40, 48)
    assert store.provenance["normalization"]["channels"] == [0, 2]
    assert_user_error(capsys, ["embed", str(path), "--channel-axis", "0", "--cache",
                               str(tmp_path / "d"), *SAM], "channels")


# ---------------------------------------------------------------------------- export
@pytest.fixture
def labels_store(tmp_path) -> Path:
    lab = np.zeros((3, 20, 24), np.uint32)
    lab[0, 2:8, 3:9] = 1
    lab[1, 5:15, 10:20] = 2
    lab[2, 0:4, 0:4] = 1
    store = LabelsStore.create(tmp_path / "l.zarr", lab.shape)
    for z in range(3):
        store.write_plane(z, lab[z])
    store.set_object(1, class_name="nucleus")
    store.set_object(2)
    return store.path


@pytest.mark.parametrize("fmt, name", [("tif", "x.tif"), ("zarr", "x.zarr"), ("nii", "x.nii"),
                                       ("rle", "x.csv"), ("coco", "x.json"), (None, "y.tif")])
def test_export_formats(tmp_path, labels_store, capsys, fmt, name):
    from napari_segany.exports import read_rle_csv

    lab = LabelsStore.open(labels_store).array[...]
    target = tmp_path / name
    argv = ["export", str(labels_store), "--out", str(target)]
    out = run_ok(capsys, argv + (["--format", fmt] if fmt else []))
    assert f"wrote {target}" in out
    if name.endswith(".tif"):
        with tifffile.TiffFile(target) as tif:
            assert tif.is_imagej and tif.series[0].axes == "ZYX"
            assert np.array_equal(tif.asarray(), lab)
    elif name.endswith(".zarr"):
        assert np.array_equal(LabelsStore.open(target).array[...], lab)
    elif name.endswith(".nii"):
        assert np.array_equal(np.asarray(nib.load(str(target)).dataobj).T, lab)
    elif name.endswith(".csv"):
        assert np.array_equal(read_rle_csv(target, lab.shape), lab)
    else:
        doc = json.loads(target.read_text())
        assert {c["name"] for c in doc["categories"]} == {"nucleus", "object"}
        assert len(doc["images"]) == 3 and len(doc["annotations"]) == 3
    # a second export to the same place is refused unless --overwrite
    assert_user_error(capsys, argv + (["--format", fmt] if fmt else []), "already exists")
    run_ok(capsys, argv + (["--format", fmt] if fmt else []) + ["--overwrite"])


def test_export_options(tmp_path, labels_store, capsys):
    run_ok(capsys, ["export", str(labels_store), "--out", str(tmp_path / "a.tif"),
                    "--axes", "TYX", "--spacing", "1,0.5,0.5", "--unit", "um"])
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.imagej_metadata["unit"] == "um"
    run_ok(capsys, ["export", str(labels_store), "--out", str(tmp_path / "b.tif"),
                    "--no-imagej"])
    assert tifffile.imread(tmp_path / "b.tif").dtype == np.uint32
    run_ok(capsys, ["export", str(labels_store), "--out", str(tmp_path / "c.json"),
                    "--class-name", "2=cell", "--class-name", "1=nuc"])
    doc = json.loads((tmp_path / "c.json").read_text())
    assert [c["name"] for c in doc["categories"]] == ["nuc", "cell"]


def test_export_segment_folder(tmp_path, capsys):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, volume((40, 48)))
    run_ok(capsys, ["segment", str(path), "--box", "18,12,42,38", "--out",
                    str(tmp_path / "seg"), *SAM])
    run_ok(capsys, ["export", str(tmp_path / "seg"), "--out", str(tmp_path / "x.json")])
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["images"][0]["file_name"] == "a.tif"


@pytest.mark.parametrize("extra, needles", [
    (["--format", "png"], ["unknown export format 'png'", "tif"]),
    (["--axes", "ZYX", "--format", "rle"], ["--axes", "tif"]),
    (["--reference", "nope.nii", "--format", "nii"], ["nope.nii", "not found"]),
    (["--class-name", "x=cell", "--class-name", "2=b"], ["--class-name", "'x=cell'"]),
    (["--spacing", "1,a"], ["--spacing"]),
    (["--axes", "ZTYX"], ["axes 'ZTYX'", "3 labels axes"]),
])
def test_export_bad_options(tmp_path, labels_store, capsys, extra, needles):
    out = "x.json" if "--class-name" in extra else "x.tif"
    assert_user_error(capsys, ["export", str(labels_store), "--out", str(tmp_path / out),
                               *extra], *needles)
    assert not (tmp_path / out).exists()


def test_export_not_a_store(tmp_path, tiff3d, capsys):
    assert_user_error(capsys, ["export", str(tiff3d), "--out", str(tmp_path / "x.tif")],
                      "not a napari-segany labels store")
    plain = tmp_path / "plain.zarr"
    zarr.create_array(str(plain), shape=(4, 4), dtype="uint32")
    assert_user_error(capsys, ["export", str(plain), "--out", str(tmp_path / "x.tif")],
                      "not written by napari-segany")
    assert_user_error(capsys, ["export", str(tmp_path / "none.zarr"), "--out",
                               str(tmp_path / "x.tif")], "not found")
    assert_user_error(capsys, ["export", str(plain), "--out", str(tmp_path / "x.png")],
                      "cannot tell the export format")


# ---------------------------------------------------------------------------- user errors
@pytest.fixture
def prompts_file(tmp_path):
    def write(content) -> str:
        path = tmp_path / "p.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    return write


def _prompt_dict(plane, box=(18, 12, 42, 38)):
    return {"format": "napari-segany.prompts", "version": 1, "planes": [
        {"plane": plane, "objects": [{"id": 1, "points": [], "labels": [], "box": list(box),
                                      "mask": None}]}]}


@pytest.mark.parametrize("make, needles", [
    (lambda w: w("{not json"), ["not valid JSON"]),
    (lambda w: w({"planes": []}), ["napari-segany.prompts"]),
    (lambda w: w(_prompt_dict([9])), ["plane (9,)", "(4,)"]),
    (lambda w: w(_prompt_dict([0, 1])), ["plane (0, 1)"]),
    (lambda w: w(_prompt_dict([1], box=(500, 500, 600, 600))), ["outside", "56x48"]),
    (lambda w: w({"format": "napari-segany.prompts", "version": 1, "planes": [{"plane": [1]}]}),
     ["malformed"]),
    (lambda w: "nothing-here.json", ["not found", "nothing-here.json"]),
])
def test_bad_prompts_file(tmp_path, tiff3d, capsys, prompts_file, make, needles):
    assert_user_error(capsys, ["propagate", str(tiff3d), "--prompts", make(prompts_file),
                               "--out", str(tmp_path / "o.zarr"), *SAM], *needles)
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.parametrize("extra, needles", [
    (["--box", "1,1,20,20"], ["--plane"]),
    (["--box", "1,1,20,20", "--plane", "7"], ["(7,)", "(4,)"]),
    (["--box", "1,1,20,20", "--plane", "1", "--plane", "1"], ["(1, 1)"]),
    (["--box=500,1,600,20", "--plane", "1"], ["outside", "56x48"]),
    (["--points", "1,2;3", "--plane", "1"], ["--points"]),
    (["--box", "1,1,20,20", "--plane", "1", "--axis", "1"], ["--axis 1"]),
    (["--box", "1,1,20,20", "--plane", "1", "--range", "2-3"], ["--range"]),
    (["--box", "1,1,20,20", "--plane", "1", "--range", "2:9"], ["--range 2:9", "0:4"]),
    (["--box", "1,1,20,20", "--plane", "1", "--range", "2:4"], ["outside --range"]),
    (["--box", "1,1,20,20", "--plane", "1", "--window", "ct_x"], ["--window"]),
    (["--box", "1,1,20,20", "--plane", "1", "--window", "1,2", "--percentiles", "1,99"],
     ["--window", "--percentiles"]),
    (["--box", "1,1,20,20", "--plane", "1", "--percentiles", "99,1"], ["percentiles"]),
    (["--box", "1,1,20,20", "--plane", "1", "--channels", "0,1"], ["--channels"]),
    (["--box", "1,1,20,20", "--plane", "1", "--channel-axis", "5"], ["--channel-axis 5"]),
    (["--box", "1,1,20,20", "--plane", "1", "--rgb"], ["--rgb", "(4, 48, 56)"]),
    (["--box", "1,1,20,20", "--plane", "1", "--prompts", "p.json"], ["--prompts"]),
    ([], ["--prompts", "--box"]),
])
def test_propagate_bad_arguments(tmp_path, tiff3d, capsys, extra, needles):
    assert_user_error(capsys, ["propagate", str(tiff3d), *extra, "--out",
                               str(tmp_path / "o.zarr"), *SAM], *needles)
    assert not (tmp_path / "o.zarr").exists()


def test_propagate_2d_image_and_missing_file(tmp_path, capsys):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, volume((40, 48)))
    assert_user_error(capsys, ["propagate", str(path), "--box", "1,1,20,20", "--plane", "0",
                               "--out", str(tmp_path / "o.zarr"), *SAM], "2D", "segment")
    assert_user_error(capsys, ["propagate", str(tmp_path / "nope.tif"), "--box", "1,1,20,20",
                               "--plane", "0", "--out", str(tmp_path / "o.zarr"), *SAM],
                      "nope.tif", "not found")
    assert_user_error(capsys, ["embed", str(tmp_path / "nope.nii.gz"), "--cache",
                               str(tmp_path / "c"), *SAM], "not found")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti file")
    assert_user_error(capsys, ["embed", str(bad), "--cache", str(tmp_path / "c"), *SAM],
                      "bad.nii.gz")


def test_sam2_method_needs_sam2_model(tmp_path, tiff3d, capsys):
    assert_user_error(capsys, ["propagate", str(tiff3d), "--box", "1,1,20,20", "--plane", "1",
                               "--method", "sam2", "--out", str(tmp_path / "o.zarr"), *SAM],
                      "--method sam2", "SAM2")


def test_store_of_another_shape_is_refused(tmp_path, tiff3d, capsys):
    LabelsStore.create(tmp_path / "o.zarr", (2, 3))
    assert_user_error(capsys, ["propagate", str(tiff3d), "--box", "1,1,20,20", "--plane", "1",
                               "--out", str(tmp_path / "o.zarr"), *SAM], "(2, 3)", "(4, 48, 56)")


@pytest.mark.parametrize("command, options", [
    ("segment", ["--points", "--box", "--plane", "--out", "--window", "--percentiles",
                 "--rgb", "--channel-axis", "--model", "--checkpoint", "--device",
                 "--random-weights"]),
    ("propagate", ["--prompts", "--points", "--box", "--plane", "--axis", "--method",
                   "--direction", "--range", "--cache", "--out", "--window", "--percentiles",
                   "--rgb", "--channel-axis", "--model", "--checkpoint", "--device",
                   "--random-weights", "meaningless"]),
    ("embed", ["--cache", "--batch-size", "--window", "--model", "--random-weights"]),
    ("export", ["--format", "tif", "zarr", "nii", "rle", "coco", "--out", "--overwrite"]),
    ("models", []),
    ("auto", ["--out", "--model", "--window"]),  # from _cli_auto, wired into the parser
    ("boxes", ["--boxes", "--out", "--model"]),
])
def test_help(capsys, command, options):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for option in options:
        assert option in out


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("segment", "propagate", "auto", "boxes", "embed", "export", "models"):
        assert command in out
