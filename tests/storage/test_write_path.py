"""The labels store's write path: a plane it wrote last is taken from memory only while its
chunk files are still the ones it wrote, paints compare and count only the box they can
change, and the lock file names its holder (napari_segany.storage.labels / lock)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from napari_segany.storage import LabelsStore

H, W = 40, 48


def rect(y0, y1, x0, x1, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def recount(store) -> dict[int, int]:
    out: dict[int, int] = {}
    for z in range(store.shape[0]):
        ids, n = np.unique(store.read_plane(z), return_counts=True)
        for i, c in zip(ids.tolist(), n.tolist(), strict=True):
            if i:
                out[i] = out.get(i, 0) + c
    return out


@pytest.fixture(params=[None, 16], ids=["one-chunk", "tiled"])
def store(request, tmp_path) -> LabelsStore:
    return LabelsStore.create(tmp_path / "l.zarr", (3, H, W), chunk_size=request.param)


def test_another_writers_pixels_between_paints_are_kept(store):
    other = LabelsStore.open(store.path)
    with store.operation("propagate", "propagation"):
        store.paint(1, rect(0, 10, 0, 10), 1)  # the plane is now in memory
        other.paint(1, rect(20, 30, 20, 30), 2)  # another writer replaces its chunks
        plane = store.paint(1, rect(5, 25, 5, 25), 3)  # "keep": takes background only
    assert (plane == 2).sum() == 100 and (plane == 1).sum() == 100
    assert np.array_equal(plane, LabelsStore.open(store.path, mode="r").read_plane(1))


def test_a_raw_zarr_write_between_paints_is_read(store):
    store.paint(0, rect(0, 10, 0, 10), 1)
    raw = zarr.open_array(str(store.path), mode="r+")  # e.g. a cluster task writing a chunk
    block = np.zeros((H, W), np.uint32)
    block[30:, 30:] = 9
    raw[0] = block
    plane = store.paint(0, rect(0, 4, 0, 4), 1)
    assert (plane == 9).sum() == 10 * 18 and (plane == 1).sum() == 16


def test_a_chunk_emptied_and_refilled_reads_right(store):
    store.paint(2, rect(0, 8, 0, 8), 1)
    store.paint(2, np.zeros((H, W), bool), 1)  # clears object 1: no chunk file left
    assert not store.read_plane(2).any()
    plane = store.paint(2, rect(30, 40, 40, 48), 4)
    assert (plane == 4).sum() == 80 and np.array_equal(plane, store.read_plane(2))


def test_returned_planes_are_the_callers_own(store):
    with store.operation("propagate", "propagation"):
        plane = store.paint(0, rect(0, 10, 0, 10), 1)
        plane[:] = 7  # the caller scribbles on what it was given
        again = store.paint(0, rect(20, 30, 0, 10), 2)
    assert set(np.unique(again).tolist()) == {0, 1, 2}
    assert np.array_equal(again, store.read_plane(0))


@pytest.mark.parametrize("overlap", ["keep", "replace"])
def test_paint_pixel_counts_match_a_recount(store, overlap):
    rng = np.random.default_rng(1)
    with store.operation("propagate", "propagation"):
        for k in range(30):
            z = int(rng.integers(0, 3))
            y0, x0 = (int(v) for v in rng.integers(0, 30, 2))
            store.paint(z, rect(y0, y0 + int(rng.integers(1, 12)), x0,
                                x0 + int(rng.integers(1, 18))), 1 + k % 4, overlap=overlap)
    counts = {row.id: row.pixels for row in store.object_table()}
    assert counts == recount(store)
    before = [store.read_plane(z).copy() for z in range(3)]
    store.undo()
    assert not any(store.read_plane(z).any() for z in range(3))
    store.redo()
    assert all(np.array_equal(store.read_plane(z), p) for z, p in enumerate(before))
    assert {row.id: row.pixels for row in store.object_table()} == recount(store)


def test_an_empty_paint_still_marks_its_plane(store):
    plane = store.paint(1, np.zeros((H, W), bool), 3)
    assert not plane.any() and plane.flags.writeable
    assert store.written_planes() == [(1,)]


def test_set_object_that_changes_nothing_writes_nothing(store):
    store.set_object(1, class_name="cell")
    log = store.path / ".segany" / "log.jsonl"
    size = log.stat().st_size
    for _ in range(3):
        store.set_object(1)
        store.set_object(1, class_name="cell")
    assert log.stat().st_size == size
    store.set_object(1, class_name="nucleus")
    assert store.objects[1] == {"class_name": "nucleus"}


def test_the_lock_file_names_its_latest_holder(store):
    with store._lock.hold("a rather long description of what is being written"):
        pass
    with store._lock.hold("short"):
        assert store._lock.holder()["what"] == "short"
    assert json.loads((store.path / ".segany" / "lock").read_text())["what"] == "short"


def test_the_plane_written_last_is_not_read_again(store, monkeypatch):
    store.paint(0, rect(0, 10, 0, 10), 1)
    reads = []
    real = store.read_plane
    monkeypatch.setattr(store, "read_plane", lambda key: reads.append(key) or real(key))
    with store.operation("propagate", "propagation"):
        store.paint(0, rect(20, 30, 0, 10), 2)
        store.paint(0, rect(0, 5, 30, 40), 3)
    assert reads == []
    LabelsStore.open(store.path).paint(0, rect(35, 40, 0, 5), 4)  # another writer
    assert (store.paint(0, rect(30, 40, 40, 48), 5) == 4).sum() == 25
    assert reads == [(0,)]
