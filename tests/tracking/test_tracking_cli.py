"""The ``track`` command and ``evaluate --protocol tracking``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from cell_movie import TRUE_PARENTS, LineageBackend, cell_movie

from napari_segany import Session
from napari_segany.cli import main
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.tracking import TrackSettings, export_ctc, track


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    image, truth = cell_movie()
    tifffile.imwrite(d / "cells.tif", image)
    tifffile.imwrite(d / "seeds.tif", truth[0])
    export_ctc(truth, d / "gt", parents=TRUE_PARENTS, kind="truth")
    session = Session(image, LineageBackend(image, truth), labels=d / "perfect.zarr")
    prompts = PromptSet()
    for oid, (x, y) in {1: (40, 15), 2: (60, 50), 3: (15, 75)}.items():
        prompts.add((0,), oid, ObjectPrompt(points=[[x, y]]))
    track(session, prompts, settings=TrackSettings(min_area=10))
    session.close()
    return d


def test_evaluate_scores_a_tracked_store(files, capsys):
    out = files / "ev"
    assert main(["evaluate", str(files / "gt"), "--protocol", "tracking", "--prediction",
                 str(files / "perfect.zarr"), "--out", str(out)]) == 0
    row = json.loads((out / "tracking.json").read_text())["rows"][0]
    assert row["valid"] == 1 and row["TRA"] == pytest.approx(1.0)
    assert row["division_f1"] == pytest.approx(1.0)
    assert "TRA" in (out / "tracking.csv").read_text().splitlines()[0]
    assert "division_f1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--out", "o"], "give the objects one way"),
    (["--cell", "5,5", "--seeds", "seeds.tif", "--out", "o"], "one way"),
    (["--cell", "500,5", "--out", "o"], "outside"),
    (["--cell", "5,5", "--frame", "40", "--out", "o"], "not a frame"),
    (["--cell", "5,5;6,6", "--out", "o"], "one click"),
    (["--cell", "5,5", "--division-frames", "0", "--out", "o"], ">= 1"),
])
def test_track_refuses_bad_input_before_loading_a_model(files, capsys, argv, message,
                                                        monkeypatch):
    monkeypatch.chdir(files)
    assert main(["track", "cells.tif", *argv, "--random-weights"]) == 2
    assert message in capsys.readouterr().err
    assert not (files / "o").exists()


@pytest.fixture(scope="module")
def small(files):
    """The first 4 frames, 64 x 64, with seeds and truth, for runs of a tiny model."""
    image, truth = cell_movie()
    tifffile.imwrite(files / "small.tif", image[:4, :64, :64], photometric="minisblack")
    tifffile.imwrite(files / "small_seeds.tif", truth[0, :64, :64])
    tifffile.imwrite(files / "small_truth.tif", truth[:4, :64, :64], photometric="minisblack")
    return files


@pytest.mark.slow
def test_track_command_writes_store_csv_ctc_and_movie(small, capsys, one_torch_thread):
    files = small
    out = files / "run"
    assert main(["track", str(files / "small.tif"), "--seeds", str(files / "small_seeds.tif"),
                 "--model", "sam_tiny", "--random-weights", "--movie", "--out", str(out),
                 "-q"]) == 0
    for name in ("labels.zarr", "tracks.csv", "ctc/res_track.txt", "ctc/mask003.tif",
                 "overlay.mp4"):
        assert (out / name).exists(), name
    from napari_segany.io import VideoFile

    assert VideoFile(out / "overlay.mp4").shape == (4, 64, 64, 3)
    assert "tracks" in capsys.readouterr().out
    assert np.asarray(tifffile.imread(out / "ctc" / "mask000.tif")).dtype == np.uint16
    # the overlay movie again through 'export', from the source the store recorded
    assert main(["export", str(out / "labels.zarr"), "--format", "mp4", "--fps", "5",
                 "--out", str(files / "again.mkv")]) == 0
    again = VideoFile(files / "again.mkv")
    assert again.shape == (4, 64, 64, 3) and again.fps == 5
    first = VideoFile(out / "overlay.mp4")[2].astype(int)  # the same picture, re-encoded
    assert np.abs(again[2].astype(int) - first).mean() < 4
    assert main(["export", str(out / "labels.zarr"), "--fps", "5",
                 "--out", str(files / "x.tif")]) == 2
    assert "--fps applies to --format mp4" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_tracks_with_a_model_and_scores_it(small, capsys, one_torch_thread):
    out = small / "ev_model"
    assert main(["evaluate", str(small / "small.tif"), "--labels",
                 str(small / "small_truth.tif"), "--protocol", "tracking", "--model",
                 "sam_tiny", "--random-weights", "--out", str(out)]) == 0
    rows = json.loads((out / "tracking.json").read_text())["rows"]
    assert [(r["model"], r["method"]) for r in rows] == [("sam_tiny", "slice")]
    assert 0.0 <= rows[0]["TRA"] <= 1.0 and rows[0]["valid"] in (0, 1)
    text = capsys.readouterr().out
    assert "meaningless" in text and "tracking.csv" in text
