"""What the labels store's history costs: undo latency, journal bytes, write throughput.

1. Commit -> undo -> redo on a 2048 x 2048 plane (a disc of radius 300 committed as one
   operation), median of ``--repeats`` rounds, next to one raw zarr write of that plane.
2. A propagation over ``--planes`` planes of 512 x 512 (one operation, a disc per plane),
   then its undo and redo.
3. Journal bytes per written plane: sparse (a few discs per 2048 x 2048 plane, first
   write) and dense (labels covering ~90 % of each plane, as segment everything leaves
   them, then a re-propagation painting over them).
4. Write throughput in the labels-at-scale pattern (4 discs per 2048 x 2048 plane, each
   ``paint`` + ``set_object`` as ``Session.propagate`` writes them), side by side in one
   run: the format-1 store of ``--baseline-rev`` (the last release before the journal, read
   from this repository's git history), the current store inside one operation (what
   propagation does), and the current store with every paint its own operation. Rounds
   alternate; the best round of each is reported.

    python bench/store_history.py --planes 1000 --repeats 10 --scale-planes 40

Writes ``store_history.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "4d96469"  # labels.py of format 1 (everything in zarr.json, no journal)


def disc(size: int, cy: int, cx: int, r: int):
    import numpy as np

    yy, xx = np.ogrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def journal_bytes(store) -> int:
    """Bytes only the journal keeps alive (old chunk files no longer in the store)."""
    return sum(store.journal.held_bytes().values())


def latency(tmp: Path, repeats: int) -> dict:
    import numpy as np
    import zarr

    from napari_segany.storage import LabelsStore

    size = 2048
    store = LabelsStore.create(tmp / "lat.zarr", (1, size, size))
    raw = zarr.create_array(store=str(tmp / "raw.zarr"), shape=(size, size),
                            chunks=(size, size), dtype="uint32", fill_value=0, zarr_format=3)
    rows = {"commit": [], "undo": [], "redo": [], "raw_write": []}
    for k in range(repeats):
        mask = disc(size, 1024, 700 + 60 * k, 300)  # a new object over part of the last one
        t0 = time.perf_counter()
        with store.operation("commit", f"commit {k}"):
            store.paint((0,), mask, k + 1, overlap="replace")
            store.set_object(k + 1, class_name="cell")
        t1 = time.perf_counter()
        store.undo()
        t2 = time.perf_counter()
        store.redo()
        t3 = time.perf_counter()
        plane = np.where(mask, k + 1, 0).astype(np.uint32)
        t4 = time.perf_counter()
        raw[...] = plane
        t5 = time.perf_counter()
        for name, dt in (("commit", t1 - t0), ("undo", t2 - t1), ("redo", t3 - t2),
                         ("raw_write", t5 - t4)):
            rows[name].append(dt * 1e3)
    return {"plane": [size, size], "repeats": repeats,
            **{f"{k}_median_ms": round(statistics.median(v), 1) for k, v in rows.items()}}


def propagation(tmp: Path, planes: int) -> dict:
    from napari_segany.storage import LabelsStore

    size = 512
    store = LabelsStore.create(tmp / "prop.zarr", (planes, size, size))
    t0 = time.perf_counter()
    with store.operation("propagate", f"propagation over {planes} planes"):
        for z in range(planes):
            store.paint((z,), disc(size, 256, 100 + (z % 300), 60), 1)
            store.set_object(1)
    t1 = time.perf_counter()
    result = store.undo()
    t2 = time.perf_counter()
    store.redo()
    t3 = time.perf_counter()
    return {"planes": planes, "plane": [size, size], "write_s": round(t1 - t0, 2),
            "undo_s": round(t2 - t1, 2), "redo_s": round(t3 - t2, 2),
            "undo_ms_per_plane": round((t2 - t1) / planes * 1e3, 2),
            "pixels_reverted": result.reverted,
            "log_bytes": (Path(store.path) / ".segany" / "log.jsonl").stat().st_size}


def journal(tmp: Path, planes: int) -> dict:
    import numpy as np

    from napari_segany.storage import LabelsStore

    size = 2048
    rng = np.random.default_rng(0)
    sparse = LabelsStore.create(tmp / "sparse.zarr", (planes, size, size))
    with sparse.operation("propagate", "sparse"):
        for z in range(planes):
            for oid in range(1, 4):
                sparse.paint((z,), disc(size, *(int(v) for v in rng.integers(300, 1700, 2)),
                                        int(rng.integers(50, 200))), oid)
    chunk = sum(f.stat().st_size for f in (Path(sparse.path) / "c").rglob("*") if f.is_file())
    dense = LabelsStore.create(tmp / "dense.zarr", (planes, size, size))
    tiles = size // 64
    base = (np.arange(tiles * tiles, dtype=np.uint32).reshape(tiles, tiles) + 1)
    auto = np.kron(base, np.ones((64, 64), np.uint32))
    auto[rng.random((size, size)) < 0.1] = 0  # ~90 % covered
    with dense.operation("auto", "segment everything"):
        for z in range(planes):
            dense.write_plane((z,), auto)
    auto_bytes = journal_bytes(dense)
    auto_chunks = sum(f.stat().st_size for f in (Path(dense.path) / "c").rglob("*")
                      if f.is_file())
    with dense.operation("propagate", "re-propagation"):
        for z in range(planes):
            dense.paint((z,), disc(size, 1024, 1024, 700), 99_999, overlap="replace")
    total = journal_bytes(dense)
    dense_chunks = sum(f.stat().st_size for f in (Path(dense.path) / "c").rglob("*")
                       if f.is_file())
    return {"planes": planes, "plane": [size, size],
            "sparse_journal_bytes_per_plane": round(journal_bytes(sparse) / planes),
            "sparse_chunk_bytes_per_plane": round(chunk / planes),
            "dense_first_write_journal_bytes_per_plane": round(auto_bytes / planes),
            "dense_rewrite_journal_bytes_per_plane": round((total - auto_bytes) / planes),
            "dense_chunk_bytes_per_plane_before_rewrite": round(auto_chunks / planes),
            "dense_chunk_bytes_per_plane": round(dense_chunks / planes)}


def _baseline_store_class(rev: str) -> type:
    """The format-1 LabelsStore as released at ``rev`` (read from git, run as it was)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/napari_segany/labels.py"],
                         capture_output=True, text=True, check=True).stdout
    src = src.replace("from ._version import __version__", "__version__ = 'format-1'")
    module = types.ModuleType("format1_labels")
    exec(compile(src, f"{rev}:labels.py", "exec"), module.__dict__)
    return module.LabelsStore


