"""Faults while writing: a killed propagation, a full disk, a read-only store.

* A propagation process killed with SIGKILL part-way leaves a labels store that opens, with
  every plane either complete (as an uninterrupted run writes it) or untouched, and every
  object committed before intact.
* A full disk (ENOSPC) or a read-only file system (EROFS) while writing is reported as an
  exception naming the store (or cache), never ignored; what was written before stays.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zarr.storage._local as local

from napari_segany import Session
from napari_segany.cli import main
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.session import Segmentation
from napari_segany.storage import EmbeddingCache, LabelsStore, LabelsStoreError, LabelsStoreIOError
from rule_backend import RuleBackend

TESTS = Path(__file__).resolve().parent
SHAPE = (24, 48, 56)


def volume() -> np.ndarray:
    """Two bright objects through every plane: a drifting block and a fixed bar."""
    vol = np.full(SHAPE, 20, np.uint8)
    for z in range(SHAPE[0]):
        vol[z, 10 + z // 4: 30 + z // 4, 8:28] = 220
        vol[z, 36:44, 30:54] = 220
    return vol


def prompts() -> PromptSet:
    ps = PromptSet()
    ps.add((0,), 2, ObjectPrompt(points=[[15.0, 15.0]]))
    return ps


def prepared_store(path: Path) -> LabelsStore:
    """A store where object 1 (the bar) was committed on planes 0, 5 and 20."""
    s = Session(volume(), RuleBackend(), labels=path)
    for z in (0, 5, 20):
        s.commit(s.segment(ObjectPrompt(points=[[40.0, 40.0]]), z)[1], obj_id=1)
    return s.labels


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


# ------------------------------------------------------------------ killed propagation
CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from rule_backend import RuleBackend
    from test_faults import prompts, volume
    from napari_segany import Session

    class Slow(RuleBackend):
        def embed(self, image):
            time.sleep({delay})
            return super().embed(image)

    s = Session(volume(), Slow(), labels={store!r})
    s.propagate(prompts(), direction="forward",
                progress=lambda done, total: print(done, flush=True))
    print("finished", flush=True)
""")


