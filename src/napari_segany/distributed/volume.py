"""One image too large for one process, segmented in blocks on a cluster.

:func:`segment_blocks` runs segment everything on a plane or volume cut into blocks (see
:mod:`.blocks` for the geometry, the ids and the merge rule, :mod:`.tasks` for the tasks):

1. ``A``: every block segmented (embedding fused with segmentation, nothing cached);
2. ``B``: stitching pairs between overlapping blocks (pipelined behind ``A``);
3. on the client: the relabel table, connected components of the pairs;
4. ``C``: every output chunk merged, from the blocks around it and its rows of the table;
5. ``L`` (volumes, stacks): overlaps of objects on consecutive planes, per chunk; on the
   client: the one-to-one links and the final ids ``1..N``;
6. ``D``: every output chunk written once, with its final ids, into a new labels store
   that the run created (no store lock, no journal: nobody else writes it before the run is
   done); the client then records the pixels, objects and provenance in its log.

The result equals the single-process tiled run on the same grid (``napari-segany auto
--tile T --halo H``): the same objects with the same ids (ties of the linking assignment
aside). Every finished task is recorded in the run folder (:mod:`.runfolder`), so a rerun
skips it; the store's provenance holds the run (``distributed``: run id, blocks, status).
Job arrays: ``shard_of=(i, n)`` runs step 1 for the share ``i`` of the blocks only;
``merge=True`` (after every shard) runs the rest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Cancel, check_cancel
from ..auto import AutoSettings
from ..auto.planes import batches_per_plane
from ..errors import BatchError, ClusterError
from ..storage.cache import data_fingerprint
from ..storage.labels import LabelsStore, is_labels_store
from .blocks import BlockPlan, gid_base
from .images import JobOptions, _normalizer, open_image
from .inputs import shard
from .relabel import components, final_ids, link_pairs, lut_for
from .runfolder import RunFolder, run_folder_for
from .tasks import (
    block_name,
    chunk_name,
    link_chunk,
    merge_chunk,
    segment_block,
    stitch_pairs,
    write_chunk,
)
from .worker import WorkerModel, check_workers, worker_state

__all__ = ["BlockResult", "segment_blocks"]


@dataclass
class BlockResult:
    """What a block run did: ``status`` (``"done"``, ``"skipped"``: finished before,
    ``"shard"``: a shard's blocks done), counts of tasks run and skipped per phase, the
    number of objects, the run id and its folder."""

    status: str
    run: str
    folder: str
    ran: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    blocks: int = 0
    seconds: float = 0.0


class _Runner:
    """Submits tasks to a client, or runs them here (``client=None``)."""

    def __init__(self, client: Any, cancel: Cancel, progress: Callable | None,
                 dask_progress: bool) -> None:
        self.client, self.cancel, self.progress = client, cancel, progress
        self.dask_progress = dask_progress

    def submit(self, fn: Callable, *args: Any, key: str) -> Any:
        if self.client is None:
            check_cancel(self.cancel)
            return fn(*args)
        return self.client.submit(fn, *args, key=key, pure=False)

    def wait(self, futures: dict[Any, Any], phase: str) -> None:
        if self.client is None or not futures:
            return
        from distributed import as_completed

        if self.dask_progress:
            from distributed.diagnostics.progressbar import progress as bar

            print(f"{phase}:", flush=True)
            bar(list(futures.values()), notebook=False, scheduler=self.client.scheduler.address)
            print(flush=True)
        done = 0
        try:
            for fut in as_completed(list(futures.values()), loop=self.client.loop):
                if fut.status == "error":
                    name = next(k for k, f in futures.items() if f is fut)
                    exc = fut.exception()
                    raise ClusterError(f"task {phase} {name} failed on a worker: "
                                       f"{type(exc).__name__}: {exc}") from exc
                done += 1
                if self.progress is not None:
                    self.progress(done, len(futures))
                check_cancel(self.cancel)
        except BaseException:
            self.client.cancel([f for f in futures.values() if not f.done()])
            raise


def _run_id(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()
                          ).hexdigest()[:16]


def segment_blocks(
    image: str,
    out: str,
    *,
    model: WorkerModel,
    options: JobOptions | None = None,
    client: Any = None,
    tile: int | None = None,
    halo: int | None = None,
    chunk_size: int | None = None,
    run_folder: str | None = None,
    shard_of: tuple[int, int] | None = None,
    merge: bool = False,
    keep: bool = False,
    progress: Callable[[int, int], Any] | None = None,
    dask_progress: bool = False,
    cancel: Cancel = None,
) -> BlockResult:
    """Segment everything on one large plane or volume in blocks (see the module notes).

    Parameters
    ----------
    image : path
        A TIFF, zarr, ``.npy``, ... that every worker can read (read lazily, a block window
        at a time, where the format allows).
    out : path
        The labels store written (created; a finished store of the same run is skipped).
    model : WorkerModel
    options : JobOptions
        ``auto`` settings, ``stitch_iou``, ``link``/``link_iou``/``axis``, intensity options,
        ``overwrite``.
    client : distributed.Client, optional
        None runs every task here, one after the other.
    tile, halo : int, optional
        The block windows (default: the model's input size, ``tile // 8``).
    chunk_size : int, optional
        Output chunk tiles (default 2048); each chunk is rewritten by one task.
    run_folder : path, optional
        Default ``OUT.run`` beside the output.
    shard_of : (i, n), optional
        Segment only the blocks of share ``i`` of ``n`` (job arrays); nothing else.
    merge : bool
        Everything after the blocks (after all shards ran); missing blocks are an error.
    keep : bool
        Keep the run folder after the output is complete.
    """
    t0 = time.perf_counter()
    opts = options or JobOptions()
    s: AutoSettings = opts.auto
    data, rgb, info = open_image(image, opts)
    shape = info["shape"]
    normalizer = _normalizer(data, rgb, opts)
    model_info = check_workers(client, model)
    if client is None:  # bad generator / crop settings are refused before any work
        _check_settings(model, s)
    else:
        client.submit(_check_settings, model, s, pure=False).result()
    size = int(tile or model_info["image_size"])
    plan_chunks = _chunks(shape, chunk_size)
    plan = BlockPlan(shape, size, size // 8 if halo is None else int(halo), plan_chunks)
    lead = plan.lead
    link = bool(opts.link and lead)
    meta = {"image": data_fingerprint(data, rgb=rgb), "model": model_info["model_id"],
            "settings": s.to_dict(), "tile": plan.tile, "halo": plan.halo,
            "chunks": list(plan.chunks), "stitch_iou": float(opts.stitch_iou),
            "link": link, "link_iou": float(opts.link_iou), "axis": int(opts.axis),
            "normalizer": normalizer.to_dict()}
    run_id = _run_id(meta)
    result = BlockResult("done", run_id, str(run_folder or run_folder_for(out)),
                         blocks=plan.n_planes * plan.n_tiles)
    if not shard_of and _finished(out, run_id, shape, opts.overwrite):
        result.status = "skipped"
        return result
    th, tw = plan.grid.tile_shape
    run = RunFolder(result.folder, {**meta, "run": run_id, "shape": list(shape)}, arrays={
        "tiles.zarr": ((plan.n_planes, plan.n_tiles, th, tw), (1, 1, th, tw), "uint32"),
        "stitched.zarr": ((plan.n_planes,) + shape[-2:], (1,) + plan.chunks, "uint64")})
    runner = _Runner(client, cancel, progress, dask_progress)
    blocks = list(plan.blocks())
    if shard_of:
        blocks = shard(blocks, *shard_of)
    # A: blocks
    have = run.done("A")
    missing = [n for n in (block_name(p, t) for p, t in plan.blocks()) if n not in have]
    if merge and missing:
        raise BatchError(f"{len(missing)} block(s) of {result.blocks} are not segmented yet "
                         f"(e.g. {', '.join(missing[:5])}); run every shard first")
    a_futs = {block_name(p, t): runner.submit(
        segment_block, run, model, image, opts, normalizer, plan, s, p, t,
        key=f"A-{p}-{t}-{run_id}") for p, t in blocks if block_name(p, t) not in have}
    _count(result, "A", len(a_futs), len(blocks) - len(a_futs))
    if shard_of:
        runner.wait(a_futs, "blocks")
        result.status, result.seconds = "shard", time.perf_counter() - t0
        return result
    store = _open_output(out, shape, plan, run_id, info["source"], opts.overwrite)
    try:
        _merge(run, runner, plan, model, out, store, run_id, opts, a_futs, link, result)
    finally:
        store.close()
    if not keep:
        run.remove()
    result.seconds = time.perf_counter() - t0
    return result


def _check_settings(model: WorkerModel, settings: AutoSettings) -> None:
    batches_per_plane(worker_state(model).backend(), settings)


def _chunks(shape: tuple[int, ...], chunk_size: int | None) -> tuple[int, int]:
    tile = int(chunk_size or 2048)
    if tile < 16:
        raise BatchError(f"output chunks of {tile} pixels are too small: give at least 16 "
                         "(default 2048)")
    return min(shape[-2], tile), min(shape[-1], tile)


def _count(result: BlockResult, phase: str, ran: int, skipped: int) -> None:
    result.ran[phase] = ran
    result.skipped[phase] = skipped


def _finished(out: str, run_id: str, shape: tuple[int, ...], overwrite: bool) -> bool:
    if not Path(out).exists():
        return False
    if not is_labels_store(out):
        raise BatchError(f"{out} exists and is not a napari-segany labels store; it is never "
                         "replaced: choose another output")
    old = LabelsStore.open(out, mode="r")
    dist = old.provenance.get("distributed") or {}
    if dist.get("run") == run_id:
        return dist.get("status") == "done"
    if old.shape != tuple(shape) and not overwrite:
        raise BatchError(f"{out} holds labels of shape {old.shape}, but the image has shape "
                         f"{tuple(shape)}; choose another output (or overwrite)")
    if not overwrite:
        raise BatchError(f"{out} exists and was not written by this run; choose another "
                         "output, or overwrite to replace it")
    return False


def _open_output(out: str, shape, plan: BlockPlan, run_id: str, source: dict,
                 overwrite: bool) -> LabelsStore:
    fields = {"source": source, "distributed": {"run": run_id, "status": "started",
                                                 "tile": plan.tile, "halo": plan.halo,
                                                 "blocks": plan.n_planes * plan.n_tiles}}
    if Path(out).exists():
        store = LabelsStore.open(out)
        if (store.provenance.get("distributed") or {}).get("run") == run_id:
            return store
        store.close()
        if not overwrite:  # pragma: no cover - refused by _finished already
            raise BatchError(f"{out} was not written by this run")
    store = LabelsStore.create(out, shape, overwrite=Path(out).exists(), provenance=fields,
                               chunk_size=max(16, *plan.chunks))
    if tuple(store.chunks[-2:]) != tuple(plan.chunks):  # pragma: no cover - by construction
        store.close()
        raise BatchError(f"{out}: chunks {store.chunks} do not match the run's {plan.chunks}")
    return store


def _merge(run: RunFolder, runner: _Runner, plan: BlockPlan, model: WorkerModel, out: str,
           store: LabelsStore, run_id: str, opts: JobOptions, a_futs: dict, link: bool,
           result: BlockResult) -> None:
    s = opts.auto
    # B: stitching pairs, behind the blocks they read
    have = run.done("B")
    b_futs = {}
    for p, t in plan.blocks():
        name = block_name(p, t)
        if name in have:
            continue
        after = [a_futs[block_name(p, u)] for u in [t, *plan.neighbours(t)]
                 if block_name(p, u) in a_futs]
        b_futs[name] = runner.submit(stitch_pairs, run, model, plan, p, t,
                                     float(opts.stitch_iou), *after, key=f"B-{name}-{run_id}")
    _count(result, "B", len(b_futs), result.blocks - len(b_futs))
    runner.wait(a_futs, "blocks")
    runner.wait(b_futs, "stitching")
    edges = [run.read("B", block_name(p, t))["edges"] for p, t in plan.blocks()]
    nodes, roots = components(np.concatenate(edges) if edges else np.zeros((0, 2), np.uint64))
    # C: merged chunks
    chunks = [(p, r) for p in range(plan.n_planes) for r in plan.chunk_regions()]
    have = run.done("C")
    c_futs = {}
    for p, region in chunks:
        name = chunk_name(p, region)
        if name in have:
            continue
        tiles = plan.tiles_meeting(plan.grow(region, max(s.min_area, 0)))
        rows = _rows(nodes, roots, plan, p, tiles)
        c_futs[name] = runner.submit(merge_chunk, run, model, plan, p, region, s.min_area,
                                     rows, key=f"C-{name}-{run_id}")
    _count(result, "C", len(c_futs), len(chunks) - len(c_futs))
    # L: links between consecutive planes
    pairs = _successors(plan, opts.axis) if link else []
    have = run.done("L")
    l_futs = {}
    for p, q in pairs:
        for region in plan.chunk_regions():
            name = f"{p}-{q}-{region[0]}-{region[2]}"
            if name in have:
                continue
            after = [c_futs[n] for n in (chunk_name(p, region), chunk_name(q, region))
                     if n in c_futs]
            l_futs[name] = runner.submit(link_chunk, run, model, p, q, region, *after,
                                         key=f"L-{name}-{run_id}")
    _count(result, "L", len(l_futs), len(pairs) * len(plan.chunk_regions()) - len(l_futs))
    runner.wait(c_futs, "merging")
    runner.wait(l_futs, "linking")
    table, per_chunk = _numbering(run, plan, chunks, pairs, opts.link_iou)
    # D: every chunk written once
    have = run.done("D")
    d_futs = {}
    for p, region in chunks:
        name = chunk_name(p, region)
        if name in have:
            continue
        keys = per_chunk[name][0]
        d_futs[name] = runner.submit(write_chunk, run, model, out, plan, p, region, keys,
                                     lut_for(keys, table), key=f"D-{name}-{run_id}")
    _count(result, "D", len(d_futs), len(chunks) - len(d_futs))
    runner.wait(d_futs, "writing")
    n = int(table[1].max()) if len(table[1]) else 0
    result.objects = n
    if n:
        store.set_objects({i: {"source": "auto"} for i in range(1, n + 1)})
    _record_run(store, _plane_counts(plan, per_chunk, table), {
        "auto": {"settings": s.to_dict(), "axis": opts.axis, "planes": None, "link": link,
                 "link_iou": float(opts.link_iou),
                 "tiling": {**plan.grid.tiling, "stitch_iou": float(opts.stitch_iou)}},
        "distributed": {"run": run_id, "status": "done", "tile": plan.tile, "halo": plan.halo,
                        "blocks": result.blocks, "chunks": len(chunks), "objects": n}})


def _plane_counts(plan: BlockPlan, per_chunk: dict[str, tuple[np.ndarray, np.ndarray]],
                  table: tuple[np.ndarray, np.ndarray]) -> dict[tuple[int, ...], dict[str, int]]:
    """Pixels of every final id on every plane, from the chunks' records (nothing read)."""
    out: dict[tuple[int, ...], dict[str, int]] = {}
    keys = plan.planes
    for name, (gids, counts) in per_chunk.items():
        plane = keys[int(name.split("-", 1)[0])]
        d = out.setdefault(plane, {})
        for i, c in zip(lut_for(gids, table).tolist(), counts.tolist(), strict=True):
            d[str(i)] = d.get(str(i), 0) + int(c)
    return out


def _record_run(store: LabelsStore, counts: dict[tuple[int, ...], dict[str, int]],
                fields: dict[str, Any]) -> None:
    """Record what the chunk tasks wrote, and the run as done, in one append to the store's
    log: the planes written, the pixels of every object on every plane (so that the object
    table and the history know them without reading a plane), and the provenance.

    The chunk tasks write the new store's zarr array directly (:func:`.tasks.write_chunk`),
    one task per chunk, with no lock and no journal (the store holds nothing but this run;
    undoing the run is removing the store), recorded by
    :meth:`LabelsStore.record_written` in one append, so that a client killed here records
    all or nothing and a rerun records it once.
    """
    store.record_written(counts, **fields)


def _rows(nodes: np.ndarray, roots: np.ndarray, plan: BlockPlan, p: int,
          tiles: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The relabel table's rows of the gids of blocks (p, t) for ``t`` in ``tiles``."""
    if not len(nodes):
        return nodes, roots
    sel = []
    for t in tiles:
        lo, hi = int(gid_base(p, t, plan.n_tiles)), int(gid_base(p, t + 1, plan.n_tiles))
        a, b = np.searchsorted(nodes, [lo, hi])
        sel.append(np.arange(a, b))
    idx = np.concatenate(sel) if sel else np.zeros(0, np.int64)
    idx.sort()
    return nodes[idx], roots[idx]


def _successors(plan: BlockPlan, axis: int) -> list[tuple[int, int]]:
    keys = plan.planes
    index = {k: i for i, k in enumerate(keys)}
    ax = axis % len(plan.lead)
    out = []
    for i, k in enumerate(keys):
        nxt = k[:ax] + (k[ax] + 1,) + k[ax + 1:]
        if nxt in index:
            out.append((i, index[nxt]))
    return out


def _numbering(run: RunFolder, plan: BlockPlan, chunks, pairs, link_iou: float):
    """Final ids: ``((gids, finals), {chunk name: (gids, pixels) of that chunk})``."""
    per_chunk: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    gids_all, counts_all = [], []
    for p, region in chunks:
        rec = run.read("C", chunk_name(p, region))
        per_chunk[chunk_name(p, region)] = (rec["gids"], rec["counts"])
        gids_all.append(rec["gids"])
        counts_all.append(rec["counts"])
    gids = np.concatenate(gids_all) if gids_all else np.zeros(0, np.uint64)
    counts = np.concatenate(counts_all) if counts_all else np.zeros(0, np.int64)
    survivors, inv = np.unique(gids, return_inverse=True)
    areas = np.bincount(inv, weights=counts, minlength=len(survivors)).astype(np.int64)
    area = dict(zip(survivors.tolist(), areas.tolist(), strict=True))
    links = []
    for p, q in pairs:
        recs = [run.read("L", f"{p}-{q}-{r[0]}-{r[2]}") for r in plan.chunk_regions()]
        pr = np.concatenate([r["pairs"] for r in recs]).reshape(-1, 2).astype(np.uint64)
        it = np.concatenate([r["inter"] for r in recs]).astype(np.int64)
        if len(pr):
            uniq, inv2 = np.unique(pr, axis=0, return_inverse=True)
            inter = np.bincount(inv2.ravel(), weights=it, minlength=len(uniq)).astype(np.int64)
            links.append(link_pairs(uniq, inter, area, min_iou=link_iou))
    links_arr = np.concatenate(links) if links else np.zeros((0, 2), np.uint64)
    return final_ids(survivors, links_arr), per_chunk
