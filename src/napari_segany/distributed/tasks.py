"""The tasks of a block run, as workers run them (see :mod:`.blocks` for the rules).

* ``A`` (one block): read the tile window, embed it, segment everything in it (embedding
  and segmentation fused, nothing cached), keep its labels in ``tiles.zarr``;
* ``B`` (one block): the stitching pairs with every later block whose window overlaps;
* ``C`` (one output chunk): the merged gids of the chunk (cores, filling, relabel-table
  rows of the blocks around it, small fragments removed) into ``stitched.zarr``, and the
  gids and pixel counts it holds;
* ``L`` (one chunk, two consecutive planes): overlaps of their objects, for linking;
* ``D`` (one output chunk): its final ids, written into the run's new labels store, one
  task per chunk (no store lock: nobody else writes a store before its run is done).

Every task writes only what it owns (its block's chunk, its output chunk, its record) and
computes the same thing every time, so a task retried after its worker died gives the
same result. A task whose record exists is not run again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..auto import AutoSettings, generate_masks, resolve_overlaps
from .blocks import (
    BlockPlan,
    Region,
    gid_base,
    iou_pairs,
    overlap_pairs,
    remove_small_fragments,
    render_region,
)
from .images import JobOptions, open_image
from .relabel import apply_lut
from .runfolder import RunFolder
from .worker import WorkerModel, worker_state

__all__ = ["segment_block", "stitch_pairs", "merge_chunk", "link_chunk", "write_chunk",
           "block_name", "chunk_name"]


def block_name(p: int, t: int) -> str:
    return f"{p}-{t}"


def chunk_name(p: int, region: Region) -> str:
    return f"{p}-{region[0]}-{region[2]}"


def _image(model: WorkerModel, path: str, opts: JobOptions) -> Any:
    state = worker_state(model)
    key = f"image:{path}:{opts.rgb}:{opts.channel_axis}"
    if key not in state.images:
        state.images[key] = open_image(path, opts)[0]
    return state.images[key]


def _array(model: WorkerModel, run: RunFolder, name: str) -> Any:
    state = worker_state(model)
    key = f"run:{run.path}:{name}"
    if key not in state.images:
        state.images[key] = run.array(name)
    return state.images[key]


def segment_block(run: RunFolder, model: WorkerModel, image: str, opts: JobOptions,
                  normalizer: Any, plan: BlockPlan, settings: AutoSettings, p: int,
                  t: int) -> dict[str, int]:
    """Task A: segment everything in one tile window of one plane."""
    tile = plan.grid.tiles[t]
    data = _image(model, image, opts)
    window = np.asarray(data[plan.planes[p] + tile.slices])
    backend = worker_state(model).backend()
    rgb = normalizer(window)
    recs = generate_masks(backend, rgb, embedding=backend.embed(rgb), settings=settings)
    labels = resolve_overlaps(recs, shape=tile.shape, max_overlap=settings.max_overlap)
    _array(model, run, "tiles.zarr")[p, t] = labels
    present = np.unique(labels[tile.core_in_window])
    present = present[present > 0].astype(np.uint32)
    run.write("A", block_name(p, t), n=np.uint32(labels.max()), present=present)
    return {"objects": int(len(present))}


def stitch_pairs(run: RunFolder, model: WorkerModel, plan: BlockPlan, p: int, t: int,
                 min_iou: float, *after: Any) -> int:
    """Task B: gids of the objects of block ``t`` and of each later overlapping block that
    agree in their windows' overlap."""
    tiles = _array(model, run, "tiles.zarr")
    grid = plan.grid.tiles
    a = grid[t]
    mine = np.asarray(tiles[p, t])
    edges = []
    for u in plan.neighbours(t):
        b = grid[u]
        y0, y1 = max(a.window[0], b.window[0]), min(a.window[1], b.window[1])
        x0, x1 = max(a.window[2], b.window[2]), min(a.window[3], b.window[3])
        la = mine[y0 - a.window[0]:y1 - a.window[0], x0 - a.window[2]:x1 - a.window[2]]
        lb = np.asarray(tiles[p, u, y0 - b.window[0]:y1 - b.window[0],
                              x0 - b.window[2]:x1 - b.window[2]])
        pairs = iou_pairs(la, lb, min_iou).astype(np.uint64)
        if len(pairs):
            edges.append(np.stack([pairs[:, 0] + gid_base(p, t, plan.n_tiles),
                                   pairs[:, 1] + gid_base(p, u, plan.n_tiles)], axis=1))
    out = np.concatenate(edges) if edges else np.zeros((0, 2), np.uint64)
    run.write("B", block_name(p, t), edges=out)
    return int(len(out))


