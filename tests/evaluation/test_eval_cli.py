"""``napari-segany evaluate`` with tiny random-weight models: outputs, several models, exit 2
with one line naming the file on bad input."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from test_eval_protocols import discs

from napari_segany.cli import main
from napari_segany.evaluation import read_rows

TINY = ["--random-weights", "--device", "cpu"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    monkeypatch.setenv("NAPARI_SEGANY_CACHE_DIR", str(tmp_path / "model-cache"))


@pytest.fixture
def pair(tmp_path):
    img, lab = discs(2, size=64)
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    return tmp_path / "img.tif", tmp_path / "lab.tif"


def test_two_models_one_run(pair, tmp_path, capsys):
    img, lab = pair
    out = tmp_path / "out"
    rc = main(["evaluate", str(img), "--labels", str(lab), "--model", "sam_tiny",
               "--model", "sam2_tiny", "--iterations", "2", "--out", str(out), "-q", *TINY])
    text = capsys.readouterr().out
    assert rc == 0
    assert "sam_tiny" in text and "sam2_tiny" in text and "iou_first" in text
    assert "random weights" in text
    rows = read_rows(out / "results.csv")
    assert {r["model"] for r in rows} == {"sam_tiny", "sam2_tiny"} and len(rows) == 2 * 2 * 3
    prompts = json.loads((out / "prompts.json").read_text())
    assert list(prompts) == ["img"]
    assert (out / "plots" / "iou_vs_clicks.png").exists()
    # again: everything is finished, nothing is recomputed
    rc = main(["evaluate", str(img), "--labels", str(lab), "--model", "sam_tiny",
               "--model", "sam2_tiny", "--iterations", "2", "--out", str(out), "-q", *TINY])
    assert rc == 0 and len(read_rows(out / "results.csv")) == 12
    summary = json.loads((out / "summary.json").read_text())
    assert summary["timing"]["sam_tiny"]["embeddings"]["computed"] == 1


def test_volume_protocol_from_nifti(tmp_path, capsys):
    truth = np.zeros((6, 48, 48), np.uint8)
    truth[1:5, 10:30, 12:34] = 1
    vol = (truth.astype(np.int16) * 300 - 100).astype(np.int16)
    aff = np.diag([0.8, 0.8, 3.0, 1.0])
    nib.save(nib.Nifti1Image(vol.T, aff), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(truth.T, aff), tmp_path / "ct_seg.nii.gz")
    out = tmp_path / "out"
    rc = main(["evaluate", str(tmp_path / "ct.nii.gz"), "--labels",
               str(tmp_path / "ct_seg.nii.gz"), "--protocol", "volume", "--model", "sam2_tiny",
               "--window", "-160,240", "--tolerance", "3", "--out", str(out), "-q", *TINY])
    assert rc == 0
    rows = read_rows(out / "results.csv")
    assert {r["method"] for r in rows} == {"slice", "sam2"}
    assert all(r["nsd"] is not None for r in rows if r["source"] == "volume")
    assert (out / "plots" / "dice_per_object.png").exists()
    assert "dice" in capsys.readouterr().out


@pytest.mark.parametrize("case, expect", [
    ("shape", "lab.tif: labels of shape (10, 10) do not match"),
    ("model", "unknown model 'no_such'"),
    ("missing", "labels not found"),
    ("nomodel", "give --model and/or --checkpoint"),
])
def test_bad_input_exits_2_with_one_line(pair, tmp_path, capsys, case, expect):
    img, lab = pair
    args = ["evaluate", str(img), "--labels", str(lab), "--model", "sam_tiny",
            "--out", str(tmp_path / "out"), "-q", *TINY]
    if case == "shape":
        tifffile.imwrite(lab, np.ones((10, 10), np.uint8))
    elif case == "model":
        args[args.index("sam_tiny")] = "no_such"
    elif case == "missing":
        args[args.index(str(lab))] = str(tmp_path / "nope.tif")
    else:
        del args[args.index("--model"):args.index("--model") + 2]
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("napari-segany: error:")
    assert expect in err


def test_a_bad_pair_in_a_folder_keeps_the_good_ones(tmp_path, capsys):
    img, lab = discs(2, size=64)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", img)
    tifffile.imwrite(tmp_path / "labels" / "a.tif", lab)
    tifffile.imwrite(tmp_path / "images" / "b.tif", img)
    (tmp_path / "labels" / "b.tif").write_bytes(b"this is not a tiff")
    out = tmp_path / "out"
    rc = main(["evaluate", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
               "--model", "sam_tiny", "--iterations", "1", "--out", str(out), "-q", *TINY])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "b.tif" in err
    assert {r["dataset"] for r in read_rows(out / "results.csv")} == {"a"}
