"""``napari-segany track``: objects through a time stack or a video, with divisions.

Examples::

    napari-segany track movie.mp4 --cell 120,80 --cell 200,140 --out tracks-out
    napari-segany track cells.tif --seeds first_frame_labels.tif --division-frames 3 \\
        --movie --out tracks-out

OUT receives ``labels.zarr`` (the labels store, lineage in its registry), ``tracks.csv``
(one row per object per frame), ``ctc/`` (Cell Tracking Challenge ``res_track.txt`` and
``maskTTT.tif``) and, with ``--movie``, ``overlay.mp4``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.sam2_video import supports_memory
from ..errors import UsageError
from ..exports import export_movie
from ..io import read_image
from ..prompts import ObjectPrompt, PromptSet
from ..propagate import SliceSettings
from ..session import Session
from ..tracking import TrackSettings, export_ctc, export_tracks_csv, mask_prompt, track
from ._args import parse_points, parse_range
from ._common import (
    Progress,
    add_image_argument,
    add_intensity_options,
    add_model_options,
    build_normalizer,
    check_in_image,
    check_output,
    load_backend,
    load_image,
    open_outputs,
    prompts_from_args,
    random_note,
    read_prompt_file,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    tr = sub.add_parser(
        "track", help="track objects through a time stack or video, with divisions",
        description="Track objects forward through a (t, y, x) stack or a video from their "
                    "prompts on one frame; an object whose mask splits into two parts for "
                    "--division-frames frames divides into two daughters. Writes "
                    "OUT/labels.zarr (lineage in its registry), OUT/tracks.csv, OUT/ctc/ "
                    "(Cell Tracking Challenge format) and, with --movie, OUT/overlay.mp4.")
    add_image_argument(tr)
    p = tr.add_argument_group("prompts (on --frame; one object each)")
    p.add_argument("--cell", action="append", default=[], metavar="X,Y",
                   help="a positive click on one object (repeatable: one object each)")
    p.add_argument("--box", action="append", default=[], metavar="X0,Y0,X1,Y1",
                   help="a box around one object (repeatable)")
    p.add_argument("--points", default=None,
                   help="'x,y;x,y' clicks on ONE object, with --point-labels")
    p.add_argument("--point-labels", default=None, help="'1,0': 1 positive, 0 negative")
    p.add_argument("--seeds", type=Path, default=None,
                   help="labels image (TIFF/PNG/.npy, (y, x) or (t, y, x)): every label on "
                        "--frame is one object, with its id")
    p.add_argument("--prompts", type=Path, default=None,
                   help="PROMPTS.json (PromptSet.to_dict() format, planes (t,))")
    p.add_argument("--frame", type=int, default=0, help="the prompted frame (default 0)")
    tr.add_argument("--method", choices=["slice", "sam2"], default="slice",
                    help="slice: slice-wise with any model (default); sam2: SAM2 memory")
    tr.add_argument("--division-frames", type=int, default=3, metavar="K",
                    help="a split that lasts K frames is a division (default 3)")
    tr.add_argument("--min-area", type=int, default=16,
                    help="smaller parts are fragments; smaller masks end a track (16)")
    tr.add_argument("--range", default=None, metavar="A:B", help="only frames A <= t < B")
    tr.add_argument("--movie", action="store_true", help="also write OUT/overlay.mp4")
    tr.add_argument("--cache", type=Path, default=None, help="embedding cache folder (reused)")
    tr.add_argument("--out", type=Path, required=True, help="output folder")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing labels store")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_intensity_options(tr)
    add_model_options(tr)
    tr.set_defaults(_run=run)


def _seed_prompts(path: Path, frame: int, shape: tuple[int, ...], method: str) -> PromptSet:
    seeds = np.asarray(read_image(path).data)
    if seeds.ndim == 3 and seeds.shape[0] == shape[0]:
        seeds = seeds[frame]
    if seeds.shape != tuple(shape[1:]) or seeds.dtype.kind not in "biu":
        raise UsageError(f"--seeds {path} holds {seeds.dtype} labels of shape {seeds.shape}; "
                         f"need integer labels of the frame shape {tuple(shape[1:])} (or the "
                         f"stack's {tuple(shape)})")
    prompts = PromptSet()
    for oid in np.unique(seeds):
        if oid > 0:
            prompts.add((frame,), int(oid), mask_prompt(seeds == oid, method))
    if not len(prompts):
        raise UsageError(f"--seeds {path} has no labels on frame {frame}")
    return prompts


def _prompts(args: argparse.Namespace, shape: tuple[int, ...]) -> tuple[PromptSet | None,
                                                                         list[ObjectPrompt]]:
    """User ids (a prompt file or seeds) or new objects to number."""
    n = shape[0]
    if not 0 <= args.frame < n:
        raise UsageError(f"--frame {args.frame} is not a frame of the stack (0..{n - 1})")
    clicks = []
    for c in args.cell:
        pts = parse_points(c)
        if len(pts) != 1:
            raise UsageError(f"--cell {c!r} is one click 'x,y' (use --points for several)")
        clicks.append(ObjectPrompt(points=pts, labels=[1]))
    objects = clicks + prompts_from_args(args)
    given = [bool(objects), args.seeds is not None, args.prompts is not None]
    if sum(given) != 1:
        raise UsageError("give the objects one way: --cell/--box/--points, --seeds LABELS, "
                         "or --prompts PROMPTS.json")
    for i, p in enumerate(objects, start=1):
        check_in_image(p, shape[1:], f"object {i}")
    if args.seeds is not None:
        return _seed_prompts(args.seeds, args.frame, shape, args.method), []
    if args.prompts is not None:
        return read_prompt_file(args.prompts, shape), []
    return None, objects


def run(args: argparse.Namespace) -> int:
    image, rgb, source = load_image(args)
    shape = tuple(int(s) for s in (image.shape[:-1] if rgb else image.shape))
    if len(shape) != 3:
        raise UsageError(f"{args.image} has shape {shape}; track needs a (t, y, x) stack or a "
                         "video")
    if args.division_frames < 1 or args.min_area < 1:
        raise UsageError("--division-frames and --min-area must be >= 1")
    prompts, objects = _prompts(args, shape)
    frames = parse_range(args.range, shape[0]) if args.range else None
    settings = TrackSettings(method=args.method, division_frames=args.division_frames,
                             min_area=args.min_area, slice=SliceSettings(min_area=args.min_area))
    normalizer = build_normalizer(args, image, rgb)
    store_path = args.out / "labels.zarr"
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; give a folder")
    check_output(store_path, shape, overwrite=args.overwrite,
                 inputs=(args.image, args.seeds, args.prompts))

    t0 = time.perf_counter()
    backend = load_backend(args)
    if args.method == "sam2" and not supports_memory(backend):
        raise UsageError(f"--method sam2 needs a SAM2 model (e.g. --model sam2.1_hiera_tiny); "
                         f"{backend.name} is a {backend.family} model: use --method slice")
    args.out.mkdir(parents=True, exist_ok=True)
    cache, store = open_outputs(args, store_path, shape, image=image, rgb=rgb,
                                normalizer=normalizer, backend=backend)
    if prompts is None:
        prompts = PromptSet()
        for oid, p in zip(store.reserve_object_ids(len(objects)), objects, strict=True):
            prompts.add((args.frame,), oid, p)
    session = Session(image, backend, rgb=rgb, labels=store, normalizer=normalizer, cache=cache)
    store.update_provenance(source=source)
    with Progress(f"tracking ({args.method})", quiet=args.quiet, unit="frame") as bar:
        result = track(session, prompts, settings=settings, frames=frames, progress=bar)
    t1 = time.perf_counter()
    lineage = result.lineage
    print(f"model {backend.name} on {backend.device}: {len(lineage)} tracks, "
          f"{len(result.divisions)} divisions in {t1 - t0:.1f} s")
    for d in result.divisions:
        print(f"  track {d.parent} divides on frame {d.frame} into "
              f"{', '.join(map(str, d.daughters))}")
    for oid, last in result.lost.items():
        print(f"  track {oid} is lost after frame {last}")
    export_tracks_csv(store, args.out / "tracks.csv", overwrite=True)
    export_ctc(store, args.out / "ctc", overwrite=True)
    written = ["labels.zarr", "tracks.csv", "ctc/"]
    if args.movie:
        with Progress("overlay movie", quiet=args.quiet, unit="frame") as bar:
            export_movie(store, args.out / "overlay.mp4", image=image, normalizer=normalizer,
                         overwrite=True, progress=bar)
        written.append("overlay.mp4")
    random_note(args)
    print(f"wrote {', '.join(str(args.out / w) for w in written)}")
    return 0
