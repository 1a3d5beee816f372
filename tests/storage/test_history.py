"""The history of a labels store: operations, pixel-wise undo and redo, the event log, the
write lock, recovery after a killed writer, two writers at once, format 1 stores, 2D chunks
and the array napari paints on (napari_segany.storage.labels / history / log / lock)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_segany.storage import ATTRS_KEY, LabelsStore, LabelsStoreError, StoreArray

H, W = 16, 20
TESTS = Path(__file__).resolve().parents[1]


def rect(y0, y1, x0, x1, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def log_records(store) -> list[dict]:
    return [json.loads(line) for line in
            (Path(store.path) / ".segany" / "log.jsonl").read_text().splitlines() if line]


@pytest.fixture
def store(tmp_path) -> LabelsStore:
    return LabelsStore.create(tmp_path / "l.zarr", (5, H, W))


def test_undo_goes_back_one_operation_at_a_time_and_redo_forward(store):
    with store.operation("commit", "commit of object 1"):
        store.paint(1, rect(2, 10, 2, 10), 1)
        store.set_object(1, class_name="nucleus")
    after_commit = store.read_plane(1).copy()
    store.paint(1, rect(6, 14, 6, 14), 2)  # "keep": object 2 takes only background
    after_paint = store.read_plane(1).copy()
    store.write_region((1, slice(2, 4), slice(2, 10)), 7)  # a brush over object 1
    first = store.undo()
    assert first.op.kind == "edit" and first.reverted == 16 and first.kept == 0
    assert np.array_equal(store.read_plane(1), after_paint)
    second = store.undo()
    assert second.op.what == "edit of plane (1,)" and np.array_equal(store.read_plane(1),
                                                                    after_commit)
    third = store.undo()
    assert third.op.what == "commit of object 1" and third.reverted == 64
    assert not store.read_plane(1).any() and 1 not in store.objects
    assert store.undo() is None
    assert store.redo().op.what == "commit of object 1"
    assert np.array_equal(store.read_plane(1), after_commit)
    assert store.objects[1] == {"class_name": "nucleus"}
    assert store.redo().reverted == (after_paint == 2).sum()
    store.paint(3, rect(0, 2, 0, 2), 4)  # a new operation: nothing left to redo
    assert store.redo() is None
    assert [o.kind for o in store.history()].count("undo") == 3


def test_pixels_changed_by_another_writer_are_left_alone(store):
    with store.operation("commit", "commit of object 1"):
        store.paint(2, rect(0, 8, 0, 8), 1)
    other = LabelsStore.open(store.path)  # a second writer (another session)
    other.write_region((2, slice(0, 2), slice(0, 8)), 5)  # 16 of object 1's pixels
    result = store.undo()
    assert result.op.kind == "commit" and result.reverted == 48 and result.kept == 16
    assert "16 pixel(s) changed since" in result.message
    plane = store.read_plane(2)
    assert (plane == 5).sum() == 16 and not (plane == 1).any()
    assert other.undo().op.writer == other.writer_id  # each writer undoes its own work
    assert (store.read_plane(2) == 1).sum() == 16  # what that edit had replaced


def test_operations_group_writes_and_name_themselves(store):
    with store.operation("propagate", "propagation of object 3") as op:
        for z in range(5):
            store.paint(z, rect(z, z + 4, 1, 5), 3)
        op.what = "propagation of object 3 on planes 0–4"
    [rec] = [o for o in store.history() if o.kind == "propagate"]
    assert rec.status == "done" and rec.pixels == 5 * 16 and len(rec.chunks) == 5
    result = store.undo()
    assert result.message == "Undid propagation of object 3 on planes 0–4."
    assert result.planes == [(z,) for z in range(5)]
    assert not any(store.read_plane(z).any() for z in range(5))
    assert store.undo() is None


def test_an_operation_that_fails_rolls_back_when_short_and_stays_when_long(store):
    with pytest.raises(RuntimeError), store.operation("commit", "commit of 2 planes"):
        store.paint(0, rect(0, 4, 0, 4), 1)
        raise RuntimeError("the model failed")
    assert not store.read_plane(0).any()
    assert store.history()[-1].status == "rolled back"
    with pytest.raises(KeyboardInterrupt), store.operation("propagate", "propagation"):
        store.paint(0, rect(0, 4, 0, 4), 1)
        store.paint(1, rect(0, 4, 0, 4), 1)
        raise KeyboardInterrupt
    assert store.history()[-1].status == "interrupted"
    assert store.read_plane(1).any()
    assert store.undo().op.kind == "propagate"  # kept and undoable as one operation
    assert not store.read_plane(0).any() and not store.read_plane(1).any()


def test_history_survives_closing_and_reopening(store):
    with store.operation("commit", "commit of object 1"):
        store.paint(3, rect(1, 5, 1, 5), 1)
    store.close()
    again = LabelsStore.open(store.path)
    result = again.undo()
    assert result.op.what == "commit of object 1" and not again.read_plane(3).any()
    again.close()
    third = LabelsStore.open(store.path)
    assert third.redo().op.what == "commit of object 1" and third.read_plane(3).any()


def test_bad_input_changes_no_byte(store):
    store.paint(0, rect(0, 4, 0, 4), 1)
    snap = {p: p.read_bytes() for p in Path(store.path).rglob("*") if p.is_file()}
    for call in (lambda: store.paint(0, np.ones((3, 3), bool), 2),
                 lambda: store.paint(0, rect(0, 1, 0, 1), 0),
                 lambda: store.paint(0, rect(0, 1, 0, 1), 2**32),
                 lambda: store.write_plane(9, np.zeros((H, W), np.uint32)),
                 lambda: store.write_plane(0, np.full((H, W), -1)),
                 lambda: store.set_object(0, class_name="x"),
                 lambda: store.paint(0, rect(0, 1, 0, 1), 1, overlap="nope")):
        with pytest.raises(LabelsStoreError):
            call()
    LabelsStore.open(store.path)  # opening for writing writes nothing either
    assert {p: p.read_bytes() for p in Path(store.path).rglob("*") if p.is_file()} == snap


def test_object_ids_are_never_reused_and_reserved_atomically(store):
    assert store.reserve_object_ids(2) == [1, 2]
    other = LabelsStore.open(store.path)
    assert other.reserve_object_ids(1) == [3]
    assert store.next_object_id() == 4
    store.paint(0, rect(0, 2, 0, 2), 4)
    store.set_object(4)
    store.delete_object(4)
    assert 4 not in store.objects and store.next_object_id() == 5  # 4 is not reused
    assert store.reserve_object_ids(1, above=10) == [11]


def test_registry_operations_are_undoable(store):
    store.paint(0, rect(0, 4, 0, 4), 1)
    store.paint(1, rect(0, 4, 0, 4), 2)
    store.set_objects({1: {"class_name": "a"}, 2: {"class_name": "b"}})
    assert store.merge_objects([2], into=1) == 16
    assert set(np.unique(store.read_plane(1))) == {0, 1} and 2 not in store.objects
    assert store.undo().op.kind == "merge"
    assert store.objects[2] == {"class_name": "b"} and (store.read_plane(1) == 2).sum() == 16
    assert store.delete_object(1) == 16 and not store.read_plane(0).any()
    store.undo()
    assert store.objects[1] == {"class_name": "a"} and (store.read_plane(0) == 1).sum() == 16


def test_provenance_is_a_log_of_runs(store):
    store.update_provenance(model={"name": "a"}, prompts={"1": 1})
    other = LabelsStore.open(store.path)
    other.update_provenance(model={"name": "b"}, source="x.tif")
    prov = LabelsStore.open(store.path, mode="r").provenance
    assert prov["model"] == {"name": "b"} and prov["prompts"] == {"1": 1}  # the latest
    assert [r.get("model") for r in prov["runs"]] == [{"name": "a"}, {"name": "b"}]
    assert prov["runs"][1]["source"] == "x.tif" and prov["runs"][0]["version"]
    meta = json.loads((Path(store.path) / "zarr.json").read_text())["attributes"][ATTRS_KEY]
    assert "model" not in meta  # zarr.json never changes


def test_history_limits_drop_the_oldest_journals(tmp_path):
    store = LabelsStore.create(tmp_path / "h.zarr", (5, H, W), history_ops=2)
    for z in range(4):
        store.paint(z, rect(0, 4, 0, 4), z + 1)
    assert sorted(os.listdir(Path(store.path) / ".segany" / "journal")) == sorted(
        o.id for o in store.history()[-2:])
    assert store.undo().op.what == "edit of plane (3,)"
    assert store.undo().op.what == "edit of plane (2,)"
    assert store.undo() is None  # planes 0 and 1 are beyond the history
    assert store.read_plane(0).any()


def test_a_torn_log_line_is_skipped(store):
    store.paint(0, rect(0, 4, 0, 4), 1)
    with open(Path(store.path) / ".segany" / "log.jsonl", "a") as f:
        f.write('{"t": "obj", "id": 9, "inf')  # a writer killed while appending
    other = LabelsStore.open(store.path)
    other.set_object(2, class_name="x")
    again = LabelsStore.open(store.path, mode="r")
    assert set(again.objects) == {2} and again.read_plane(0).any()


def test_format_1_stores_are_read_and_upgraded(tmp_path):
    path = tmp_path / "old.zarr"
    arr = zarr.create_array(store=str(path), shape=(3, H, W), chunks=(1, H, W), dtype="uint32",
                            fill_value=0, zarr_format=3)
    arr[1] = rect(0, 5, 0, 5).astype(np.uint32) * 4
    arr.attrs[ATTRS_KEY] = {"format": 1, "version": "0.0.9", "objects": {"4": {"class_name": "n"}},
                            "planes": [[1]], "model": {"name": "m"}}
    old = LabelsStore.open(path, mode="r")
    assert old.provenance["objects"] == {"4": {"class_name": "n"}} and old.next_object_id() == 5
    store = LabelsStore.open(path)
    prov = store.provenance
    assert prov["format"] == 2 and prov["objects"] == {"4": {"class_name": "n"}}
    assert prov["planes"] == [[1]] and prov["model"] == {"name": "m"}
    assert prov["version"] == "0.0.9"
    store.paint(1, rect(8, 10, 8, 10), 5)
    assert store.undo() and (store.read_plane(1) == 4).sum() == 25


def test_large_planes_are_chunked_in_2d_and_journaled_per_chunk(tmp_path):
    store = LabelsStore.create(tmp_path / "big.zarr", (2, 100, 90), chunk_size=32)
    assert store.chunks == (1, 32, 32)
    assert json.loads((tmp_path / "big.zarr" / "zarr.json").read_text())[
        "attributes"][ATTRS_KEY]["chunks"] == [1, 32, 32]
    store.paint(1, rect(40, 50, 60, 70, (100, 90)), 3)
    [op] = store.history()
    assert op.chunks == [(1, 1, 1), (1, 1, 2)]  # only the tiles that changed
    assert sorted(p.name for p in (tmp_path / "big.zarr" / "c" / "1").rglob("*")
                  if p.is_file()) == ["1", "2"]
    store.undo()
    assert not store.read_plane(1).any()


def test_store_array_writes_as_operations(store):
    view = store.as_array()
    assert isinstance(view, StoreArray) and view.shape == store.shape and view.dtype == np.uint32
    view[2, 1:4, 1:4] = 6  # basic indexing, like napari's masked paint
    view[(np.array([3, 3]), np.array([0, 1]), np.array([5, 6]))] = 8  # fancy, like a fill
    assert (store.read_plane(2) == 6).sum() == 9 and (store.read_plane(3) == 8).sum() == 2
    np.testing.assert_array_equal(view[(np.array([3]), np.array([0]), np.array([5]))], [8])
    assert [o.kind for o in store.history()] == ["edit", "edit"]
    view.begin_stroke("brush stroke")
    view[0, 0, 0:3] = 1
    view[0, 1, 0:3] = 1
    view.end_stroke()
    assert store.history()[-1].what == "brush stroke" and store.history()[-1].pixels == 6
    assert store.undo().op.what == "brush stroke" and not store.read_plane(0).any()


def _writer_script(path: Path, obj: int, planes: int, stripe: int) -> str:
    return textwrap.dedent(f"""
        import numpy as np, sys
        from napari_segany.storage import LabelsStore
        store = LabelsStore.open({str(path)!r})
        [oid] = store.reserve_object_ids(1, {{"class_name": "writer {obj}"}})
        for z in range({planes}):
            m = np.zeros({(H, W)!r}, bool)
            m[{stripe}:{stripe} + 4, :] = True
            with store.operation("commit", f"object {{oid}} on plane {{z}}"):
                store.paint(z, m, oid)
        print(oid)
    """)


def test_two_processes_writing_one_store_lose_nothing(tmp_path):
    path = tmp_path / "shared.zarr"
    LabelsStore.create(path, (40, H, W)).close()
    procs = [subprocess.Popen([sys.executable, "-c", _writer_script(path, i, 40, 4 + 6 * i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ids = sorted(int(o[0]) for o in outs)
    assert ids == [1, 2]
    store = LabelsStore.open(path, mode="r")
    for z in range(40):
        plane = store.read_plane(z)
        assert {int(i) for i in np.unique(plane)} == {0, 1, 2}, z
        assert (plane == 1).sum() == (plane == 2).sum() == 4 * W
    assert set(store.objects) == {1, 2}
    assert len([o for o in store.history() if o.kind == "commit"]) == 80


def test_a_waiting_writer_says_whom_it_waits_for(store):
    msgs = []
    other = LabelsStore.open(store.path, on_wait=msgs.append, lock_timeout=0.3)
    snap = other.read_plane(0).copy()
    with store._lock.hold("a long write"):  # the lock file names its holder
        with pytest.raises(TimeoutError, match=rf"process {os.getpid()} .*a long write"):
            other.paint(0, rect(0, 1, 0, 1), 1)  # another descriptor: it has to wait
    assert msgs and msgs[0].startswith(f"waiting for process {os.getpid()}")
    assert np.array_equal(other.read_plane(0), snap)


_KILLED = f"""
import numpy as np, os, signal, sys
from napari_segany.storage import LabelsStore
store = LabelsStore.open(sys.argv[1])
kind = sys.argv[2]
m = np.zeros(({H}, {W}), bool); m[2:9, 2:9] = True
with store.operation(kind, kind + " that dies"):
    for z in range(3):
        store.paint(z, m, 5)
        if z == 1:
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("kind, short", [("commit", True), ("edit", True), ("undo", True),
                                         ("propagate", False), ("auto", False),
                                         ("boxes", False)])
