"""The annotator's core: review before commit, object table, where propagation stopped,
segmenting a region at full resolution, and prompts recorded for the next session."""

from __future__ import annotations

import numpy as np
import pytest

from blobs import GT1, GT2, VOL, center
from napari_segany.auto import AutoSettings
from napari_segany.errors import LabelsStoreError, PromptError
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.propagate import SliceSettings
from napari_segany.session import Session, review_path
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend


def _prompt(z: int, gt=GT1) -> ObjectPrompt:
    return ObjectPrompt(points=center(gt[z]), labels=[1])


def _on(z: int, *objects: tuple[int, np.ndarray]) -> PromptSet:
    ps = PromptSet()
    for oid, gt in objects:
        ps.add((z,), oid, _prompt(z, gt))
    return ps


def bright_stack() -> np.ndarray:
    vol = np.full((5, 48, 64), 20, np.uint8)
    for z in range(5):
        vol[z, 8:20, 4 + 5 * z:16 + 5 * z] = 220
        if z >= 2:
            vol[z, 30:42, 40:52] = 220
    return vol


def _scan(store: LabelsStore) -> dict[int, tuple[list, int]]:
    """Object -> (planes, pixels) by reading every plane (what object_table must match)."""
    out: dict[int, tuple[list, int]] = {}
    for z in range(store.shape[0]):
        ids, n = np.unique(store.read_plane(z), return_counts=True)
        for i, c in zip(ids.tolist(), n.tolist(), strict=True):
            if i:
                planes, px = out.get(i, ([], 0))
                out[i] = (planes + [(z,)], px + c)
    return out


def _table(store: LabelsStore) -> dict[int, tuple[list, int]]:
    return {r.id: (r.planes, r.pixels) for r in store.object_table() if r.pixels}


# ------------------------------------------------------------------------------------ review
def test_propagation_staged_for_review_then_accepted_as_one_undo_step(tmp_path):
    s = Session(VOL, RuleBackend(), labels=tmp_path / "seg.zarr")
    seg = s.segment({1: _prompt(14)}, (14,))[1]
    s.commit(seg)
    committed = s.labels.read_plane(14).copy()
    written = s.propagate(_on(14, (2, GT2)), review=True)
    assert len(written[2]) > 5
    # nothing of it is annotated yet; it lives beside the store, on disk
    assert np.array_equal(s.labels.read_plane(14), committed)
    assert all(not s.labels.read_plane(z).any() for z in range(VOL.shape[0]) if z != 14)
    assert review_path(s.labels.path).is_dir()
    assert [r.id for r in s.review.objects()] == [2]
    result = s.accept()
    assert result.ids == [2] and len(result.planes) == len(written[2])
    assert "Accepted 1 object(s)" in result.message
    assert _table(s.labels)[2] == _scan(s.labels)[2]
    assert np.array_equal(s.labels.read_plane(14) == 1, committed == 1)  # commit kept
    assert s.review.objects() == []  # moved, not copied
    undone = s.undo()
    assert undone.op.kind == "accept"
    assert np.array_equal(s.labels.read_plane(14), committed)
    assert 2 not in _scan(s.labels)


def test_review_survives_a_new_session_and_accepts_selected_ids(tmp_path):
    vol = bright_stack()
    path = tmp_path / "auto.zarr"
    s = Session(vol, RuleBackend(), labels=path)
    res = s.auto_segment(settings=AutoSettings(points_per_side=8), review=True)
    assert res.object_ids == [1, 2]
    assert not s.labels.written_planes()
    s.close()
    # a crash or a closed viewer: the finished run awaits review in the next session
    s2 = Session(vol, RuleBackend(), labels=path)
    assert [r.id for r in s2.review.objects()] == [1, 2]
    with pytest.raises(LabelsStoreError, match="not in the review area"):
        s2.accept([7])
    assert [r.id for r in s2.review.objects()] == [1, 2]  # refused: nothing moved
    assert s2.accept([2]).ids == [2]
    assert set(_scan(s2.labels)) == {2}
    assert s2.discard() == 1  # object 1 dropped
    assert s2.review.objects() == [] and set(_scan(s2.labels)) == {2}


