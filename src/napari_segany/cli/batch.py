"""``napari-segany batch``: a command over many images, or one image in blocks, on Dask.

``napari-segany batch MODE INPUTS --out-dir DIR`` runs ``embed``, ``auto``, ``boxes`` or
``propagate`` on every image of a folder, a glob or a CSV manifest; ``--blocks --out
OUT.zarr`` segments one plane or volume too large for one process in blocks. A local
Dask cluster is started (workers = cores) unless ``--scheduler`` / ``--scheduler-file``
names a running one; ``--workers 0`` runs in this process. ``--shard I/N`` runs a share
of the work (job arrays), ``--merge`` the final step. See ``docs/scale-out.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from ..auto import AutoSettings
from ..distributed import (
    MODES,
    JobOptions,
    WorkerModel,
    collect_inputs,
    merge_batch,
    open_cluster,
    parse_shard,
    run_batch,
    segment_blocks,
    write_summary,
)
from ..distributed.batch import RECORDS
from ..errors import BatchError, ClusterError, UsageError
from ..intensity import WINDOW_PRESETS
from ..propagate import SliceSettings
from ._args import parse_floats
from ._common import _tile_value, add_intensity_options, add_model_options

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "batch", help="run a command over many images, or one large image in blocks, on Dask",
        description="Run embed, auto, boxes or propagate over a folder, a glob or a CSV "
                    "manifest (image,out,boxes,prompts,key), one task per image on a Dask "
                    "cluster; or (--blocks) segment everything on one image too large for "
                    "one process, in blocks merged across their borders. Finished images "
                    "and blocks are recorded: a rerun skips them. See docs/scale-out.md.")
    p.add_argument("mode", choices=MODES, help="the command to run on every input")
    p.add_argument("inputs", help="a folder, a quoted glob ('plates/*.tif'), a CSV manifest, "
                                  "or (with --blocks) one image")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="outputs DIR/<name>.zarr (embed: DIR/<name>.cache) unless the "
                        "manifest names them")
    p.add_argument("--out", type=Path, default=None, help="the labels store of --blocks")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing labels stores this batch did not write")
    c = p.add_argument_group("cluster")
    c.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler (tcp://host:8786); default: start a local "
                        "cluster")
    c.add_argument("--scheduler-file", type=Path, default=None,
                   help="a scheduler file (dask scheduler --scheduler-file)")
    c.add_argument("--workers", type=int, default=None,
                   help="local cluster: worker processes (default: the CPU cores; 0: run in "
                        "this process)")
    c.add_argument("--threads", type=int, default=1,
                   help="local cluster: threads per worker (and torch threads) (1)")
    c.add_argument("--memory-limit", default="auto",
                   help="local cluster: memory per worker, e.g. 4GiB (auto: shared equally)")
    c.add_argument("--no-dashboard", action="store_true", help="local cluster: no dashboard")
    c.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the scheduler (10)")
    c.add_argument("--shard", default=None, metavar="I/N",
                   help="only the share I of N (job arrays; I from 0), then --merge once")
    c.add_argument("--merge", action="store_true",
                   help="after all shards: check every input (--blocks: merge the blocks)")
    b = p.add_argument_group("blocks (one large image)")
    b.add_argument("--blocks", action="store_true",
                   help="INPUTS is one image: segment everything on it in blocks (auto)")
    b.add_argument("--out-chunks", type=int, default=None,
                   help="chunk tiles of the output store (2048); each is written by one task")
    b.add_argument("--run-folder", type=Path, default=None,
                   help="the run's records and scratch (default: OUT.run beside --out)")
    b.add_argument("--keep-run", action="store_true",
                   help="keep the run folder after the output is complete")
    g = p.add_argument_group("auto")
    g.add_argument("--points-per-side", type=int, default=32)
    g.add_argument("--points-per-batch", type=int, default=64)
    g.add_argument("--pred-iou-thresh", type=float, default=None)
    g.add_argument("--stability-thresh", type=float, default=0.95)
    g.add_argument("--box-nms-thresh", type=float, default=0.7)
    g.add_argument("--min-area", type=int, default=16)
    g.add_argument("--max-overlap", type=float, default=0.5)
    g.add_argument("--generator", choices=["auto", "model", "grid"], default="auto")
    g.add_argument("--no-link", action="store_true", help="no linking across planes")
    g.add_argument("--link-iou", type=float, default=0.3)
    g.add_argument("--tile", type=_tile_value, default="auto", metavar="auto|0|N",
                   help="tile windows of large planes (auto: the model's input size where a "
                        "plane's longer side exceeds twice that; --blocks: the block size)")
    g.add_argument("--halo", type=int, default=None, help="tile overlap margin (tile / 8)")
    g.add_argument("--stitch-iou", type=float, default=0.5)
    x = p.add_argument_group("boxes, propagate, embed")
    x.add_argument("--chunk-size", type=int, default=64, help="boxes per decoder call (64)")
    x.add_argument("--overlap", choices=["score", "order"], default="score")
    x.add_argument("--multimask", action="store_true")
    x.add_argument("--class", dest="default_class", default=None, metavar="NAME")
    x.add_argument("--method", choices=["slice", "sam2"], default="slice")
    x.add_argument("--direction", choices=["both", "forward", "backward"], default="both")
    x.add_argument("--axis", type=int, default=0, help="linking / propagation axis (0)")
    x.add_argument("--batch-size", type=int, default=1, help="embed: planes per pass (1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_intensity_options(p)
    add_model_options(p)
    p.set_defaults(_run=run)


def _intensity(args: argparse.Namespace) -> dict[str, Any]:
    if args.window and args.percentiles:
        raise UsageError("give --window or --percentiles, not both")
    out: dict[str, Any] = {}
    if args.window:
        if args.window not in WINDOW_PRESETS and args.window[:1].isalpha():
            raise UsageError(f"unknown --window {args.window!r}; use LOW,HIGH or one of "
                             f"{', '.join(WINDOW_PRESETS)}")
        out["window"] = args.window if args.window in WINDOW_PRESETS else parse_floats(
            args.window, "--window", 2)
    if args.percentiles:
        out["percentiles"] = parse_floats(args.percentiles, "--percentiles", 2)
    if args.channels:
        try:
            out["channels"] = tuple(int(c) for c in args.channels.split(","))
        except ValueError:
            raise UsageError(f"malformed --channels {args.channels!r}") from None
    return out


def _options(args: argparse.Namespace) -> JobOptions:
    if args.checkpoint is not None and args.random_weights:
        raise UsageError("give --checkpoint or --random-weights, not both")
    if args.blocks and args.mode != "auto":
        raise UsageError(f"--blocks runs segment everything (auto); {args.mode} runs one task "
                         "per image (a propagation is sequential along its axis, boxes and "
                         "embeddings of one image are written by one process): drop --blocks")
    try:
        auto = AutoSettings(points_per_side=args.points_per_side,
                            points_per_batch=args.points_per_batch,
                            pred_iou_thresh=args.pred_iou_thresh,
                            stability_score_thresh=args.stability_thresh,
                            box_nms_thresh=args.box_nms_thresh, min_area=args.min_area,
                            max_overlap=args.max_overlap, generator=args.generator)
        return JobOptions(mode=args.mode, auto=auto, intensity=_intensity(args), rgb=args.rgb,
                          channel_axis=args.channel_axis, tile=args.tile, halo=args.halo,
                          stitch_iou=args.stitch_iou, axis=args.axis, link=not args.no_link,
                          link_iou=args.link_iou, chunk_size=args.chunk_size,
                          overlap=args.overlap, multimask=args.multimask,
                          default_class=args.default_class, method=args.method,
                          direction=args.direction, slice=SliceSettings(),
                          batch_size=args.batch_size, overwrite=args.overwrite)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def _model(args: argparse.Namespace) -> WorkerModel:
    return WorkerModel(name=args.model, arch=args.arch, device=args.device,
                       checkpoint=None if args.checkpoint is None else str(args.checkpoint),
                       random_weights=args.random_weights,
                       precision=getattr(args, "precision", None),
                       cache_dir=None if args.cache_dir is None else str(args.cache_dir))


@contextlib.contextmanager
def _where(args: argparse.Namespace):
    if args.workers == 0 and not (args.scheduler or args.scheduler_file):
        print("running in this process (--workers 0)")
        yield None
        return
    with open_cluster(scheduler=args.scheduler, scheduler_file=args.scheduler_file,
                      n_workers=args.workers, threads=args.threads,
                      memory_limit=None if args.memory_limit == "none" else args.memory_limit,
                      dashboard=not args.no_dashboard, timeout=args.timeout) as cluster:
        print(cluster.describe(), flush=True)
        yield cluster.client


def run(args: argparse.Namespace) -> int:
    opts = _options(args)
    model = _model(args)
    shard_of = parse_shard(args.shard) if args.shard else None
    if shard_of and args.merge:
        raise UsageError("--merge runs once after every --shard; give one of them")
    try:
        if args.blocks:
            return _run_blocks(args, opts, model, shard_of)
        return _run_batch(args, opts, model, shard_of)
    except ClusterError as exc:
        print(f"napari-segany: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def _bar(args: argparse.Namespace):
    """dask's progress bar draws on stdout; the command's bars go to stderr."""
    return contextlib.nullcontext() if args.quiet else contextlib.redirect_stdout(sys.stderr)


def _run_batch(args, opts: JobOptions, model: WorkerModel, shard_of) -> int:
    suffix = ".cache" if opts.mode == "embed" else ".zarr"
    try:
        items = collect_inputs(args.inputs, out_dir=args.out_dir, suffix=suffix)
    except BatchError as exc:
        raise UsageError(str(exc)) from None
    records = (args.out_dir / RECORDS) if args.out_dir is not None else None
    if args.merge:
        result = merge_batch(items, records=records, mode=opts.mode)
    else:
        with _where(args) as client, _bar(args):
            result = run_batch(items, options=opts, model=model, client=client,
                               shard_of=shard_of, records=records,
                               dask_progress=not args.quiet and client is not None)
    for row in result.failed:
        print(f"failed: {row['key']}: {row.get('error')}", file=sys.stderr)
    summary = (args.out_dir or Path(items[0].out).parent) / (
        "batch-summary.csv" if not shard_of else f"batch-summary-{shard_of[0]}-of-"
                                                 f"{shard_of[1]}.csv")
    if opts.mode != "embed" or args.out_dir is not None:
        write_summary(summary, result)
    n = len(result.done) + len(result.skipped) + len(result.failed)
    share = f" (shard {shard_of[0]}/{shard_of[1]})" if shard_of else ""
    print(f"{opts.mode}: {len(result.done)} done, {len(result.skipped)} skipped (finished "
          f"before), {len(result.failed)} failed of {n} input(s){share} in "
          f"{result.seconds:.1f} s; summary {summary}")
    if args.random_weights:
        print("random weights: the masks are meaningless (compute-only run)")
    return 0 if result.ok else 1


def _run_blocks(args, opts: JobOptions, model: WorkerModel, shard_of) -> int:
    if args.out is None:
        raise UsageError("--blocks needs --out OUT.zarr")
    if not Path(args.inputs).exists():
        raise UsageError(f"no such image {args.inputs}")
    tile = None if args.tile in ("auto", 0) else int(args.tile)
    with _where(args) as client, _bar(args):
        try:
            result = segment_blocks(args.inputs, str(args.out), model=model, options=opts,
                                    client=client, tile=tile, halo=args.halo,
                                    chunk_size=args.out_chunks,
                                    run_folder=None if args.run_folder is None
                                    else str(args.run_folder), shard_of=shard_of,
                                    merge=args.merge, keep=args.keep_run,
                                    dask_progress=not args.quiet and client is not None)
        except BatchError as exc:
            raise UsageError(str(exc)) from None
    ran = ", ".join(f"{k} {v}" for k, v in result.ran.items())
    skipped = sum(result.skipped.values())
    if result.status == "skipped":
        print(f"{args.out} is complete (run {result.run}): nothing to do")
    elif result.status == "shard":
        print(f"shard {shard_of[0]}/{shard_of[1]}: {result.ran.get('A', 0)} block(s) "
              f"segmented ({skipped} done before) in {result.seconds:.1f} s; run --merge "
              "after the last shard")
    else:
        print(f"{result.blocks} blocks, {result.objects} objects in {result.seconds:.1f} s "
              f"(tasks run: {ran}; {skipped} done before)")
        print(f"wrote {args.out}")
    if args.random_weights:
        print("random weights: the masks are meaningless (compute-only run)")
    return 0
