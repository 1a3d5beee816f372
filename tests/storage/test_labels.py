"""Tests for napari_segany.storage.LabelsStore: layout on disk, painting, provenance, errors.

The history (operations, undo, the log, the lock, recovery) is tested in test_history.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_segany import __version__
from napari_segany.storage import ATTRS_KEY, FORMAT_VERSION, LabelsStore, LabelsStoreError

H, W = 12, 10


# -- helpers ------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file of the zarr array under ``root`` (not the
    store's own ``.segany`` folder: log, journal, lock)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith(".segany/")}


def chunk_file(key: tuple[int, ...]) -> str:
    """Relative path of the one chunk holding plane ``key`` (zarr v3 default key encoding)."""
    return "c/" + "/".join(str(i) for i in (*key, 0, 0))


def rect(y0: int, y1: int, x0: int, x1: int, shape=(H, W)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def store3d(tmp_path) -> LabelsStore:
    return LabelsStore.create(tmp_path / "labels.zarr", (4, H, W))


# -- creation and layout --------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(H, W), (5, H, W), (3, 2, H, W)])
def test_create_is_zarr_v3_uint32_with_one_plane_per_chunk(tmp_path, shape):
    path = tmp_path / "l.zarr"
    store = LabelsStore.create(path, shape)
    assert store.shape == shape
    assert store.plane_shape == (H, W)
    assert store.array.dtype == np.uint32
    assert store.array.chunks == (1,) * (len(shape) - 2) + (H, W)
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert meta["node_type"] == "array"
    assert meta["data_type"] == "uint32"
    assert meta["shape"] == list(shape)
    # The array opened independently by zarr agrees.
    arr = zarr.open_array(str(path), mode="r")
    assert arr.metadata.zarr_format == 3
    assert arr.chunks == (1,) * (len(shape) - 2) + (H, W)
    # Nothing is written yet: no chunk files, everything reads as background.
    assert set(snapshot(path)) == {"zarr.json"}
    assert not np.asarray(arr[...]).any()


@pytest.mark.parametrize("shape", [(5,), (0, 4), (3, 0, 4), ()])
def test_create_rejects_bad_shapes(tmp_path, shape):
    with pytest.raises(LabelsStoreError, match="shape"):
        LabelsStore.create(tmp_path / "l.zarr", shape)
    assert not (tmp_path / "l.zarr").exists()


@pytest.mark.parametrize("shape", [(H, W), (4, H, W), (2, 3, H, W)])
def test_writing_a_plane_changes_only_that_planes_chunk_file(tmp_path, shape):
    path = tmp_path / "l.zarr"
    store = LabelsStore.create(path, shape)
    keys = list(np.ndindex(shape[:-2]))
    rng = np.random.default_rng(1)
    for n, key in enumerate(keys):
        before = snapshot(path)
        plane = rng.integers(1, 50, size=(H, W)).astype(np.uint32)
        store.write_plane(key, plane)
        after = snapshot(path)
        changed = {f for f in set(before) | set(after) if before.get(f) != after.get(f)}
        # zarr.json never changes: what was written is recorded in the log.
        assert changed == {chunk_file(key)}
        assert set(after) == {"zarr.json"} | {chunk_file(k) for k in keys[: n + 1]}
        # Rewriting a plane already recorded touches its chunk file and nothing else.
        before = after
        store.write_plane(key, plane + 1)
        after = snapshot(path)
        changed = {f for f in set(before) | set(after) if before.get(f) != after.get(f)}
        assert changed == {chunk_file(key)}
    # Every plane reads back what was last written to it, from a fresh handle too.
    reopened = LabelsStore.open(path)
    rng = np.random.default_rng(1)
    for key in keys:
        expected = rng.integers(1, 50, size=(H, W)).astype(np.uint32) + 1
        assert np.array_equal(store.read_plane(key), expected)
        assert np.array_equal(reopened.read_plane(key), expected)


def test_empty_planes_have_no_chunk_file(store3d):
    path = store3d.path
    store3d.write_plane(1, rect(2, 5, 2, 5).astype(np.uint8) * 7)
    assert chunk_file((1,)) in snapshot(path)
    # Clearing the plane removes its chunk file; the plane still reads as zeros.
    store3d.write_plane(1, np.zeros((H, W), np.uint32))
    assert set(snapshot(path)) == {"zarr.json"}
    assert not store3d.read_plane(1).any()
    assert store3d.read_plane(1).dtype == np.uint32
    assert store3d.read_plane(1).shape == (H, W)


# -- painting -------------------------------------------------------------------------------


def test_paint_keep_never_overwrites_another_object(store3d):
    a = rect(2, 8, 2, 7)
    b = rect(5, 11, 4, 9)  # overlaps a in rows 5..7, cols 4..6
    assert (a & b).any()
    store3d.paint(2, a, 1)
    new = store3d.paint(2, b, 2, overlap="keep")
    plane = store3d.read_plane(2)
    assert np.array_equal(new, plane)
    assert np.array_equal(plane == 1, a)  # object 1 untouched
    assert np.array_equal(plane == 2, b & ~a)  # object 2 only where it was background
    assert not plane[~(a | b)].any()
    # Other planes untouched.
    for z in (0, 1, 3):
        assert not store3d.read_plane(z).any()


def test_paint_replace_lets_the_new_mask_win(store3d):
    a = rect(2, 8, 2, 7)
    b = rect(5, 11, 4, 9)
    store3d.paint(0, a, 1)
    store3d.paint(0, b, 2, overlap="replace")
    plane = store3d.read_plane(0)
    assert np.array_equal(plane == 2, b)
    assert np.array_equal(plane == 1, a & ~b)


@pytest.mark.parametrize("overlap", ["keep", "replace"])
def test_painting_an_object_again_replaces_its_pixels_on_that_plane(store3d, overlap):
    a_old = rect(0, 4, 0, 4)
    a_new = rect(6, 10, 5, 9)
    other = rect(0, 3, 6, 10)
    store3d.paint(1, other, 5)
    store3d.paint(1, a_old, 3)
    store3d.paint(3, a_old, 3)  # same object on another plane must survive
    store3d.paint(1, a_new, 3, overlap=overlap)
    plane = store3d.read_plane(1)
    assert np.array_equal(plane == 3, a_new)
    assert np.array_equal(plane == 5, other)
    assert not plane[a_old].any()  # the old pixels went back to background
    assert np.array_equal(store3d.read_plane(3) == 3, a_old)


def test_paint_keep_can_grow_an_object_over_its_own_pixels(store3d):
    one = rect(0, 5, 0, 5)
    store3d.paint(0, one, 1)
    store3d.paint(0, rect(3, 9, 3, 9), 2)
    two = rect(3, 9, 3, 9) & ~one
    grown = rect(0, 7, 0, 7)
    plane = store3d.paint(0, grown, 1, overlap="keep")
    assert np.array_equal(plane == 1, grown & ~two)
    assert np.array_equal(plane == 2, two)


def test_paint_on_2d_store(tmp_path):
    store = LabelsStore.create(tmp_path / "l.zarr", (H, W))
    out = store.paint((), rect(1, 3, 1, 3), 9)
    assert out.dtype == np.uint32
    assert set(np.unique(store.read_plane()).tolist()) == {0, 9}
    assert store.provenance["planes"] == [[]]


# -- provenance -----------------------------------------------------------------------------


def test_provenance_fields(store3d):
    prov = store3d.provenance
    assert prov["format"] == FORMAT_VERSION == 2
    assert prov["version"] == __version__
    assert prov["objects"] == {}
    assert prov["planes"] == []
    assert store3d.next_object_id() == 1

    store3d.paint(2, rect(0, 2, 0, 2), 1)
    store3d.set_object(1, class_name="nucleus")
    store3d.paint(0, rect(4, 6, 4, 6), 4)
    store3d.set_object(4, class_name="cell")
    store3d.set_object(1, score=0.5)  # merges with earlier info
    store3d.update_provenance(model={"name": "m"}, prompts={"1": {"box": None}})
    prov = store3d.provenance
    assert prov["objects"] == {"1": {"class_name": "nucleus", "score": 0.5},
                               "4": {"class_name": "cell"}}
    assert prov["planes"] == [[0], [2]]  # sorted, each plane once
    assert prov["model"] == {"name": "m"}
    assert store3d.next_object_id() == 5
    # Painting the same plane again does not duplicate it.
    store3d.paint(2, rect(0, 3, 0, 3), 1)
    assert store3d.provenance["planes"] == [[0], [2]]
    # zarr.json stays as created; the registry is in the append-only log beside it.
    meta = json.loads((store3d.path / "zarr.json").read_text())
    assert set(meta["attributes"][ATTRS_KEY]) == {"format", "version", "chunks", "log"}
    log = [json.loads(line) for line in
           (store3d.path / ".segany" / "log.jsonl").read_text().splitlines()]
    assert {"t": "obj", "id": 4} .items() <= next(r for r in log if r.get("id") == 4).items()


def test_create_with_extra_provenance(tmp_path):
    store = LabelsStore.create(tmp_path / "l.zarr", (H, W), provenance={"source": "x.tif"})
    assert store.provenance["source"] == "x.tif"
    assert store.provenance["format"] == FORMAT_VERSION


def test_provenance_copy_does_not_alias_the_store(store3d):
    prov = store3d.provenance
    prov["objects"]["7"] = {"class_name": "ghost"}
    prov["format"] = 99
    assert store3d.provenance["format"] == FORMAT_VERSION
    assert "7" not in store3d.provenance["objects"]


# -- reopening ------------------------------------------------------------------------------


def test_reopen_gives_same_content_and_provenance(store3d):
    store3d.paint(1, rect(1, 6, 1, 6), 1)
    store3d.paint(3, rect(2, 9, 3, 8), 2)
    store3d.set_object(2, class_name="mito")
    store3d.update_provenance(settings={"alpha": 1})
    again = LabelsStore.open(store3d.path)
    assert again.shape == store3d.shape
    assert again.provenance == store3d.provenance
    for z in range(4):
        assert np.array_equal(again.read_plane(z), store3d.read_plane(z))
    # open_or_create with the right shape reopens, keeping the content.
    third = LabelsStore.open_or_create(store3d.path, (4, H, W))
    assert np.array_equal(third.read_plane(3), store3d.read_plane(3))
    assert third.next_object_id() == 3


def test_open_or_create_creates_when_missing(tmp_path):
    store = LabelsStore.open_or_create(tmp_path / "new.zarr", (2, H, W))
    assert store.shape == (2, H, W)
    assert (tmp_path / "new.zarr" / "zarr.json").is_file()


def test_open_or_create_with_other_shape_fails_and_leaves_store_untouched(store3d):
    store3d.paint(1, rect(1, 6, 1, 6), 1)
    before = snapshot(store3d.path)
    with pytest.raises(LabelsStoreError) as info:
        LabelsStore.open_or_create(store3d.path, (5, H, W))
    msg = str(info.value)
    assert str((4, H, W)) in msg and str((5, H, W)) in msg
    assert snapshot(store3d.path) == before


def test_create_on_existing_path_without_overwrite_fails(store3d):
    store3d.paint(0, rect(1, 6, 1, 6), 2)
    before = snapshot(store3d.path)
    with pytest.raises(LabelsStoreError, match="already exists"):
        LabelsStore.create(store3d.path, (4, H, W))
    with pytest.raises(LabelsStoreError, match="already exists"):
        LabelsStore.create(store3d.path, (2, 3, 3))
    assert snapshot(store3d.path) == before
    # overwrite=True replaces it with an empty store.
    fresh = LabelsStore.create(store3d.path, (2, 3, 3), overwrite=True)
    assert fresh.shape == (2, 3, 3)
    assert not fresh.read_plane(0).any()
    assert fresh.provenance["planes"] == []


def test_open_missing_path(tmp_path):
    with pytest.raises(LabelsStoreError, match="no labels store"):
        LabelsStore.open(tmp_path / "nothing.zarr")


def test_open_foreign_uint32_array_is_refused(tmp_path):
    path = tmp_path / "foreign.zarr"
    zarr.create_array(store=str(path), shape=(4, 5), dtype="uint32", zarr_format=3)
    before = snapshot(path)
    with pytest.raises(LabelsStoreError, match="not written by napari-segany"):
        LabelsStore.open(path)
    with pytest.raises(LabelsStoreError):
        LabelsStore.open_or_create(path, (4, 5))
    assert snapshot(path) == before


def test_open_float_array_is_refused(tmp_path):
    path = tmp_path / "float.zarr"
    arr = zarr.create_array(store=str(path), shape=(4, 5), dtype="float32", zarr_format=3)
    arr.attrs[ATTRS_KEY] = {"format": 1}  # even with our attributes
    with pytest.raises(LabelsStoreError, match="float32"):
        LabelsStore.open(path)


def test_open_1d_array_and_group_and_plain_folder_are_refused(tmp_path):
    one = tmp_path / "one.zarr"
    arr = zarr.create_array(store=str(one), shape=(7,), dtype="uint32", zarr_format=3)
    arr.attrs[ATTRS_KEY] = {"format": 1}
    with pytest.raises(LabelsStoreError, match="1D"):
        LabelsStore.open(one)
    group = tmp_path / "group.zarr"
    zarr.create_group(str(group))
    with pytest.raises(LabelsStoreError, match="not a zarr array"):
        LabelsStore.open(group)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(LabelsStoreError):
        LabelsStore.open(folder)
    assert (folder / "notes.txt").read_text() == "hello"


# -- bad inputs -----------------------------------------------------------------------------


@pytest.fixture
def filled(store3d) -> LabelsStore:
    store3d.paint(1, rect(1, 6, 1, 6), 1)
    store3d.paint(2, rect(3, 9, 2, 8), 2)
    store3d.set_object(1, class_name="a")
    return store3d


BAD_CALLS = {
    "plane shape": (lambda s: s.write_plane(1, np.ones((H + 1, W), np.uint32)),
                    str((H + 1, W))),
    "mask shape": (lambda s: s.paint(1, np.ones((H, W - 1), bool), 1), str((H, W - 1))),
    "negative labels": (lambda s: s.write_plane(1, np.full((H, W), -3, np.int32)), "-3"),
    "float labels": (lambda s: s.write_plane(1, np.full((H, W), 1.5)), "float64"),
    "too large labels": (lambda s: s.write_plane(1, np.full((H, W), 2**32 + 5, np.int64)),
                         str(2**32 + 5)),
    "plane out of range": (lambda s: s.write_plane(4, np.ones((H, W), np.uint32)), "(4,)"),
    "negative plane": (lambda s: s.write_plane(-1, np.ones((H, W), np.uint32)), "(-1,)"),
    "plane with too many axes": (lambda s: s.write_plane((1, 0), np.ones((H, W), np.uint32)),
                                 "(1, 0)"),
    "read out of range": (lambda s: s.read_plane(7), "(7,)"),
    "paint out of range": (lambda s: s.paint(9, np.ones((H, W), bool), 1), "(9,)"),
    "obj id 0": (lambda s: s.paint(1, np.ones((H, W), bool), 0), "got 0"),
    "negative obj id": (lambda s: s.paint(1, np.ones((H, W), bool), -2), "-2"),
    "unknown overlap": (lambda s: s.paint(1, np.ones((H, W), bool), 1, overlap="merge"),
                        "'merge'"),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_inputs_raise_and_leave_store_unchanged(filled, name):
    call, needle = BAD_CALLS[name]
    before_files = snapshot(filled.path)
    before_planes = [filled.read_plane(z).copy() for z in range(4)]
    before_prov = filled.provenance
    with pytest.raises(LabelsStoreError) as info:
        call(filled)
    assert needle in str(info.value), str(info.value)
    assert snapshot(filled.path) == before_files
    assert all(np.array_equal(filled.read_plane(z), p) for z, p in enumerate(before_planes))
    assert filled.provenance == before_prov


def test_label_limits_are_accepted(store3d):
    """The largest uint32 id and bool/uint8/int64 inputs within range are fine."""
    plane = np.zeros((H, W), np.int64)
    plane[0, 0] = 2**32 - 1
    plane[1, 1] = 1
    store3d.write_plane(0, plane)
    assert store3d.read_plane(0)[0, 0] == 2**32 - 1
    store3d.write_plane(1, rect(0, 2, 0, 2))  # bool
    assert store3d.read_plane(1).sum() == 4


# -- property test --------------------------------------------------------------------------

_DTYPES = {
    "bool": (np.bool_, 0, 1),
    "uint8": (np.uint8, 0, 255),
    "uint16": (np.uint16, 0, 2**16 - 1),
    "int32": (np.int32, 0, 2**31 - 1),
    "uint32": (np.uint32, 0, 2**32 - 1),
    "int64": (np.int64, 0, 2**32 - 1),
    "uint64": (np.uint64, 0, 2**32 - 1),
}


@st.composite
def plane_writes(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    dtype, lo, hi = _DTYPES[draw(st.sampled_from(sorted(_DTYPES)))]
    keys = list(np.ndindex(lead))
    n = draw(st.integers(1, 4))
    writes = []
    for _ in range(n):
        key = draw(st.sampled_from(keys))
        seed = draw(st.integers(0, 2**32 - 1))
        sparse = draw(st.booleans())
        rng = np.random.default_rng(seed)
        vals = rng.integers(lo, hi, size=(h, w), endpoint=True, dtype=np.uint64).astype(dtype)
        if sparse:
            vals[rng.random((h, w)) < 0.7] = 0
        writes.append((key, vals))
    return lead + (h, w), writes


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plane_writes())
def test_written_planes_round_trip_exactly(case):
    shape, writes = case
    with tempfile.TemporaryDirectory() as tmp:
        store = LabelsStore.create(Path(tmp) / "l.zarr", shape)
        expected = np.zeros(shape, np.uint64)
        for key, vals in writes:
            store.write_plane(key, vals)
            expected[key] = vals
            assert store.read_plane(key).dtype == np.uint32
            assert np.array_equal(store.read_plane(key).astype(np.uint64), vals.astype(np.uint64))
        again = LabelsStore.open(Path(tmp) / "l.zarr", mode="r")
        for key in np.ndindex(shape[:-2]):
            assert np.array_equal(again.read_plane(key).astype(np.uint64), expected[key])
        assert again.provenance["planes"] == sorted(list(k) for k in {k for k, _ in writes})


# -- crash safety ---------------------------------------------------------------------------


def _prepared(tmp_path) -> tuple[LabelsStore, np.ndarray]:
    store = LabelsStore.create(tmp_path / "l.zarr", (3, 64, 48))
    old = np.random.default_rng(0).integers(1, 1000, size=(64, 48)).astype(np.uint32)
    store.write_plane(1, old)
    store.set_object(1)
    return store, old


def test_torn_chunk_write_leaves_previous_plane_intact(tmp_path, monkeypatch):
    """A write that dies half-way through the chunk file leaves the old plane readable."""
    import zarr.storage._local as local

    store, old = _prepared(tmp_path)
    before = snapshot(store.path)
    calls = []

    def torn_put(path, value, exclusive=False):
        # zarr's own atomic-write context, but the process "dies" after half the bytes.
        calls.append(path)
        view = memoryview(value.as_buffer_like()).cast("B")
        with local._atomic_write(path, "wb", exclusive=exclusive) as f:
            f.write(view[: len(view) // 2])
            raise OSError("simulated crash in the middle of a chunk write")

    monkeypatch.setattr(local, "_put", torn_put)
    new = np.full((64, 48), 7, np.uint32)
    with pytest.raises(OSError, match="simulated crash"):
        store.write_plane(1, new)
    assert calls and calls[0].as_posix().endswith(chunk_file((1,)))
    monkeypatch.undo()
    # Old plane fully readable, through this handle and a fresh one; files byte-identical,
    # no temporary files left behind.
    assert np.array_equal(store.read_plane(1), old)
    assert np.array_equal(LabelsStore.open(store.path).read_plane(1), old)
    assert snapshot(store.path) == before
    assert store.provenance["planes"] == [[1]]


def test_failed_rename_leaves_previous_plane_intact(tmp_path, monkeypatch):
    """The whole temporary chunk was written but moving it into place failed."""
    store, old = _prepared(tmp_path)
    before = snapshot(store.path)
    real_replace = Path.replace
    moved = []

    def failing_replace(self, target):
        if str(self).endswith(".partial"):
            moved.append(self)
            raise OSError("simulated crash before rename")
        return real_replace(self, target)

    monkeypatch.setattr(Path, "replace", failing_replace)
    with pytest.raises(OSError, match="before rename"):
        store.write_plane(1, np.full((64, 48), 9, np.uint32))
    monkeypatch.undo()
    assert moved, "zarr did not write the chunk through a temporary file"
    assert np.array_equal(LabelsStore.open(store.path).read_plane(1), old)
    assert snapshot(store.path) == before


def test_killed_process_during_chunk_write_leaves_previous_plane_intact(tmp_path):
    """A hard kill (no cleanup at all) in the middle of writing the chunk file."""
    store, old = _prepared(tmp_path)
    before = snapshot(store.path)
    script = textwrap.dedent(
        f"""
        import os
        import numpy as np
        import zarr.storage._local as local
        from napari_segany.storage import LabelsStore

        def dying_put(path, value, exclusive=False):
            view = memoryview(value.as_buffer_like()).cast("B")
            with local._atomic_write(path, "wb", exclusive=exclusive) as f:
                f.write(view[: len(view) // 2])
                f.flush()
                os._exit(17)

        local._put = dying_put
        store = LabelsStore.open({str(store.path)!r})
        store.write_plane(1, np.full((64, 48), 5, np.uint32))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 17, proc.stderr
    after = snapshot(store.path)
    # The chunk file itself is byte-identical; at most a stray temporary file was left.
    leftovers = set(after) - set(before)
    assert all(f.endswith(".partial") for f in leftovers), leftovers
    assert {f: after[f] for f in before} == before
    reopened = LabelsStore.open(store.path)
    assert np.array_equal(reopened.read_plane(1), old)
    assert not reopened.read_plane(0).any() and not reopened.read_plane(2).any()
    # The store stays writable after the crash.
    reopened.write_plane(1, old + 1)
    assert np.array_equal(LabelsStore.open(store.path).read_plane(1), old + 1)


# -- read-only ------------------------------------------------------------------------------


def test_read_only_store_refuses_writes(tmp_path):
    store, old = _prepared(tmp_path)
    store.set_object(1, class_name="a")
    before = snapshot(store.path)
    ro = LabelsStore.open(store.path, mode="r")
    assert np.array_equal(ro.read_plane(1), old)
    prov = ro.provenance
    attempts = [
        lambda: ro.write_plane(0, np.ones((64, 48), np.uint32)),
        lambda: ro.paint(2, np.ones((64, 48), bool), 3),
        lambda: ro.set_object(1, class_name="b"),
        lambda: ro.update_provenance(note="x"),
    ]
    for attempt in attempts:
        with pytest.raises(LabelsStoreError, match="read-only"):
            attempt()
    assert snapshot(store.path) == before
    # The handle's view of the store did not change either.
    assert ro.provenance == prov
    assert not ro.read_plane(0).any()
