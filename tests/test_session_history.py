"""Undo after every kind of operation through the Session, as users hit it: nothing earlier
is lost (the numbered cases of "Never lose an annotation")."""

from __future__ import annotations

import numpy as np
import pytest

from blobs import GT1, GT2, VOL, center
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.session import Session
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend


def counts(plane: np.ndarray) -> dict[int, int]:
    ids, n = np.unique(plane, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, n, strict=True)}


def _on(z: int, obj: int, gt=GT1) -> PromptSet:
    ps = PromptSet()
    ps.add((z,), obj, ObjectPrompt(points=center(gt[z]), labels=[1]))
    return ps


def test_undo_of_boxes_keeps_the_commit_before_it(tmp_path):
    """Case 1 (2D): commit, boxes to masks (2 boxes), undo -> the commit is still there."""
    img = VOL[12]
    s = Session(img, RuleBackend(), labels=tmp_path / "2d.zarr")
    seg = s.segment({1: ObjectPrompt(points=center(GT1[12]), labels=[1])})[1]
    s.commit(seg)
    after_commit = counts(s.labels.read_plane())
    r1, c1 = np.nonzero(GT2[12])
    s.segment_boxes(np.array([[c1.min(), r1.min(), c1.max(), r1.max()],
                              [0, 0, 10, 10]], float))
    assert counts(s.labels.read_plane()) != after_commit
    undone = s.undo()
    assert undone.op.kind == "boxes" and undone.message.startswith("Undid boxes to masks")
    assert counts(s.labels.read_plane()) == after_commit
    assert s.redo() and counts(s.labels.read_plane()) != after_commit


def test_undo_of_propagation_keeps_the_commit_and_leaves_no_hole(tmp_path):
    """Cases 1 and 2 (API): commit on plane 14, propagate the same object and another,
    undo -> the commit's plane is as committed, the propagated planes are empty again."""
    s = Session(VOL, RuleBackend(), labels=tmp_path / "3d.zarr")
    seg = s.segment({1: ObjectPrompt(points=center(GT1[14]), labels=[1])}, (14,))[1]
    s.commit(seg)
    committed = s.labels.read_plane(14).copy()
    prompts = _on(14, 1)
    prompts.add((14,), 2, ObjectPrompt(points=center(GT2[14]), labels=[1]))
    written = s.propagate(prompts)
    assert len(written[1]) > 5 and len(written[2]) > 5
    undone = s.undo()
    assert undone.op.kind == "propagate"
    assert "propagation of objects 1, 2" in undone.message and "planes" in undone.message
    assert np.array_equal(s.labels.read_plane(14), committed)  # no hole where it was prompted
    assert all(not s.labels.read_plane(z).any() for z in range(VOL.shape[0]) if z != 14)
    assert s.undo().op.kind == "commit" and not s.labels.read_plane(14).any()
    assert s.redo().op.kind == "commit"
    assert np.array_equal(s.labels.read_plane(14), committed)


@pytest.mark.slow
def test_sam2_propagation_undo_restores_the_committed_plane(tmp_path, sam2):
    """Case 2 with SAM2 memory propagation 13 -> 15."""
    from napari_segany.session import Segmentation

    s = Session(VOL, sam2, labels=tmp_path / "sam2.zarr")
    mask = np.zeros(VOL.shape[1:], bool)
    mask[20:40, 10:30] = True  # a hand-drawn commit (random weights would not reproduce it)
    s.commit(Segmentation((13,), 1, mask, 1.0, None))
    committed = s.labels.read_plane(13).copy()
    s.propagate(_on(13, 1), method="sam2", planes=(13, 16), direction="forward")
    undone = s.undo()
    assert undone.op.kind == "propagate"
    assert np.array_equal(s.labels.read_plane(13), committed)
    assert not s.labels.read_plane(14).any() and not s.labels.read_plane(15).any()


def test_auto_segment_is_one_undo_step(tmp_path):
    from napari_segany.auto import AutoSettings

    s = Session(VOL[10:13], RuleBackend(), labels=tmp_path / "auto.zarr")
    seg = s.segment({5: ObjectPrompt(points=center(GT1[11]), labels=[1])}, (1,))[5]
    s.commit(seg)
    before = [s.labels.read_plane(z).copy() for z in range(3)]
    res = s.auto_segment(settings=AutoSettings(points_per_side=8))
    assert res.object_ids
    assert s.undo().op.kind == "auto"
    assert all(np.array_equal(s.labels.read_plane(z), before[z]) for z in range(3))


def test_history_outlives_the_session(tmp_path):
    path = tmp_path / "kept.zarr"
    with Session(VOL, RuleBackend(), labels=path) as s:
        s.commit(s.segment({3: ObjectPrompt(points=center(GT1[9]), labels=[1])}, (9,))[3])
    later = Session(VOL, RuleBackend(), labels=path)
    assert later.undo().op.what == "commit of object 3 on plane (9,)"
    assert not later.labels.read_plane(9).any()


def test_another_image_of_the_same_shape_is_warned_about_and_recorded(tmp_path):
    path = tmp_path / "w.zarr"
    Session(VOL, RuleBackend(), labels=path).close()
    other = VOL[::-1].copy()
    with pytest.warns(UserWarning, match="written for another image"):
        s = Session(other, RuleBackend(), labels=path)
    runs = s.labels.provenance["runs"]
    assert len(runs) == 2 and runs[0]["image"] != runs[1]["image"]


def test_history_must_be_a_positive_number_of_operations(tmp_path):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="history"):
            Session(VOL, RuleBackend(), labels=tmp_path / "h.zarr", history=bad)
    s = Session(VOL, RuleBackend(), labels=tmp_path / "h.zarr", history=3)
    assert s.labels.history_ops == 3


def test_commit_of_nothing_is_a_clear_error(tmp_path):
    s = Session(VOL, RuleBackend(), labels=tmp_path / "n.zarr")
    with pytest.raises(TypeError, match="Segmentation"):
        s.commit(None)
    assert LabelsStore.open(tmp_path / "n.zarr").history() == []
