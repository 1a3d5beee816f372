"""Tests for the command line (napari_segany.cli.main) with tiny random-weight models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_segany import __version__
from napari_segany.cli import main
from napari_segany.storage import LabelsStore

TINY = ["--model", "sam_tiny", "--random-weights", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test here may touch the network or the user's model cache."""
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    monkeypatch.setenv("NAPARI_SEGANY_CACHE_DIR", str(tmp_path / "model-cache"))


@pytest.fixture
def tiff2d(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    img = rng.integers(100, 400, size=(96, 128)).astype(np.uint16)
    img[30:70, 20:60] += 3000
    path = tmp_path / "img2d.tif"
    tifffile.imwrite(path, img)
    return path


@pytest.fixture
def tiff3d(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    vol = rng.integers(100, 400, size=(5, 64, 80)).astype(np.uint16)
    vol[:, 20:40, 20:50] += 2500
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, vol)
    return path


def object_ids(plane: np.ndarray) -> set[int]:
    return set(np.unique(plane).tolist()) - {0}


def assert_user_error(capsys, code: int, *needles: str) -> str:
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-segany:"), err
    for needle in needles:
        assert needle in err, err
    return err


# -- successful runs ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["sam2_tiny", "sam_tiny"])
def test_segment_sample(tmp_path, capsys, model):
    out_dir = tmp_path / "out"
    code = main(["segment", "--sample", "nuclei", "--out", str(out_dir), "--model", model,
                 "--random-weights", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    store = LabelsStore.open(out_dir / "labels.zarr")
    assert store.shape == (256, 256)
    plane = store.read_plane()
    assert object_ids(plane) == {1}
    assert store.provenance["objects"] == {"1": {}}
    assert store.provenance["model"]["name"] == model
    assert store.provenance["model"]["weights"] == "random-seed0"
    with Image.open(out_dir / "overlay.png") as im:
        assert im.size == (256, 256)
        assert im.mode == "RGB"
    assert f"model {model}" in out
    assert "object 1:" in out and "IoU with ground truth" in out
    assert "meaningless" in out


def test_segment_user_tiff_points_and_box(tmp_path, tiff2d, capsys):
    out_dir = tmp_path / "out"
    code = main(["segment", str(tiff2d), "--points", "30,40;50,60", "--point-labels", "1,0",
                 "--box", "10,10,80,80", "--out", str(out_dir), *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    store = LabelsStore.open(out_dir / "labels.zarr")
    assert store.shape == (96, 128)
    assert object_ids(store.read_plane()) <= {1}
    prov = store.provenance
    assert prov["prompts"] == {
        "1": {"points": [[30.0, 40.0], [50.0, 60.0]], "labels": [1, 0],
              "box": [10.0, 10.0, 80.0, 80.0]}
    }
    assert prov["plane"] == []
    with Image.open(out_dir / "overlay.png") as im:
        assert im.size == (128, 96)
    assert "object 1:" in out and "object 2" not in out


def test_segment_3d_tiff_on_a_plane(tmp_path, tiff3d, capsys):
    out_dir = tmp_path / "out"
    code = main(["segment", str(tiff3d), "--box", "15,15,55,45", "--plane", "2",
                 "--out", str(out_dir), *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    store = LabelsStore.open(out_dir / "labels.zarr")
    assert store.shape == (5, 64, 80)
    assert store.provenance["planes"] == [[2]]
    assert store.provenance["plane"] == [2]
    for z in (0, 1, 3, 4):
        assert not store.read_plane(z).any()
    assert object_ids(store.read_plane(2)) <= {1}
    with Image.open(out_dir / "overlay.png") as im:
        assert im.size == (80, 64)
    assert "(2,)" in out


def test_two_boxes_make_two_objects(tmp_path, tiff2d, capsys):
    out_dir = tmp_path / "out"
    code = main(["segment", str(tiff2d), "--box", "5,5,40,40", "--box", "70,50,120,90",
                 "--out", str(out_dir), *TINY])
    out, err = capsys.readouterr()
    assert code == 0, err
    store = LabelsStore.open(out_dir / "labels.zarr")
    assert set(store.provenance["objects"]) == {"1", "2"}
    assert store.provenance["prompts"]["1"]["box"] == [5.0, 5.0, 40.0, 40.0]
    assert store.provenance["prompts"]["2"]["box"] == [70.0, 50.0, 120.0, 90.0]
    assert object_ids(store.read_plane()) <= {1, 2}
    assert "object 1:" in out and "object 2:" in out
    assert store.next_object_id() == 3


def test_running_twice_continues_the_store(tmp_path, tiff2d, capsys):
    out_dir = tmp_path / "out"
    args = ["--out", str(out_dir), *TINY]
    assert main(["segment", str(tiff2d), "--box", "5,5,40,40", *args]) == 0
    store = LabelsStore.open(out_dir / "labels.zarr")
    first = store.read_plane()
    assert set(store.provenance["objects"]) == {"1"}
    capsys.readouterr()

    assert main(["segment", str(tiff2d), "--box", "70,50,120,90", *args]) == 0
    out, _ = capsys.readouterr()
    assert "object 2:" in out and "object 1:" not in out
    store = LabelsStore.open(out_dir / "labels.zarr")
    second = store.read_plane()
    assert set(store.provenance["objects"]) == {"1", "2"}
    # Object 1 is kept as it was (overlap "keep"); object 2 only took background pixels.
    assert np.array_equal(second == 1, first == 1)
    assert object_ids(second) <= {1, 2}
    assert not (second == 2)[first != 0].any()
    # Both runs' prompts stay in the provenance.
    assert store.provenance["prompts"]["1"]["box"] == [5.0, 5.0, 40.0, 40.0]
    assert store.provenance["prompts"]["2"]["box"] == [70.0, 50.0, 120.0, 90.0]


def test_overwrite_starts_again(tmp_path, tiff2d, capsys):
    out_dir = tmp_path / "out"
    args = [str(tiff2d), "--box", "5,5,40,40", "--out", str(out_dir), *TINY]
    assert main(["segment", *args]) == 0
    assert main(["segment", *args, "--overwrite"]) == 0
    store = LabelsStore.open(out_dir / "labels.zarr")
    assert set(store.provenance["objects"]) == {"1"}


def test_checkpoint_works_offline(tmp_path, tiff2d, capsys):
    import torch

    from napari_segany.engine.registry import load_model

    backend = load_model("sam_tiny", random_weights=True, device="cpu", seed=3)
    ckpt = tmp_path / "tiny_sam.pth"
    torch.save(backend.model.state_dict(), ckpt)
    out_dir = tmp_path / "out"
    code = main(["segment", str(tiff2d), "--box", "10,10,80,80", "--out", str(out_dir),
                 "--model", "sam_tiny", "--checkpoint", str(ckpt), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    store = LabelsStore.open(out_dir / "labels.zarr")
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert store.provenance["model"]["weights"] == f"sha256:{sha}"
    assert "meaningless" not in out
    assert not (tmp_path / "model-cache").exists() or not any((tmp_path / "model-cache").iterdir())


# -- user errors ----------------------------------------------------------------------------


def test_missing_file(tmp_path, capsys):
    code = main(["segment", str(tmp_path / "nope.tif"), "--box", "1,1,5,5",
                 "--out", str(tmp_path / "out"), *TINY])
    assert_user_error(capsys, code, "nope.tif", "not found")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--points", "1,2;3"], ["--points", "'1,2;3'"]),
        (["--points", "a,b"], ["--points", "'a,b'"]),
        (["--points", "1,2;3,4", "--point-labels", "1"], ["--point-labels", "2 values"]),
        (["--points", "1,2", "--point-labels", "2"], ["--point-labels", "'2'"]),
        (["--point-labels", "1"], ["--point-labels", "without --points"]),
        (["--box", "1,2,3"], ["--box", "'1,2,3'"]),
        (["--box", "1,2,x,4"], ["--box", "'1,2,x,4'"]),
        (["--box", "40,40,10,10"], ["box"]),  # x1 < x0
        ([], ["--points", "--box"]),  # no prompt at all on a user image
    ],
)
def test_malformed_prompts(tmp_path, tiff2d, capsys, extra, needles):
    code = main(["segment", str(tiff2d), *extra, "--out", str(tmp_path / "out"), *TINY])
    assert_user_error(capsys, code, *needles)
    assert not (tmp_path / "out" / "labels.zarr").exists()


@pytest.mark.parametrize("box", ["500,500,600,600", "-50,-50,-10,-10", "10,200,20,300"])
def test_box_outside_image(tmp_path, tiff2d, capsys, box):
    # "--box=..." so that argparse takes a negative box as a value, not an option.
    code = main(["segment", str(tiff2d), f"--box={box}", "--out", str(tmp_path / "out"), *TINY])
    assert_user_error(capsys, code, "outside", "128x96")


def test_plane_out_of_range(tmp_path, tiff3d, capsys):
    code = main(["segment", str(tiff3d), "--box", "1,1,20,20", "--plane", "9",
                 "--out", str(tmp_path / "out"), *TINY])
    assert_user_error(capsys, code, "(9,)", "(5,)")


def test_plane_on_2d_image(tmp_path, tiff2d, capsys):
    code = main(["segment", str(tiff2d), "--box", "1,1,20,20", "--plane", "0",
                 "--out", str(tmp_path / "out"), *TINY])
    assert_user_error(capsys, code, "(0,)")


def test_unknown_model(tmp_path, tiff2d, capsys):
    code = main(["segment", str(tiff2d), "--box", "1,1,20,20", "--out", str(tmp_path / "out"),
                 "--model", "sam_vit_q", "--random-weights"])
    err = assert_user_error(capsys, code, "'sam_vit_q'")
    assert "sam_vit_b" in err  # lists the known names


@pytest.mark.parametrize("model", ["sam_tiny", "sam2_tiny"])
def test_tiny_model_needs_random_weights(tmp_path, tiff2d, capsys, model):
    code = main(["segment", str(tiff2d), "--box", "1,1,20,20", "--out", str(tmp_path / "out"),
                 "--model", model, "--device", "cpu"])
    assert_user_error(capsys, code, f"'{model}'", "no published weights")


def test_offline_default_model_points_to_checkpoint(tmp_path, tiff2d, capsys):
    code = main(["segment", str(tiff2d), "--box", "1,1,20,20", "--out", str(tmp_path / "out"),
                 "--device", "cpu"])
    err = assert_user_error(capsys, code, "--checkpoint", "offline")
    assert "sam2.1_hiera_tiny" in err
    assert "--random-weights" in err
    assert not (tmp_path / "out" / "labels.zarr").exists()


def test_store_of_another_shape(tmp_path, tiff2d, tiff3d, capsys):
    out_dir = tmp_path / "out"
    assert main(["segment", str(tiff2d), "--box", "1,1,20,20", "--out", str(out_dir), *TINY]) == 0
    capsys.readouterr()
    before = LabelsStore.open(out_dir / "labels.zarr").read_plane()
    code = main(["segment", str(tiff3d), "--box", "1,1,20,20", "--out", str(out_dir), *TINY])
    assert_user_error(capsys, code, "(96, 128)", "(5, 64, 80)")
    assert np.array_equal(LabelsStore.open(out_dir / "labels.zarr").read_plane(), before)


# -- other commands -------------------------------------------------------------------------


def test_models_lists_registry(capsys):
    assert main(["models"]) == 0
    out, _ = capsys.readouterr()
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert "sam_vit_b" in names and "sam2.1_hiera_tiny" in names
    assert "sam_tiny" in names
    assert names == sorted(names)
    line = next(ln for ln in out.splitlines() if ln.startswith("sam_vit_b "))
    assert " sam " in line and "vit_b" in line


def test_segment_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["segment", "--help"])
    assert info.value.code == 0
    out, _ = capsys.readouterr()
    for option in ("--points", "--point-labels", "--box", "--plane", "--out", "--model",
                   "--checkpoint", "--random-weights"):
        assert option in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_missing_command_and_missing_out(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["segment", "--sample", "nuclei"])
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err
