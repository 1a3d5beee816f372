"""The ``auto`` and ``boxes`` commands, called through ``napari_segany.cli.main``:
tiny random-weight models for smoke runs, the deterministic RuleBackend (registered as a
model for the duration of a test) for exact results, and user errors (exit 2, one line)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_segany.cli import main
from napari_segany.engine import registry
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend
from testdata import DATA

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAM = ["--model", "sam_tiny", "--random-weights", "--device", "cpu"]
SAM2 = ["--model", "sam2_tiny", "--random-weights", "--device", "cpu"]
RULE = ["--model", "rule_test", "--random-weights", "--device", "cpu"]
KEEP_ALL = ["--pred-iou-thresh=-1e9", "--stability-thresh=-1e9", "--min-area", "0", "-q"]


@pytest.fixture(autouse=True)
def _offline_with_rule_model(monkeypatch, tmp_path):
    """No network; a 'rule_test' model (the RuleBackend) in the registry for this test only."""
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    monkeypatch.setenv("NAPARI_SEGANY_CACHE_DIR", str(tmp_path / "model-cache"))
    registry._load_entry_points()
    monkeypatch.setitem(registry._FAMILIES, "rule", lambda spec, sd, **kw: RuleBackend())
    monkeypatch.setitem(registry._MODELS, "rule_test",
                        registry.ModelSpec("rule_test", "rule", "rule"))


def run(argv: list[str]) -> int:
    return main([str(a) for a in argv])


def stack(shape=(4, 60, 90)) -> np.ndarray:
    """uint16 stack: a square moving right 4 px per plane, a second one from plane 2 on."""
    vol = np.full(shape, 300, np.uint16)
    for z in range(shape[0]):
        vol[z, 10:26, 6 + 4 * z:22 + 4 * z] = 3000
        if z >= 2:
            vol[z, 36:52, 60:76] = 3000
    return vol


@pytest.fixture
def tif3d(tmp_path) -> Path:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack(), photometric="minisblack")
    return path


def one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-segany: error:") and "\n" not in err, err
    for n in needles:
        assert n in err, err


# ----------------------------------------------------------------------------------- auto
def test_auto_links_objects_through_a_stack(tif3d, tmp_path, capsys):
    out = tmp_path / "auto.zarr"
    assert run(["auto", tif3d, "--out", out, "--points-per-side", "8", "-q", *RULE]) == 0
    text = capsys.readouterr().out
    assert "2 objects linked across planes (ids 1..2)" in text and f"wrote {out}" in text
    store = LabelsStore.open(out)
    assert store.shape == (4, 60, 90)
    assert {int(store.read_plane(z)[18, 14 + 4 * z]) for z in range(4)} == {1}
    assert {int(store.read_plane(z)[44, 68]) for z in (2, 3)} == {2}
    prov = store.provenance
    assert prov["auto"]["settings"]["points_per_side"] == 8
    assert prov["source"]["path"].endswith("stack.tif") and prov["model"]["name"] == "rule"
    # a store of another shape is refused before any work; --overwrite replaces it
    assert run(["auto", tif3d, "--out", out, "--range", "1:3", "--no-link", *RULE]) == 0
    assert "\n0 objects\n" in capsys.readouterr().out  # labelled pixels are kept
    tifffile.imwrite(tmp_path / "2d.tif", stack()[0])
    assert run(["auto", tmp_path / "2d.tif", "--out", out, *RULE]) == 2
    one_line_error(capsys, "(4, 60, 90)")
    assert run(["auto", tmp_path / "2d.tif", "--out", out, "--overwrite", *RULE]) == 0


@pytest.mark.parametrize("model", [SAM, SAM2])
def test_auto_smoke_with_tiny_models(tmp_path, capsys, model):
    img = np.random.default_rng(0).integers(0, 4000, (2, 72, 96)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "noise.tif", img)
    out = tmp_path / "o.zarr"
    code = run(["auto", tmp_path / "noise.tif", "--out", out, "--points-per-side", "3",
                "--cache", tmp_path / "emb", *KEEP_ALL, *model])
    assert code == 0, capsys.readouterr().err
    assert "random weights" in capsys.readouterr().out
    labels = LabelsStore.open(out).array[...]
    assert labels.dtype == np.uint32 and labels.shape == (2, 72, 96)
    assert (tmp_path / "emb" / "zarr.json").exists()


def test_auto_tiles_large_planes(tmp_path, capsys):
    img = np.full((150, 200), 10, np.uint8)
    img[60:90, 70:130] = 250  # across tile borders
    tifffile.imwrite(tmp_path / "big.tif", img)
    out = tmp_path / "t.zarr"
    assert run(["auto", tmp_path / "big.tif", "--out", out, "--tile", "64", "--halo", "8",
                "--points-per-side", "8", "--cache", tmp_path / "tiles", "-q", *RULE]) == 0
    assert "tiles of (64, 64) per plane" in capsys.readouterr().out
    labels = LabelsStore.open(out).read_plane()
    assert np.array_equal(labels, (img > 100).astype(np.uint32))
    assert LabelsStore.open(out).provenance["auto"]["tiling"]["tile"] == 64


def test_auto_tiled_smoke_with_tiny_sam2(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (150, 200)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "n.tif", img)
    assert run(["auto", tmp_path / "n.tif", "--out", tmp_path / "o.zarr", "--tile", "128",
                "--points-per-side", "2", *KEEP_ALL, *SAM2]) == 0
    assert LabelsStore.open(tmp_path / "o.zarr").read_plane().shape == (150, 200)


@pytest.mark.parametrize("argv,needles", [
    (["--range", "0:9"], ["--range"]),
    (["--axis", "3"], ["--axis 3"]),
    (["--tile", "8"], ["--tile 8"]),
    (["--tile", "64", "--halo", "40"], ["--halo 40"]),
    (["--max-overlap", "2"], ["max_overlap"]),
    (["--generator", "model"], ["of its own"]),
    (["--link-iou", "1.5"], ["--link-iou"]),
])
def test_auto_user_errors(tif3d, tmp_path, capsys, argv, needles):
    assert run(["auto", tif3d, "--out", tmp_path / "x.zarr", *argv, *RULE]) == 2
    one_line_error(capsys, *needles)
    assert not (tmp_path / "x.zarr").exists() or "--generator" in argv


def test_auto_user_errors_on_2d_images_and_missing_files(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "2d.tif", stack()[0])
    assert run(["auto", tmp_path / "2d.tif", "--out", tmp_path / "o.zarr", "--range", "0:1",
                *RULE]) == 2
    one_line_error(capsys, "2D")
    assert run(["auto", tmp_path / "missing.tif", "--out", tmp_path / "o.zarr", *RULE]) == 2
    one_line_error(capsys, "missing.tif")


# ----------------------------------------------------------------------------------- boxes
def test_boxes_from_csv_on_a_stack(tif3d, tmp_path, capsys):
    csv = tmp_path / "det.csv"
    csv.write_text("plane,x0,y0,x1,y1,class,score\n"
                   "0,6,10,21,25,cell,0.9\n"
                   "2,14,10,29,25,,0.8\n"
                   "2,60,36,75,51,bead,0.7\n")
    out = tmp_path / "b.zarr"
    assert run(["boxes", tif3d, "--boxes", csv, "--out", out, "--class", "thing",
                "--chunk-size", "1", "-q", *RULE]) == 0
    text = capsys.readouterr().out
    assert "3 boxes on 2 plane(s)" in text and "3 objects (ids 1..3)" in text
    assert "classes: bead, cell, thing" in text
    store = LabelsStore.open(out)
    truth = stack()
    assert np.array_equal(store.read_plane(0), (truth[0] > 1000).astype(np.uint32))
    p2 = store.read_plane(2)
    assert np.all(p2[10:26, 14:30] == 2) and np.all(p2[36:52, 60:76] == 3)
    assert (p2 > 0).sum() == 2 * 16 * 16 and not store.read_plane(1).any()
    classes = {k: v.get("class_name") for k, v in store.provenance["objects"].items()}
    assert classes == {"1": "cell", "2": "thing", "3": "bead"}


def test_boxes_from_json_tiled_with_ids(tmp_path, capsys):
    img = np.full((150, 200), 10, np.uint8)
    img[60:90, 70:130] = 250
    img[10:20, 10:20] = 250
    tifffile.imwrite(tmp_path / "big.tif", img)
    doc = {"format": "napari-segany.boxes", "version": 1,
           "boxes": [{"box": [70, 60, 129, 89], "class": "big", "id": 9},
                     {"bbox": [10, 10, 9, 9], "class": "small"}]}
    (tmp_path / "b.json").write_text(json.dumps(doc))
    out = tmp_path / "j.zarr"
    assert run(["boxes", tmp_path / "big.tif", "--boxes", tmp_path / "b.json", "--out", out,
                "--tile", "64", "--halo", "8", "-q", *RULE]) == 0
    labels = LabelsStore.open(out).read_plane()
    assert np.all(labels[60:90, 70:130] == 9) and np.all(labels[10:20, 10:20] == 10)
    assert (labels > 0).sum() == 30 * 60 + 100


def test_boxes_smoke_with_tiny_sam(tif3d, tmp_path, capsys):
    (tmp_path / "b.csv").write_text("plane,x0,y0,x1,y1\n1,10,10,25,25\n1,60,36,75,51\n")
    assert run(["boxes", tif3d, "--boxes", tmp_path / "b.csv", "--out", tmp_path / "s.zarr",
                "--multimask", "-q", *SAM]) == 0
    assert "random weights" in capsys.readouterr().out
    assert LabelsStore.open(tmp_path / "s.zarr").provenance["boxes"]["n_boxes"] == 2


@pytest.mark.parametrize("content,needles", [
    ("x0,y0,x1,y1\n1,2,3,4\n", ["no plane", "leading axes"]),
    ("plane,x0,y0,x1,y1\n7,1,2,3,4\n", ["b.csv line 2", "plane [7]"]),
    ("plane,x0,y0,x1,y1\n0,500,2,600,4\n", ["outside"]),
    ("plane,a,b\n0,1,2\n", ["lacks box columns"]),
])
def test_boxes_user_errors(tif3d, tmp_path, capsys, content, needles):
    (tmp_path / "b.csv").write_text(content)
    assert run(["boxes", tif3d, "--boxes", tmp_path / "b.csv", "--out", tmp_path / "x.zarr",
                *RULE]) == 2
    one_line_error(capsys, *needles)
    assert not (tmp_path / "x.zarr").exists()


def test_boxes_missing_file_and_bad_chunks(tif3d, tmp_path, capsys):
    assert run(["boxes", tif3d, "--boxes", tmp_path / "none.csv", "--out",
                tmp_path / "x.zarr", *RULE]) == 2
    one_line_error(capsys, "none.csv")
    assert run(["boxes", tif3d, "--boxes", tmp_path / "none.csv", "--out",
                tmp_path / "x.zarr", "--chunk-size", "0", *RULE]) == 2
    one_line_error(capsys, "--chunk-size")


@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")
def test_real_nuclei_auto_command(tmp_path, capsys):
    out = tmp_path / "nuclei.zarr"
    assert run(["auto", DATA / "stardist" / "img2d.tif", "--out", out, "--points-per-side",
                "3", *KEEP_ALL, *SAM]) == 0
    store = LabelsStore.open(out)
    assert store.shape == (512, 512) and store.provenance["auto"]["tiling"] is None