def test_accept_renames_a_staged_id_the_store_took_meanwhile(tmp_path):
    vol = bright_stack()
    s = Session(vol, RuleBackend(), labels=tmp_path / "r.zarr")
    boxes = np.array([[40, 30, 51, 41]], float)
    staged = s.segment_boxes(boxes, plane=(3,), review=True)
    sid = int(staged.ids[0])
    # meanwhile the same id is committed by hand on another plane
    seg = s.segment({sid: ObjectPrompt(points=[[10, 14]], labels=[1])}, (0,))[sid]
    s.commit(seg, obj_id=sid)
    result = s.accept()
    assert result.renamed and sid in result.renamed
    new = result.renamed[sid]
    assert new != sid and result.ids == [new] and "renamed" in result.message
    plane3 = s.labels.read_plane(3)
    assert plane3[35, 45] == new and plane3[14, 10 + 15] != new
    assert s.labels.objects[new]["source"] == "boxes"
    assert _table(s.labels) == _scan(s.labels)


def test_accept_never_overwrites_committed_pixels(tmp_path):
    s = Session(VOL, RuleBackend(), labels=tmp_path / "k.zarr")
    s.commit(s.segment({1: _prompt(12)}, (12,))[1])
    before = s.labels.read_plane(12)
    s.propagate(_on(12, (5, GT1)), review=True)  # the same blob, staged as object 5
    s.accept()
    after = s.labels.read_plane(12)
    assert np.array_equal(after[before == 1], before[before == 1])  # still object 1
    assert _table(s.labels) == _scan(s.labels)


# ------------------------------------------------------------------------------ object table
def test_object_table_follows_every_operation_without_rescanning(tmp_path):
    s = Session(VOL, RuleBackend(), labels=tmp_path / "t.zarr")
    s.commit(s.segment({1: _prompt(14)}, (14,))[1], class_name="nucleus")
    s.propagate(_on(14, (1, GT1), (2, GT2)))
    assert _table(s.labels) == _scan(s.labels)
    rows = {r.id: r for r in s.labels.object_table()}
    assert rows[1].class_name == "nucleus"
    s.labels.merge_objects([2], into=1)
    assert _table(s.labels) == _scan(s.labels) and 2 not in _table(s.labels)
    s.undo()
    assert _table(s.labels) == _scan(s.labels) and 2 in _table(s.labels)
    s.labels.delete_object(2)
    s.undo()
    s.redo()
    assert _table(s.labels) == _scan(s.labels) and 2 not in _table(s.labels)
    # a reader of the same store sees the same table, from the log alone
    ro = LabelsStore.open(s.labels.path, mode="r")
    assert _table(ro) == _scan(ro)


def test_napari_edits_are_counted(tmp_path):
    s = Session(VOL, RuleBackend(), labels=tmp_path / "e.zarr")
    view = s.labels.as_array()
    view[3, 10:20, 10:20] = 9
    view[3, 15:25, 15:25] = 0
    assert _table(s.labels) == _scan(s.labels) == {9: ([(3,)], 100 - 25)}