def merge_chunk(run: RunFolder, model: WorkerModel, plan: BlockPlan, p: int, region: Region,
                min_area: int, roots: tuple[np.ndarray, np.ndarray]) -> int:
    """Task C: the merged gids of one output chunk."""
    tiles = _array(model, run, "tiles.zarr")
    grown = plan.grow(region, max(int(min_area), 0))
    present: dict[int, np.ndarray] = {}

    def present_of(k: int) -> np.ndarray:
        if k not in present:
            present[k] = run.read("A", block_name(p, k))["present"]
        return present[k]

    merged = render_region(plan, p, grown, lambda k: tiles[p, k], present_of, roots)
    merged = remove_small_fragments(merged, int(min_area))
    y0, y1, x0, x1 = region
    oy, ox = y0 - grown[0], x0 - grown[2]
    block = merged[oy:oy + y1 - y0, ox:ox + x1 - x0]
    _array(model, run, "stitched.zarr")[p, y0:y1, x0:x1] = block
    gids, counts = np.unique(block[block > 0], return_counts=True)
    run.write("C", chunk_name(p, region), gids=gids.astype(np.uint64), counts=counts)
    return int(len(gids))


def link_chunk(run: RunFolder, model: WorkerModel, p: int, q: int, region: Region,
               *after: Any) -> int:
    """Task L: overlaps of the objects of planes ``p`` and ``q`` in one chunk."""
    stitched = _array(model, run, "stitched.zarr")
    y0, y1, x0, x1 = region
    pairs, inter = overlap_pairs(np.asarray(stitched[p, y0:y1, x0:x1]),
                                 np.asarray(stitched[q, y0:y1, x0:x1]))
    run.write("L", f"{p}-{q}-{y0}-{x0}", pairs=pairs, inter=inter)
    return int(len(pairs))


def write_chunk(run: RunFolder, model: WorkerModel, out: str, plan: BlockPlan, p: int,
                region: Region, keys: np.ndarray, finals: np.ndarray) -> int:
    """Task D: one output chunk with its final ids.

    The output is a new store created by this run for this run (see
    :func:`~.volume.segment_blocks`), and ``region`` is exactly one of its chunks, written by
    this task alone: the chunk is written straight into the store's zarr array (zarr
    replaces a chunk through a new file and a rename, so a killed task leaves it absent or
    whole), without the store's write lock. The client records the pixels, objects and
    provenance in the store's log once every chunk is written.
    """
    y0, y1, x0, x1 = region
    block = np.asarray(_array(model, run, "stitched.zarr")[p, y0:y1, x0:x1])
    labels = apply_lut(block, keys, finals)
    _output(model, out)[plan.planes[p] + (slice(y0, y1), slice(x0, x1))] = labels
    n = int(np.count_nonzero(labels))
    run.write("D", chunk_name(p, region), pixels=np.int64(n))
    return n


def _output(model: WorkerModel, out: str) -> Any:
    """The output store's zarr array, opened once per worker."""
    import zarr

    state = worker_state(model)
    key = f"out:{out}"
    if key not in state.images:
        state.images[key] = zarr.open_array(str(out), mode="r+")
    return state.images[key]