def test_sigkill_mid_propagation_leaves_complete_or_untouched_planes(tmp_path):
    store = prepared_store(tmp_path / "killed.zarr")
    before = np.asarray(store.array[...]).copy()
    # What an uninterrupted run writes, on a copy of the same store.
    shutil.copytree(store.path, tmp_path / "full.zarr")
    full_session = Session(volume(), RuleBackend(), labels=tmp_path / "full.zarr")
    written = full_session.propagate(prompts(), direction="forward")
    full = np.asarray(full_session.labels.array[...])
    assert len(written[2]) == SHAPE[0]  # the rule propagates through every plane
    assert not np.array_equal(full, before)

    code = CHILD.format(tests=str(TESTS), delay=0.15, store=str(store.path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        done = 0
        while done < 5:
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, proc.stderr.read()
            assert line.strip() != "finished"
            done = int(line)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
        proc.stdout.close()
        proc.stderr.close()

    reopened = LabelsStore.open(store.path)  # opens, and is a labels store
    after = np.asarray(reopened.array[...])
    complete = [z for z in range(SHAPE[0]) if np.array_equal(after[z], full[z])]
    untouched = [z for z in range(SHAPE[0]) if np.array_equal(after[z], before[z])]
    torn = set(range(SHAPE[0])) - set(complete) - set(untouched)
    assert not torn, f"planes neither complete nor untouched: {sorted(torn)}"
    assert len(set(complete) - set(untouched)) >= 5  # the planes reported done are there
    assert set(range(SHAPE[0])) - set(complete), "the kill came after the last plane"
    # Object 1, committed before, is intact everywhere.
    assert np.array_equal(after == 1, before == 1)
    # Provenance still parses and the store is writable again.
    assert reopened.provenance["objects"].keys() >= {"1"}
    resumed = Session(volume(), RuleBackend(), labels=store.path)
    resumed.propagate(prompts(), direction="forward")
    assert np.array_equal(np.asarray(resumed.labels.array[...]), full)


# ------------------------------------------------------------------ full disk, read-only
def failing_chunk_writes(monkeypatch, err: int, after: int = 0) -> list[str]:
    """Make every chunk-file write after the first ``after`` fail with OSError(err)."""
    real_put, calls = local._put, []

    def put(path, value, exclusive=False):
        if "/c/" in Path(path).as_posix():
            calls.append(str(path))
            if len(calls) > after:
                raise OSError(err, os.strerror(err), str(path))
        return real_put(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", put)
    return calls


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_full_or_read_only_during_propagation_is_reported(tmp_path, monkeypatch, err):
    store = prepared_store(tmp_path / "l.zarr")
    before = np.asarray(store.array[...]).copy()
    s = Session(volume(), RuleBackend(), labels=store)
    calls = failing_chunk_writes(monkeypatch, err, after=3)
    with pytest.raises(LabelsStoreIOError) as info:
        s.propagate(prompts(), direction="forward")
    exc = info.value
    assert isinstance(exc, OSError) and exc.errno == err
    assert str(store.path) in str(exc) and "plane (3,)" in str(exc)
    assert os.strerror(err) in str(exc)
    assert isinstance(exc.__cause__, OSError)
    assert len(calls) == 4
    monkeypatch.undo()
    after = np.asarray(LabelsStore.open(store.path).array[...])
    assert [z for z in range(SHAPE[0]) if not np.array_equal(after[z], before[z])] == [0, 1, 2]
    assert all((after[z] == 2).any() for z in range(3))
    np.testing.assert_array_equal(after[3:], before[3:])
    assert np.array_equal(after == 1, before == 1)


def test_disk_full_on_commit_is_reported(tmp_path, monkeypatch):
    store = prepared_store(tmp_path / "l.zarr")
    before = snapshot(store.path)
    s = Session(volume(), RuleBackend(), labels=store)
    seg = Segmentation((7,), 3, np.ones(SHAPE[1:], bool), 1.0, None)
    failing_chunk_writes(monkeypatch, errno.ENOSPC)
    with pytest.raises(LabelsStoreIOError, match=r"plane \(7,\) of the labels store .*l\.zarr"):
        s.commit(seg)
    with pytest.raises(OSError, match="No space left"):
        s.labels.write_plane(0, np.full(SHAPE[1:], 5, np.uint32))
    monkeypatch.undo()
    after = snapshot(store.path)
    # Chunk files unchanged (the provenance may have been written before the chunk failed).
    assert {k: v for k, v in after.items() if k.startswith("c/")} == \
        {k: v for k, v in before.items() if k.startswith("c/")}
    failed = [op for op in s.labels.history() if op.kind == "commit"][-1]
    assert failed.status == "rolled back" and "plane (7,)" in failed.what
    undone = s.undo()  # the failed commit is no undo step: undo reaches the earlier work
    assert undone is None or "plane (7,)" not in undone.op.what


def test_disk_full_while_writing_provenance_is_reported(tmp_path, monkeypatch):
    store = prepared_store(tmp_path / "l.zarr")
    from napari_segany.storage import log as store_log

    def full(self, *records):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    monkeypatch.setattr(store_log.EventLog, "append", full)
    with pytest.raises(LabelsStoreIOError, match=r"object registry of the labels store"):
        store.set_object(4, class_name="x")
    with pytest.raises(LabelsStoreIOError, match="l.zarr"):
        Session(volume(), RuleBackend(), labels=store.path)


def test_read_only_store_handle_is_refused_before_writing(tmp_path):
    store = prepared_store(tmp_path / "l.zarr")
    before = snapshot(store.path)
    with pytest.raises(LabelsStoreError, match="read-only"):
        Session(volume(), RuleBackend(), labels=LabelsStore.open(store.path, mode="r"))
    assert snapshot(store.path) == before


def test_disk_full_in_embedding_cache_is_reported_and_plane_not_marked_done(tmp_path,
                                                                          monkeypatch):
    vol = volume()
    s = Session(vol, RuleBackend(), cache=tmp_path / "c.zarr")
    cache: EmbeddingCache = s.cache
    real_put = local._put

    def put(path, value, exclusive=False):
        p = Path(path).as_posix()
        if "/features/" in p and "/c/" in p and "/c/2/" in p:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_put(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", put)
    with pytest.raises(OSError, match=r"plane \(2,\) to the cache .*c\.zarr.*No space left"):
        cache.precompute()
    monkeypatch.undo()
    assert cache.computed_planes() == [(0,), (1,)]
    assert cache.precompute() == SHAPE[0] - 2  # resumes from the failed plane


def test_cli_reports_a_full_disk_naming_the_store(tmp_path, monkeypatch, capsys):
    import tifffile

    tif = tmp_path / "vol.tif"
    tifffile.imwrite(tif, volume()[:4], photometric="minisblack")
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    failing_chunk_writes(monkeypatch, errno.ENOSPC)
    code = main(["propagate", str(tif), "--box", "6,8,30,32", "--plane", "1", "--out",
                 str(tmp_path / "o.zarr"), "-q", "--model", "sam_tiny", "--random-weights",
                 "--device", "cpu", "--min-score", "-1e9", "--min-area", "0",
                 "--max-area-ratio", "inf"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "o.zarr" in err and "No space left" in err