def test_sigkill_during_an_operation_is_recovered_on_open(store, kind, short):
    store.paint(4, rect(0, 3, 0, 3), 1)  # earlier work
    store.close()
    run = subprocess.run([sys.executable, "-c", _KILLED, str(store.path), kind],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    raw = zarr.open_array(str(store.path), mode="r")
    assert (raw[0] == 5).sum() == 49 and (raw[1] == 5).sum() == 49 and not raw[2].any()
    again = LabelsStore.open(store.path)  # recovery happens here
    [op] = [o for o in again.history() if o.what.startswith(kind + " that dies")]
    if short:
        assert op.status == "rolled back"
        assert not again.read_plane(0).any() and not again.read_plane(1).any()
    else:
        assert op.status == "interrupted" and "interrupted at plane [1]" in op.what
        assert again.read_plane(0).any() and again.read_plane(1).any()
        result = again.undo()  # undoable as one operation
        assert result.op.id == op.id and result.reverted == 98
        assert not again.read_plane(0).any() and not again.read_plane(1).any()
    assert (again.read_plane(4) == 1).sum() == 9  # earlier work intact
    assert not list(Path(store.path).rglob("*.partial"))


def test_leftover_partial_files_are_removed_on_open(store):
    store.paint(0, rect(0, 2, 0, 2), 1)
    junk = Path(store.path) / "c" / "0" / "0" / "0.deadbeef.partial"
    junk.write_bytes(b"half a chunk")
    LabelsStore.open(store.path)
    assert not junk.exists() and store.read_plane(0).any()


def test_read_only_and_closed_stores_refuse_writes(store):
    ro = LabelsStore.open(store.path, mode="r")
    with pytest.raises(LabelsStoreError, match="read-only"):
        ro.paint(0, rect(0, 1, 0, 1), 1)
    store.close()
    with pytest.raises(LabelsStoreError, match="closed"):
        store.paint(0, rect(0, 1, 0, 1), 1)


def test_overwrite_replaces_only_labels_stores(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("hours of work")
    with pytest.raises(LabelsStoreError, match="not a napari-segany labels store"):
        LabelsStore.create(folder, (2, H, W), overwrite=True)
    assert (folder / "notes.txt").read_text() == "hours of work"
    old = LabelsStore.create(tmp_path / "s.zarr", (2, H, W))
    old.paint(0, rect(0, 2, 0, 2), 1)
    new = LabelsStore.create(tmp_path / "s.zarr", (3, H, W), overwrite=True)
    assert new.shape == (3, H, W) and new.history() == []

