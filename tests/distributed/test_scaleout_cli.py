"""``napari-segany batch`` in this process (``--workers 0``): outputs, summary, reruns, job
arrays and their merge, and the errors the command gives before any work."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import tifffile
from scaleout_data import discs

from napari_segany.cli import main
from napari_segany.storage import LabelsStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = ["--model", "sam_tiny", "--random-weights", "--device", "cpu", "--points-per-side",
         "4", "--pred-iou-thresh", "0", "--stability-thresh", "0", "-q"]


def _rows(path):
    with open(path, newline="") as fh:
        return {r["key"]: r for r in csv.DictReader(fh)}


def test_batch_here_then_rerun_then_shards_and_merge(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", discs((64, 64), 3, rmax=12))
    tifffile.imwrite(folder / "b.tif", discs((48, 80), 3, seed=1, rmax=12))  # another size
    out = tmp_path / "out"
    assert main(["batch", "auto", str(folder), "--out-dir", str(out), "--workers", "0",
                 *MODEL]) == 0
    rows = _rows(out / "batch-summary.csv")
    assert {k: r["status"] for k, r in rows.items()} == {"a": "done", "b": "done"}
    assert LabelsStore.open(out / "b.zarr", mode="r").shape == (48, 80)
    assert LabelsStore.open(out / "a.zarr", mode="r").provenance["batch"]["status"] == "done"
    capsys.readouterr()
    assert main(["batch", "auto", str(folder), "--out-dir", str(out), "--workers", "0",
                 *MODEL]) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
    # a job array: two shards, then the merge
    arr = tmp_path / "arr"
    assert main(["batch", "auto", str(folder), "--out-dir", str(arr), "--workers", "0",
                 "--shard", "0/2", *MODEL]) == 0
    assert main(["batch", "auto", str(folder), "--out-dir", str(arr), "--merge", *MODEL]) == 1
    assert "shard 1 of 2 has not run" in capsys.readouterr().err
    assert main(["batch", "auto", str(folder), "--out-dir", str(arr), "--workers", "0",
                 "--shard", "1/2", *MODEL]) == 0
    assert main(["batch", "auto", str(folder), "--out-dir", str(arr), "--merge", *MODEL]) == 0
    assert {r["status"] for r in _rows(arr / "batch-summary.csv").values()} == {"done"}
    for key in ("a", "b"):
        np.testing.assert_array_equal(LabelsStore.open(arr / f"{key}.zarr", mode="r").array[...],
                                      LabelsStore.open(out / f"{key}.zarr", mode="r").array[...])


def test_errors_before_any_work(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "a.tif", discs((64, 64), 3, rmax=12))
    t0 = time.perf_counter()
    assert main(["batch", "auto", str(tmp_path / "a.tif"), "--out-dir", str(tmp_path / "o"),
                 "--scheduler", "tcp://127.0.0.1:9", "--timeout", "2", *MODEL]) == 2
    assert time.perf_counter() - t0 < 30
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
    assert main(["batch", "boxes", str(tmp_path / "a.tif"), "--blocks", "--out",
                 str(tmp_path / "b.zarr"), *MODEL]) == 2
    assert "--blocks runs segment everything" in capsys.readouterr().err
    assert main(["batch", "auto", str(tmp_path / "a.tif"), "--blocks", "--workers", "0",
                 *MODEL]) == 2
    assert "--blocks needs --out" in capsys.readouterr().err
    assert main(["batch", "auto", str(tmp_path / "nothing*.tif"), "--out-dir",
                 str(tmp_path / "o"), "--workers", "0", *MODEL]) == 2
    assert "matched no images" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "b.zarr").exists()
