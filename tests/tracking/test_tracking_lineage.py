"""Tracking with divisions on a synthetic movie, scored by the CTC metrics package.

The perfect model (:class:`cell_movie.LineageBackend`) answers each prompt with the union
of the true cells overlapping it, so a division reaches the tracker as a split mask; the
tracker must recover the lineage exactly and score TRA = 1.0 with ``py-ctcmetrics``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from cell_movie import NOISE_FRAME, TRUE_PARENTS, LineageBackend, cell_movie

from napari_segany import Session
from napari_segany.errors import TrackingError
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.tracking import (
    TrackSettings,
    correct_track,
    export_ctc,
    export_tracks_csv,
    mark_division,
    read_ctc,
    scan_tracks,
    track,
    tracking_metrics,
    tracks_layer_data,
)

CENTRES = {1: (40, 15), 2: (60, 50), 3: (15, 75)}  # (x, y) on frame 0


@pytest.fixture()
def movie():
    return cell_movie()


def _session(movie, tmp_path, name="labels.zarr"):
    image, truth = movie
    return Session(image, LineageBackend(image, truth), labels=tmp_path / name)


def _prompts():
    prompts = PromptSet()
    for oid, (x, y) in CENTRES.items():
        prompts.add((0,), oid, ObjectPrompt(points=[[x, y]], labels=[1]))
    return prompts


def _match(truth: np.ndarray, pred: np.ndarray) -> dict[int, int]:
    """true id -> predicted id, by the most overlapping pixels over the movie."""
    out = {}
    for tid in np.unique(truth[truth > 0]):
        ids, counts = np.unique(pred[truth == tid], return_counts=True)
        counts[ids == 0] = 0
        out[int(tid)] = int(ids[np.argmax(counts)])
    return out


def _digest(folder: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(folder)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def test_perfect_model_recovers_the_lineage_and_tra_is_one(movie, tmp_path):
    image, truth = movie
    session = _session(movie, tmp_path)
    result = track(session, _prompts(), settings=TrackSettings(division_frames=3, min_area=10))
    labels = np.asarray(session.labels.array[:])
    match = _match(truth, labels)
    assert len(set(match.values())) == 7  # seven tracks, one per true cell
    np.testing.assert_array_equal(labels > 0, truth > 0)
    inverse = {p: t for t, p in match.items()}
    np.testing.assert_array_equal(np.vectorize(lambda v: inverse.get(int(v), 0))(labels), truth)
    # the lineage: exactly the true parent links, divisions on the true frames
    lineage = result.lineage
    got = {inverse[d]: inverse[t.parent] for d, t in lineage.items() if t.parent}
    assert got == TRUE_PARENTS
    assert sorted((inverse[d.parent], d.frame) for d in result.divisions) == [(2, 8), (4, 14)]
    for tid, pid in match.items():
        frames = np.flatnonzero((truth == tid).any(axis=(1, 2)))
        assert (lineage[pid].start, lineage[pid].end) == (frames[0], frames[-1])
    # the split of cell 1 on NOISE_FRAME healed: no division of cell 1
    assert lineage[match[1]].end == image.shape[0] - 1 and not lineage.children(match[1])
    assert len(np.unique(truth[NOISE_FRAME][truth[NOISE_FRAME] > 0])) == 3
    # the registry keeps the lineage
    objects = session.labels.objects
    for d, p in got.items():
        assert objects[match[d]]["parent"] == match[p]
        assert objects[match[d]]["track_start"] == lineage[match[d]].start
    assert objects[match[1]]["parent"] == 0

    # CTC files validate with the metrics package, and score perfectly
    res = export_ctc(session.labels, tmp_path / "01_RES")
    gt = export_ctc(truth, tmp_path / "01_GT", parents=TRUE_PARENTS, kind="truth")
    assert (res / "res_track.txt").is_file() and (res / "mask000.tif").is_file()
    assert len(list(res.glob("mask*.tif"))) == image.shape[0]
    scores = tracking_metrics(res, gt)
    assert scores["valid"] == 1
    assert scores["TRA"] == pytest.approx(1.0)
    assert scores["DET"] == pytest.approx(1.0)
    assert scores["SEG"] == pytest.approx(1.0)
    assert scores["division_f1"] == pytest.approx(1.0)
    assert scores["divisions_true"] == 2 and scores["division_tp"] == 2
    # the store can be scored directly too, and read back
    assert tracking_metrics(session.labels, gt)["TRA"] == pytest.approx(1.0)
    back, back_lineage = read_ctc(res)
    np.testing.assert_array_equal(back, labels)
    assert back_lineage.graph() == lineage.graph()


def test_a_wrong_result_scores_below_one(movie, tmp_path):
    image, truth = movie
    gt = export_ctc(truth, tmp_path / "gt", parents=TRUE_PARENTS, kind="truth")
    no_divisions = truth.copy()
    no_divisions[np.isin(no_divisions, [4, 5, 6, 7])] = 2  # one cell that never divides
    scores = tracking_metrics(no_divisions, gt)
    assert scores["valid"] == 1
    assert scores["TRA"] < 0.99
    assert scores["division_f1"] == 0.0 and scores["division_fn"] == 2


def test_undo_reverts_a_tracking_run_with_its_lineage(movie, tmp_path):
    session = _session(movie, tmp_path)
    track(session, _prompts(), settings=TrackSettings(min_area=10))
    assert session.labels.array[:].any()
    undone = session.undo()
    assert "tracking" in undone.message
    assert not np.asarray(session.labels.array[:]).any()
    assert all("parent" not in info for info in session.labels.objects.values())


def test_persistence_k_decides_what_is_a_division(movie, tmp_path):
    image, truth = movie
    session = _session(movie, tmp_path)
    result = track(session, _prompts(), settings=TrackSettings(division_frames=7, min_area=10))
    # daughters 6, 7 live 6 frames (14..19): with K=7 that split never counts
    assert [(d.frame) for d in result.divisions] == [8]
    assert len(result.lineage.divisions()) == 1


def test_mark_division_and_correct_track(movie, tmp_path):
    image, truth = movie
    session = _session(movie, tmp_path)
    # K larger than the movie: no division is found, cell 2 stays one (split) object
    track(session, _prompts(), settings=TrackSettings(division_frames=50, min_area=10))
    assert not scan_tracks(session.labels).lineage.divisions()
    # mark the first division by hand: two daughter clicks on frame 8
    res = mark_division(session, 2, 8, [ObjectPrompt(points=[[53, 50]]),
                                        ObjectPrompt(points=[[67, 50]])],
                        settings=TrackSettings(division_frames=3, min_area=10))
    lineage = scan_tracks(session.labels).lineage
    d4, d5 = res.divisions[0].daughters
    assert lineage[2].end == 7 and lineage[d4].parent == 2 and lineage[d5].parent == 2
    assert lineage[d4].start == lineage[d5].start == 8
    assert sorted(lineage.children(d4)) == sorted(res.divisions[1].daughters)  # found itself
    gt = export_ctc(truth, tmp_path / "gt", parents=TRUE_PARENTS, kind="truth")
    assert tracking_metrics(session.labels, gt)["TRA"] == pytest.approx(1.0)
    # correct track 2 from frame 8 (the frame after its end): it follows daughter 4 only;
    # the old daughters are replaced, and the second division is found again as 2's
    out = correct_track(session, 2, 8, ObjectPrompt(points=[[53, 50]]),
                        settings=TrackSettings(division_frames=3, min_area=10))
    lineage = scan_tracks(session.labels).lineage
    assert lineage[2].start == 0 and lineage[2].end == 13
    assert d4 not in lineage and d5 not in lineage  # removed with the correction
    assert [d.parent for d in out.divisions] == [2]
    assert sorted(lineage.children(2)) == sorted(out.divisions[0].daughters)
    assert session.undo().message.startswith("Undid correction of track 2")
    lineage = scan_tracks(session.labels).lineage
    assert lineage[2].end == 7 and lineage[d4].parent == 2  # back to the marked division


def test_bad_input_changes_nothing(movie, tmp_path):
    image, truth = movie
    session = _session(movie, tmp_path)
    track(session, _prompts(), settings=TrackSettings(min_area=10))
    before = _digest(session.labels.path)
    point = ObjectPrompt(points=[[53, 50]])
    with pytest.raises(TrackingError, match="no track 99"):
        correct_track(session, 99, 3, point)
    with pytest.raises(TrackingError, match="ends on frame 7"):
        correct_track(session, 2, 12, point)
    with pytest.raises(TrackingError, match="two or more daughter"):
        mark_division(session, 1, 5, [point])
    with pytest.raises(TrackingError, match="not on frame 18"):
        mark_division(session, 2, 19, [point, ObjectPrompt(points=[[67, 50]])])
    with pytest.raises(TrackingError, match="finds no object"):
        correct_track(session, 1, 4, ObjectPrompt(points=[[100, 90]]))
    with pytest.raises(ValueError, match="outside"):
        correct_track(session, 1, 4, ObjectPrompt(points=[[500, 50]]))
    bad = PromptSet()
    bad.add((25,), 9, point)
    with pytest.raises(TrackingError, match="not a frame"):
        track(session, bad)
    with pytest.raises(TrackingError, match="division_frames"):
        TrackSettings(division_frames=0)
    assert _digest(session.labels.path) == before
    volume = Session(np.zeros((3, 4, 32, 32), np.uint8), session.backend,
                     labels=tmp_path / "vol.zarr")
    with pytest.raises(TrackingError, match=r"\(t, y, x\)"):
        track(volume, _prompts())


def test_csv_and_napari_tracks(movie, tmp_path):
    image, truth = movie
    session = _session(movie, tmp_path)
    result = track(session, _prompts(), settings=TrackSettings(min_area=10))
    csv = export_tracks_csv(session.labels, tmp_path / "tracks.csv")
    lines = csv.read_text().splitlines()
    assert lines[0] == "t,track_id,y,x,area,parent,track_start,track_end"
    assert len(lines) - 1 == sum(len(np.unique(p[p > 0])) for p in truth)
    data, kwargs, kind = tracks_layer_data(session.labels)
    assert kind == "tracks" and data.shape[1] == 4
    assert kwargs["graph"] == result.lineage.graph()
    assert len(kwargs["graph"]) == 4
    row = data[(data[:, 0] == 3) & (data[:, 1] == 0)][0]
    assert row[2:] == pytest.approx([75, 15], abs=0.01)  # (y, x) centroid of cell 3
    with pytest.raises(TrackingError, match="already exists"):
        export_tracks_csv(session.labels, csv)
    with pytest.raises(TrackingError, match="already exists"):
        export_ctc(session.labels, tmp_path)


def test_gaps_become_child_tracks_in_ctc(tmp_path):
    labels = np.zeros((6, 16, 16), np.uint16)
    labels[[0, 1, 4, 5], 4:8, 4:8] = 3  # lost on frames 2-3, found again
    out = export_ctc(labels, tmp_path / "res")
    rows = (out / "res_track.txt").read_text().split("\n")
    assert rows[:2] == ["3 0 1 0", "4 4 5 3"]
    back, lineage = read_ctc(out)
    assert set(np.unique(back[4])) == {0, 4}


@pytest.mark.slow
def test_sam2_memory_tracking_runs(sam2, tmp_path, one_torch_thread):
    image, truth = cell_movie()
    small = image[:4, :64, :64]
    session = Session(small, sam2, labels=tmp_path / "s.zarr")
    prompts = PromptSet()
    prompts.add((0,), 1, ObjectPrompt(box=[30, 5, 55, 28]))
    result = track(session, prompts, settings=TrackSettings(method="sam2", min_area=1))
    assert result.frames == sorted(result.frames)  # random weights: only the path is checked
    with pytest.raises(TrackingError, match="SAM2 model"):
        track(_session((image, truth), tmp_path, "x.zarr"), prompts,
              settings=TrackSettings(method="sam2"))