# ----------------------------------------------------------------------------------- stops
def test_last_stops_say_where_and_why_a_walk_stopped(tmp_path):
    s = Session(VOL, RuleBackend(), labels=tmp_path / "s.zarr")
    # min_area above the blob's end planes: the walk stops before the object's real ends
    area = {z: int(GT1[z].sum()) for z in range(VOL.shape[0]) if GT1[z].any()}
    settings = SliceSettings(min_area=sorted(area.values())[len(area) // 2])
    written = s.propagate(_on(14, (1, GT1)), settings=settings)
    stops = {st.direction: st for st in s.last_stops}
    assert set(stops) == {1, -1}
    for d, st in stops.items():
        assert st.obj_id == 1 and "min_area" in st.reason
        assert st.plane not in written[1]
        last = max(written[1]) if d > 0 else min(written[1])
        assert st.plane == (last[0] + d,)
        assert str(st.plane[0]) in st.message and "object 1" in st.message
    # continue from where it stopped with looser rules: only that way, one more run
    st = stops[1]
    more = s.propagate(_on(st.plane[0], (1, GT1)), direction="forward",
                       planes=(st.plane[0], VOL.shape[0]))
    assert more[1][0] == st.plane and len(more[1]) > 1


# ---------------------------------------------------------------------------------- region
def test_segment_in_a_region_at_full_resolution(tmp_path):
    s = Session(VOL, RuleBackend(), labels=tmp_path / "g.zarr")
    rows, cols = np.nonzero(GT1[14])
    region = (rows.min() - 3, rows.max() + 4, cols.min() - 3, cols.max() + 4)
    seg = s.segment({1: _prompt(14)}, (14,), region=region)[1]
    whole = s.segment({1: _prompt(14)}, (14,))[1]
    assert seg.mask.shape == VOL.shape[1:]
    assert np.array_equal(seg.mask, whole.mask)  # the blob fits: the same object
    y0, y1, x0, x1 = region
    outside = np.ones(VOL.shape[1:], bool)
    outside[y0:y1, x0:x1] = False
    assert not seg.mask[outside].any()
    with pytest.raises(PromptError, match="outside the region"):
        s.segment({2: _prompt(14, GT2)}, (14,), region=region)
    with pytest.raises(ValueError, match="less than 8"):
        s.segment({1: _prompt(14)}, (14,), region=(0, 4, 0, 100))


# --------------------------------------------------------------------------------- prompts
def test_recorded_prompts_come_back_in_the_next_session(tmp_path):
    path = tmp_path / "p.zarr"
    s = Session(VOL, RuleBackend(), labels=path)
    p1 = ObjectPrompt(points=center(GT1[14]), labels=[1])
    s.commit(s.segment({1: p1}, (14,))[1])
    s.propagate(_on(10, (2, GT2)), review=True)
    s.accept()
    s.commit(s.segment({3: _prompt(12, GT2)}, (12,))[3], obj_id=3)
    s.undo()  # an undone commit's prompt does not come back
    s.close()
    again = Session(VOL, RuleBackend(), labels=path).recorded_prompts()
    assert sorted(again.planes()) == [(10,), (14,)]
    assert again.object_ids() == [1, 2]
    got = again.for_plane((14,))[1]
    assert np.allclose(got.points, p1.points) and list(got.labels) == [1]


def test_segment_from_tiled_embeddings_picks_the_tile_holding_the_prompt(tmp_path):
    from napari_segany.tiling import TiledEmbeddings

    backend = RuleBackend()
    s = Session(VOL, backend, labels=tmp_path / "tt.zarr")
    tiled = TiledEmbeddings.from_session(s, tile=64, halo=16)
    whole = s.segment({1: _prompt(14), 2: _prompt(14, GT2)}, (14,))
    segs = s.segment({1: _prompt(14), 2: _prompt(14, GT2)}, (14,), tiled=tiled)
    for oid in (1, 2):  # each blob lies in a window: the same objects, from tiles
        assert np.array_equal(segs[oid].mask, whole[oid].mask)
    computed = tiled.stats["computed"]  # the windows holding each blob, embedded once
    s.segment({1: _prompt(14)}, (14,), tiled=tiled)
    assert tiled.stats["computed"] == computed <= 4
    big = ObjectPrompt(points=[[5, 5]], labels=[1], box=[2, 2, 90, 90])
    with pytest.raises(PromptError, match="larger than one tile"):
        s.segment({3: big}, (14,), tiled=tiled)
    with pytest.raises(ValueError, match="not both"):
        s.segment({1: _prompt(14)}, (14,), tiled=tiled, region=(0, 50, 0, 50))