def _write_scale(store, planes: int, size: int, seed: int) -> float:
    import numpy as np

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for k in range(planes):
        for oid in range(1, 5):
            r = int(rng.integers(size // 40, size // 10))
            cy, cx = (int(v) for v in rng.integers(r, size - r, 2))
            store.paint((k,), disc(size, cy, cx, r), oid, overlap="keep")
            store.set_object(oid)
    return planes / (time.perf_counter() - t0)


def throughput(tmp: Path, planes: int, rounds: int, rev: str) -> dict:
    from napari_segany.storage import LabelsStore

    size = 2048
    old = _baseline_store_class(rev)
    rates: dict[str, list[float]] = {"format1": [], "one_operation": [], "operation_per_paint": []}
    for r in range(rounds):
        for name in rates:
            path = tmp / f"{name}-{r}.zarr"
            if name == "format1":
                store = old.create(path, (planes, size, size))
                rates[name].append(_write_scale(store, planes, size, r))
            else:
                store = LabelsStore.create(path, (planes, size, size))
                if name == "one_operation":
                    with store.operation("propagate", "labels at scale"):
                        rates[name].append(_write_scale(store, planes, size, r))
                else:
                    rates[name].append(_write_scale(store, planes, size, r))
            shutil.rmtree(path, ignore_errors=True)
    best = {k: max(v) for k, v in rates.items()}
    return {"planes": planes, "plane": [size, size], "rounds": rounds, "baseline_rev": rev,
            **{f"{k}_planes_per_s": round(v, 2) for k, v in best.items()},
            "one_operation_vs_format1": round(best["one_operation"] / best["format1"], 3),
            "operation_per_paint_vs_format1": round(best["operation_per_paint"]
                                                    / best["format1"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--planes", type=int, default=1000, help="planes of the propagation undo")
    ap.add_argument("--journal-planes", type=int, default=10)
    ap.add_argument("--scale-planes", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if importlib.util.find_spec("napari_segany") is None:
        sys.exit("install napari-segany first (bash scripts/install.sh)")
    tmp = Path(tempfile.mkdtemp(prefix="segany-history-"))
    try:
        rows = {"latency": latency(tmp, args.repeats)}
        print("latency", rows["latency"], flush=True)
        rows["propagation"] = propagation(tmp, args.planes)
        print("propagation", rows["propagation"], flush=True)
        rows["journal"] = journal(tmp, args.journal_planes)
        print("journal", rows["journal"], flush=True)
        rows["throughput"] = throughput(tmp, args.scale_planes, args.rounds, args.baseline_rev)
        print("throughput", rows["throughput"], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lat, prop, jr, tp = rows["latency"], rows["propagation"], rows["journal"], rows["throughput"]
    print(f"\n2048 x 2048 plane: commit {lat['commit_median_ms']} ms, undo "
          f"{lat['undo_median_ms']} ms, redo {lat['redo_median_ms']} ms (raw zarr write of the "
          f"plane {lat['raw_write_median_ms']} ms)")
    print(f"propagation over {prop['planes']} planes of 512 x 512: written in "
          f"{prop['write_s']} s, undone in {prop['undo_s']} s, redone in {prop['redo_s']} s")
    print(f"journal per plane: sparse {jr['sparse_journal_bytes_per_plane']} B; dense "
          f"re-propagation {jr['dense_rewrite_journal_bytes_per_plane']} B (the chunk it "
          f"replaced: {jr['dense_chunk_bytes_per_plane_before_rewrite']} B)")
    print(f"labels at scale: format 1 {tp['format1_planes_per_s']} planes/s, one operation "
          f"{tp['one_operation_planes_per_s']} ({tp['one_operation_vs_format1']}x), an operation "
          f"per paint {tp['operation_per_paint_planes_per_s']} "
          f"({tp['operation_per_paint_vs_format1']}x)")
    print(f"wrote {write_json('store_history.json', rows, args.out)}")


if __name__ == "__main__":
    main()
