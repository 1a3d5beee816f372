"""``napari-segany evaluate``: segmentation quality against ground truth, several models.

Examples::

    napari-segany evaluate img.tif --labels mask.tif --model sam_vit_b \
        --model sam2.1_hiera_tiny --out eval-nuclei
    napari-segany evaluate ct.nii.gz --labels ct_seg.nii.gz --protocol volume \
        --window ct_soft_tissue --model sam2.1_hiera_tiny --out eval-ct
    napari-segany evaluate DAVIS/ --protocol video --model sam2.1_hiera_tiny --out eval-davis

Every model gets the same simulated prompts; OUT receives ``results.csv`` (one row per
model, data set, object and iteration/plane/frame), ``summary.json``, ``prompts.json``,
``report.md`` and PNG plots under ``plots/``. Running again with the same OUT resumes:
finished planes and methods are skipped (more ``--model`` options add models).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ..auto import AutoSettings
from ..errors import UsageError
from ..evaluation import (
    PROTOCOLS,
    AutomaticSettings,
    FilePair,
    InteractiveSettings,
    VideoSettings,
    VolumeSettings,
    evaluate,
    find_samples,
)
from ..intensity import CT_WINDOWS
from ..propagate import SliceSettings
from . import _evaluate_tracking
from ._args import parse_floats
from ._common import Progress

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    ev = sub.add_parser(
        "evaluate", help="measure segmentation quality against ground truth",
        description="Simulate prompts from ground truth, segment with one or more models "
                    "(the same prompts for all) and score the masks: IoU per click "
                    "(interactive), mSA/SA50/F1 (automatic), Dice and surface Dice "
                    "(volume), J and F (video). Writes a CSV, a JSON summary, plots and a "
                    "Markdown report into OUT.")
    ev.add_argument("data", type=Path,
                    help="image file or folder of images (with --labels), a Cell Tracking "
                         "Challenge folder (gt/man_seg*.tif) or a DAVIS folder (JPEGImages/, "
                         "Annotations/)")
    ev.add_argument("--labels", type=Path, default=None,
                    help="ground-truth labels file, or folder of labels paired by file name")
    ev.add_argument("--protocol", choices=(*PROTOCOLS, *_evaluate_tracking.PROTOCOLS),
                    default="interactive",
                    help="interactive (default), automatic, volume, video or tracking "
                         "(DET/SEG/TRA/division F1 of Cell Tracking Challenge ground truth)")
    ev.add_argument("--out", type=Path, required=True, help="output folder")
    ev.add_argument("--prediction", type=Path, default=None,
                    help="score this labels store (or labels file) instead of running a model")
    ev.add_argument("--relabel", action="store_true",
                    help="ground truth is a binary mask: its connected components are the "
                         "objects (e.g. ISBI 2012 cells)")
    ev.add_argument("--spacing", default=None,
                    help="voxel size 'dz,dy,dx' (default: from a NIfTI header, else 1 px)")
    ev.add_argument("--no-resume", action="store_true",
                    help="replace OUT's results instead of resuming them")
    ev.add_argument("--no-plots", action="store_true", help="no PNG figures")
    ev.add_argument("--embeddings", type=Path, default=None,
                    help="embedding cache folder (one cache per model and image, reused)")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    m = ev.add_argument_group("models (the same simulated prompts for all)")
    m.add_argument("--model", action="append", default=[],
                   help="registry name (repeatable), e.g. sam_vit_b, sam2.1_hiera_tiny")
    m.add_argument("--checkpoint", action="append", type=Path, default=[],
                   help="local weights file (repeatable), e.g. a fine-tuned checkpoint")
    m.add_argument("--arch", default=None, help="architecture of --checkpoint if not guessable")
    m.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    m.add_argument("--random-weights", action="store_true",
                   help="random weights (compute-only: scores are meaningless)")
    m.add_argument("--cache-dir", type=Path, default=None, help="where weights are downloaded")
    i = ev.add_argument_group("intensities")
    i.add_argument("--window", default=None,
                   help="LOW,HIGH or a CT window: " + ", ".join(CT_WINDOWS))
    i.add_argument("--percentiles", default=None, help="LOW,HIGH percentiles (default 1,99.8)")
    p = ev.add_argument_group("interactive protocol")
    p.add_argument("--start", choices=["point", "box"], default="point",
                   help="first prompt of each object (default point)")
    p.add_argument("--iterations", type=int, default=8,
                   help="correction rounds after the first prompt (default 8)")
    p.add_argument("--random-points", action="store_true",
                   help="random points in the error regions (default: the most interior)")
    p.add_argument("--seed", type=int, default=0, help="seed of random points")
    p.add_argument("--use-logits", action="store_true",
                   help="feed the last prediction's logits back as a mask input")
    p.add_argument("--batch-size", type=int, default=32, help="objects per decoder call")
    p.add_argument("--max-objects", type=int, default=None,
                   help="at most this many objects per plane (quick runs)")
    a = ev.add_argument_group("automatic protocol")
    a.add_argument("--points-per-side", type=int, default=32)
    a.add_argument("--generator", choices=["auto", "model", "grid"], default="auto")
    v = ev.add_argument_group("volume and video protocols")
    v.add_argument("--prompt", choices=["point", "box", "mask"], default=None,
                   help="volume: point (default) or box on each object's plane; video: mask "
                        "(default), box or point on its first frame")
    v.add_argument("--plane", choices=["largest", "middle"], default="largest",
                   help="volume: which plane of each object is prompted")
    v.add_argument("--methods", default=None,
                   help="comma-separated: slice,sam2 (default both; sam2 needs a SAM2 model)")
    v.add_argument("--tolerance", type=float, default=2.0,
                   help="surface Dice tolerance in mm (the spacing's unit; default 2)")
    v.add_argument("--corrections", type=int, default=0,
                   help="volume: rounds of one more prompt on each object's worst plane")
    v.add_argument("--bound-th", type=float, default=0.008,
                   help="video: boundary tolerance of F (fraction of the diagonal, DAVIS 0.008)")
    ev.set_defaults(_run=run)


def _settings(args: argparse.Namespace) -> Any:
    methods = None
    if args.methods:
        methods = tuple(x.strip() for x in args.methods.split(",") if x.strip())
    if args.protocol == "interactive":
        return InteractiveSettings(start=args.start, n_iterations=args.iterations,
                                   point_mode="random" if args.random_points else "center",
                                   seed=args.seed, use_logits=args.use_logits,
                                   batch_size=args.batch_size, max_objects=args.max_objects)
    if args.protocol == "automatic":
        return AutomaticSettings(auto=AutoSettings(points_per_side=args.points_per_side,
                                                   generator=args.generator))
    if args.protocol == "volume":
        if args.prompt == "mask":
            raise UsageError("--prompt mask is for the video protocol; volumes take point or box")
        return VolumeSettings(prompt=args.prompt or "point", plane=args.plane,
                              methods=methods or ("slice", "sam2"), tolerance=args.tolerance,
                              corrections=args.corrections, seed=args.seed,
                              point_mode="random" if args.random_points else "center")
    return VideoSettings(prompt=args.prompt or "mask", methods=methods or ("sam2", "slice"),
                         bound_th=args.bound_th, seed=args.seed, slice=SliceSettings())


def _check(args: argparse.Namespace) -> None:
    for name in ("iterations", "corrections"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.batch_size < 1 or (args.max_objects is not None and args.max_objects < 1):
        raise UsageError("--batch-size and --max-objects must be >= 1")
    if not math.isfinite(args.tolerance) or args.tolerance < 0:
        raise UsageError(f"--tolerance must be a number >= 0, got {args.tolerance}")
    if not args.model and not args.checkpoint and args.prediction is None:
        raise UsageError("give --model and/or --checkpoint (repeatable), or --prediction")
    if args.window and args.percentiles:
        raise UsageError("give --window or --percentiles, not both")


def run(args: argparse.Namespace) -> int:
    if args.protocol in _evaluate_tracking.PROTOCOLS:
        return _evaluate_tracking.run(args)
    _check(args)
    settings = _settings(args)
    pairs = find_samples(args.data, args.labels, relabel=args.relabel)
    if args.prediction is not None:
        if len(pairs) != 1:
            raise UsageError(f"--prediction scores one image; {args.data} holds {len(pairs)}")
        pairs = [FilePair(pairs[0].image, pairs[0].labels, pairs[0].name,
                          prediction=args.prediction, relabel=args.relabel)]
    data: list[Any] = pairs
    if args.spacing:
        spacing = parse_floats(args.spacing, "--spacing")
        data = [_with_spacing(p, spacing) for p in pairs]
    window = None
    if args.window:
        window = args.window if args.window in CT_WINDOWS else parse_floats(
            args.window, "--window", 2)
    percentiles = parse_floats(args.percentiles, "--percentiles", 2) if args.percentiles \
        else None
    models = list(args.model)
    if not models and not args.checkpoint:
        models = None
    with Progress(f"evaluate ({args.protocol})", quiet=args.quiet, unit="step") as bar:
        result = evaluate(data, models, protocol=args.protocol, settings=settings,
                          out=args.out, checkpoints=args.checkpoint, arch=args.arch,
                          device=args.device, random_weights=args.random_weights,
                          weights_dir=args.cache_dir, cache_dir=args.embeddings, window=window,
                          percentiles=percentiles, resume=not args.no_resume,
                          plots=not args.no_plots, progress=bar)
    print(result.table())
    for note in result.summary.get("notes", []):
        print(f"note: {note}")
    if result.cancelled:
        print("cancelled: the finished units are kept; run again to resume", file=sys.stderr)
    if args.random_weights:
        print("random weights: every score above is meaningless (compute-only run)")
    print(f"wrote {args.out / 'results.csv'} ({len(result.rows)} rows), "
          f"{args.out / 'report.md'}")
    return 0


class _Spaced:
    """A FilePair whose sample gets a fixed voxel spacing."""

    def __init__(self, pair: FilePair, spacing: tuple[float, ...]) -> None:
        self.pair, self.spacing = pair, spacing
        self.name = pair.name

    def load(self) -> Any:
        sample = self.pair.load()
        sample.spacing = tuple(self.spacing)
        sample.unit = "--spacing"
        return sample


def _with_spacing(pair: FilePair, spacing: tuple[float, ...]) -> Any:
    return _Spaced(pair, spacing)

