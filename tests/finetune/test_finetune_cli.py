"""``napari-segany finetune``: a run writes a checkpoint that --checkpoint loads; bad options."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import tifffile
from ftdata import discs

from napari_segany.cli import finetune as cmd
from napari_segany.errors import UsageError
from napari_segany.storage.labels import LabelsStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(argv):
    parser = argparse.ArgumentParser(prog="napari-segany")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd.add_parser(sub)
    args = parser.parse_args(["finetune", *argv])
    return args._run(args)


def test_finetune_a_labels_store_and_load_the_result(tmp_path, capsys):
    img, lab = discs(4)
    tifffile.imwrite(tmp_path / "img.tif", img)
    with LabelsStore.create(tmp_path / "cells.zarr", img.shape) as store:
        store.write_plane((), lab.astype(np.uint32))
    rc = _run([str(tmp_path / "img.tif"), "--labels", str(tmp_path / "cells.zarr"),
               "--out", str(tmp_path / "ft"), "--model", "sam_tiny", "--random-weights",
               "--epochs", "1", "--objects-per-step", "4", "--corrections", "0",
               "--val-fraction", "0", "--device", "cpu", "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "before training: validation IoU" in out
    assert "--model sam_tiny --checkpoint" in out and "random weights" in out
    from napari_segany.engine import load_model

    backend = load_model("sam_tiny", checkpoint=tmp_path / "ft" / "model.pt", device="cpu")
    assert backend.weights_id.startswith("sha256:")
    assert {p.name for p in (tmp_path / "ft").iterdir()} >= {
        "model.pt", "model.json", "training_log.csv", "training.png", "state.pt"}


@pytest.mark.parametrize("opt, msg", [(["--lr", "0"], "--lr must be"),
                                      (["--epochs", "0"], "--epochs must be"),
                                      (["--val-fraction", "1"], "--val-fraction must be"),
                                      (["--val-labels", "x.tif"], "--val-labels needs --val")])
def test_bad_options_are_usage_errors(tmp_path, opt, msg):
    with pytest.raises(UsageError, match=msg):
        _run(["img.tif", "--out", str(tmp_path / "o"), *opt])
    assert not (tmp_path / "o").exists()
