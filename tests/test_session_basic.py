"""Session basics with a tiny random-weight SAM: segment, embedding cache, commit, undo/redo."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_segany.engine.registry import load_model
from napari_segany.prompts import ObjectPrompt
from napari_segany.samples import blob_volume, nuclei_2d
from napari_segany.session import Segmentation, Session
from napari_segany.storage import LabelsStore, LabelsStoreError


@pytest.fixture(scope="module")
def backend():
    return load_model("sam_tiny", random_weights=True, device="cpu")


@pytest.fixture(scope="module")
def nuclei():
    return nuclei_2d()


@pytest.fixture(scope="module")
def volume():
    return blob_volume()


@pytest.fixture
def session(tmp_path, backend, nuclei) -> Session:
    return Session(nuclei.image, backend, labels=tmp_path / "labels.zarr")


def click(sample) -> ObjectPrompt:
    return ObjectPrompt(points=[sample.point], labels=[1])


def test_segment_returns_a_mask_of_the_plane(session, nuclei):
    segs = session.segment(click(nuclei))
    assert list(segs) == [1]
    seg = segs[1]
    assert isinstance(seg, Segmentation)
    assert seg.plane == () and seg.obj_id == 1
    assert seg.mask.dtype == bool and seg.mask.shape == (256, 256)
    assert seg.mask.any()
    assert isinstance(seg.score, float) and np.isfinite(seg.score)
    assert seg.logits.ndim == 2 and seg.logits.dtype == np.float32
    # Several objects in one call keep their ids.
    many = session.segment({3: click(nuclei), 8: ObjectPrompt(box=[150, 150, 240, 240])})
    assert sorted(many) == [3, 8]
    assert all(s.mask.shape == (256, 256) for s in many.values())
    # Same prompt, same plane, same model: same mask.
    assert np.array_equal(many[3].mask, seg.mask)


def test_embeddings_are_cached(session, nuclei):
    assert session.embeddings_computed == 0
    for _ in range(3):
        session.segment(click(nuclei))
    session.segment(ObjectPrompt(box=[10, 10, 100, 100]), plane=())
    assert session.embeddings_computed == 1


def test_embedding_cache_is_lru(backend, volume):
    s = Session(volume.image, backend, max_cached_embeddings=2)
    for z in (12, 13, 12, 14, 12, 13):
        s.embedding((z,))
    # 12, 13 computed; 12 hit; 14 computed (drops 13); 12 hit; 13 computed again.
    assert s.embeddings_computed == 4


def test_commit_writes_the_mask_as_object_1(session, nuclei):
    seg = session.segment(click(nuclei))[1]
    assert session.commit(seg) == 1
    plane = session.labels.read_plane()
    assert plane.dtype == np.uint32
    assert np.array_equal(plane, seg.mask.astype(np.uint32))
    again = LabelsStore.open(session.labels.path)
    assert np.array_equal(again.read_plane(), plane)
    assert again.provenance["objects"] == {"1": {}}
    assert again.provenance["model"] == session.backend.signature()
    assert "normalization" in again.provenance
    assert session.new_object_id() == 2


def _two_overlapping(session, nuclei) -> tuple[Segmentation, Segmentation]:
    first = session.segment(click(nuclei))[1]
    second = session.segment({2: ObjectPrompt(box=[150, 150, 240, 240])})[2]
    # Make sure the second object overlaps the first, whatever the random model predicted.
    ys, _ = np.nonzero(first.mask)
    mask2 = second.mask.copy()
    mask2[int(np.median(ys)), :] = True
    assert (mask2 & first.mask).any() and (mask2 & ~first.mask).any()
    return first, dataclasses.replace(second, mask=mask2)


def test_commit_keep_does_not_overwrite_object_1(session, nuclei):
    first, second = _two_overlapping(session, nuclei)
    session.commit(first)
    assert session.commit(second, overlap="keep") == 2
    plane = session.labels.read_plane()
    assert np.array_equal(plane == 1, first.mask)
    assert np.array_equal(plane == 2, second.mask & ~first.mask)
    assert not plane[~(first.mask | second.mask)].any()


def test_commit_replace_overwrites(session, nuclei):
    first, second = _two_overlapping(session, nuclei)
    session.commit(first)
    session.commit(second, overlap="replace")
    plane = session.labels.read_plane()
    assert np.array_equal(plane == 2, second.mask)
    assert np.array_equal(plane == 1, first.mask & ~second.mask)


def test_commit_with_another_id(session, nuclei):
    seg = session.segment(click(nuclei))[1]
    assert session.commit(seg, obj_id=5) == 5
    assert object_ids(session.labels.read_plane()) == {5}
    assert session.new_object_id() == 6


def object_ids(plane: np.ndarray) -> set[int]:
    return set(np.unique(plane).tolist()) - {0}


def test_undo_redo(session, nuclei):
    store = session.labels
    assert session.undo() is None and session.redo() is None
    first, second = _two_overlapping(session, nuclei)
    session.commit(first)
    after_first = store.read_plane().copy()
    session.commit(second)
    after_second = store.read_plane().copy()
    assert not np.array_equal(after_first, after_second)

    assert session.undo()
    assert np.array_equal(store.read_plane(), after_first)
    assert np.array_equal(LabelsStore.open(store.path).read_plane(), after_first)
    assert session.undo()
    assert not store.read_plane().any()
    assert session.undo() is None

    assert session.redo()
    assert np.array_equal(store.read_plane(), after_first)
    assert session.redo()
    assert np.array_equal(store.read_plane(), after_second)
    assert session.redo() is None

    # A new commit after an undo drops the redo history.
    assert session.undo()
    session.commit(second, obj_id=9)
    assert session.redo() is None
    assert object_ids(store.read_plane()) == {1, 9}
    assert session.undo()
    assert np.array_equal(store.read_plane(), after_first)


def test_undo_history_is_bounded(tmp_path, backend, nuclei):
    s = Session(nuclei.image, backend, labels=tmp_path / "l.zarr", history=1)
    first, second = _two_overlapping(s, nuclei)
    s.commit(first)
    after_first = s.labels.read_plane().copy()
    s.commit(second)
    assert s.undo()
    assert np.array_equal(s.labels.read_plane(), after_first)
    assert s.undo() is None
    assert np.array_equal(s.labels.read_plane(), after_first)


def test_class_name_lands_in_provenance(session, nuclei):
    first, second = _two_overlapping(session, nuclei)
    session.commit(first, class_name="nucleus")
    session.commit(second, class_name="debris")
    objects = LabelsStore.open(session.labels.path).provenance["objects"]
    assert objects == {"1": {"class_name": "nucleus"}, "2": {"class_name": "debris"}}


@pytest.mark.parametrize("plane", [(3,), 0, (0, 0)])
def test_plane_out_of_range_on_2d(session, nuclei, plane):
    key = (plane,) if isinstance(plane, int) else plane
    with pytest.raises(ValueError, match=str(key).replace("(", r"\(").replace(")", r"\)")):
        session.segment(click(nuclei), plane=plane)
    assert session.embeddings_computed == 0


def test_session_on_a_volume(tmp_path, backend, volume):
    s = Session(volume.image, backend, labels=tmp_path / "vol.zarr")
    assert s.plane_keys_shape == (24,)
    prompt = ObjectPrompt(points=[volume.point], labels=[1])
    seg = s.segment(prompt, plane=(12,))[1]
    assert seg.plane == (12,)
    assert seg.mask.shape == (128, 128) and seg.mask.dtype == bool
    s.segment(prompt, plane=12)  # an int plane is the same plane
    assert s.embeddings_computed == 1
    s.commit(seg)
    assert s.labels.provenance["planes"] == [[12]]
    assert np.array_equal(s.labels.read_plane(12), seg.mask.astype(np.uint32))
    for z in (0, 11, 13, 23):
        assert not s.labels.read_plane(z).any()
    for bad in [(24,), (-1,), (), (1, 2)]:
        with pytest.raises(ValueError, match="does not exist"):
            s.segment(prompt, plane=bad)
    with pytest.raises(ValueError, match=r"\(24,\)"):
        s.segment(prompt, plane=24)


def test_labels_of_another_shape_are_refused(tmp_path, backend, nuclei, volume):
    other = LabelsStore.create(tmp_path / "small.zarr", (64, 64))
    with pytest.raises(ValueError, match=r"\(64, 64\).*\(256, 256\)"):
        Session(nuclei.image, backend, labels=other)
    with pytest.raises(LabelsStoreError, match=r"\(64, 64\)"):
        Session(nuclei.image, backend, labels=tmp_path / "small.zarr")
    with pytest.raises(ValueError):
        Session(volume.image, backend, labels=tmp_path / "small.zarr")
    # The refused store was not touched: no model/normalisation recorded in it.
    assert "model" not in LabelsStore.open(tmp_path / "small.zarr").provenance


def test_commit_without_labels_store(backend, nuclei):
    s = Session(nuclei.image, backend)
    seg = s.segment(click(nuclei))[1]
    with pytest.raises(ValueError, match="no labels store"):
        s.commit(seg)
    assert s.undo() is None


def test_empty_prompts_are_refused(session):
    with pytest.raises(ValueError, match="no prompts"):
        session.segment({})
