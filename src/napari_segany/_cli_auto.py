"""The ``auto`` and ``boxes`` commands of the ``napari-segany`` command line.

``napari-segany auto IMAGE --out OUT.zarr``
    Segment everything on every plane (SAM/SAM2 automatic mask generators), resolve overlaps
    into instance labels, link objects across the planes of a volume or stack, and write a
    labels store plane by plane.
``napari-segany boxes IMAGE --boxes BOXES.csv|json --out OUT.zarr``
    Turn boxes (detections, annotations) into masks in batches, one object id per box, with
    the boxes' classes in the store's attributes.

Both take the common model and intensity options, tile large planes (``--tile``), and can
reuse an embedding cache (``--cache``). As everywhere in the CLI, user errors exit with
status 2 and a one-line message on stderr. See ``docs/automatic.md``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_auto_parsers", "cmd_auto", "cmd_boxes"]


# ------------------------------------------------------------------------- parsers
def _tile_value(text: str) -> int | str:
    t = text.strip().lower()
    if t in ("auto", "none", "off"):
        return "auto" if t == "auto" else 0
    try:
        v = int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, 0 (no tiling) or a size in pixels, "
                                         f"got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"tile size must be >= 0, got {v}")
    return v


def _add_tiling_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("large planes")
    g.add_argument("--tile", type=_tile_value, default="auto", metavar="auto|0|N",
                   help="cut planes into overlapping windows of N pixels, each embedded on "
                        "its own (auto, the default: the model's input size, when a plane's "
                        "longer side exceeds twice that; 0: never)")
    g.add_argument("--halo", type=int, default=None,
                   help="minimum overlap margin of the tiles in pixels (default: tile / 8)")
    g.add_argument("--cache", type=Path, default=None,
                   help="embedding cache folder (reused and filled; tiled embeddings are "
                        "cached with the tiling in the signature)")


def add_auto_parsers(subparsers: Any) -> None:
    """Add the ``auto`` and ``boxes`` sub-commands to ``napari-segany``'s sub-parsers.

    Each sub-parser sets ``_run`` (the command function) as a default.
    """
    from .cli import _add_image_argument, _add_intensity_options, _add_model_options

    auto = subparsers.add_parser(
        "auto", help="segment everything: instance labels of every object, linked across planes",
        description="Automatic segmentation: a grid of point prompts on every plane, masks "
                    "filtered and made non-overlapping (better masks first), objects linked "
                    "across the planes of a volume or stack (IoU, Hungarian assignment), "
                    "written plane by plane into a labels store. See docs/automatic.md.")
    _add_image_argument(auto)
    auto.add_argument("--out", type=Path, required=True, help="labels store (e.g. OUT.zarr)")
    auto.add_argument("--overwrite", action="store_true", help="replace an existing store")
    g = auto.add_argument_group("mask generation")
    g.add_argument("--points-per-side", type=int, default=32,
                   help="point grid of N x N prompts per plane or tile (32)")
    g.add_argument("--points-per-batch", type=int, default=64,
                   help="prompts per decoder call (64)")
    g.add_argument("--pred-iou-thresh", type=float, default=None,
                   help="keep masks with a predicted IoU above this (SAM 0.88, SAM2 0.8)")
    g.add_argument("--stability-thresh", type=float, default=0.95,
                   help="keep masks with a stability score of at least this (0.95)")
    g.add_argument("--box-nms-thresh", type=float, default=0.7,
                   help="box IoU above which duplicate masks are removed (0.7)")
    g.add_argument("--crop-layers", type=int, default=0,
                   help="extra layers of image crops (SAM/SAM2 generators; 0)")
    g.add_argument("--min-region-area", type=int, default=0,
                   help="fill holes and remove islands smaller than this in each mask (0)")
    g.add_argument("--min-area", type=int, default=16,
                   help="remove fragments and objects smaller than this after resolving "
                        "overlaps (16)")
    g.add_argument("--max-overlap", type=float, default=0.5,
                   help="drop a mask losing more than this fraction of its area to better "
                        "masks (0.5)")
    g.add_argument("--generator", choices=["auto", "model", "grid"], default="auto",
                   help="model: the SAM/SAM2 generator; grid: the generic point grid")
    g.add_argument("--m2m", action="store_true", help="SAM2: refine each mask once (use_m2m)")
    s = auto.add_argument_group("volumes and stacks")
    s.add_argument("--axis", type=int, default=0,
                   help="leading axis along which objects are linked (0)")
    s.add_argument("--range", default=None, metavar="A:B",
                   help="only planes A <= i < B along --axis")
    s.add_argument("--no-link", action="store_true",
                   help="do not link objects across planes (new ids on every plane)")
    s.add_argument("--link-iou", type=float, default=0.3,
                   help="minimum IoU of one object on consecutive planes (0.3)")
    _add_tiling_options(auto)
    auto.add_argument("--stitch-iou", type=float, default=0.5,
                      help="minimum IoU in the tiles' overlap to join objects of two tiles")
    auto.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_intensity_options(auto)
    _add_model_options(auto)
    auto.set_defaults(_run=cmd_auto)

    box = subparsers.add_parser(
        "boxes", help="turn boxes (detections, annotations) into masks, one object per box",
        description="Segment boxes read from a CSV or JSON file in batches; every box becomes "
                    "one object of the labels store, its class in the store's attributes. "
                    "Columns: plane (stacks), x0,y0,x1,y1, class, id, score; see "
                    "docs/automatic.md.")
    _add_image_argument(box)
    box.add_argument("--boxes", type=Path, required=True, help="BOXES.csv or BOXES.json")
    box.add_argument("--out", type=Path, required=True, help="labels store (e.g. OUT.zarr)")
    box.add_argument("--overwrite", action="store_true", help="replace an existing store")
    box.add_argument("--class", dest="default_class", default=None, metavar="NAME",
                     help="class of the boxes that have none")
    box.add_argument("--chunk-size", type=int, default=64, help="boxes per decoder call (64)")
    box.add_argument("--overlap", choices=["score", "order"], default="score",
                     help="who gets pixels claimed by several boxes: the higher predicted IoU "
                          "(score, default) or the earlier row (order)")
    box.add_argument("--multimask", action="store_true",
                     help="decode 3 candidates per box and keep the best")
    _add_tiling_options(box)
    box.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_intensity_options(box)
    _add_model_options(box)
    box.set_defaults(_run=cmd_boxes)


# ------------------------------------------------------------------------- error handling
def _guarded(fn):
    """Report user errors as ``cli.main`` does: one line on stderr, exit status 2."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        from .cli import UsageError, _error
        from .engine.weights import CheckpointError, DownloadError

        try:
            return fn(args)
        except DownloadError as exc:
            _error(f"{exc} (for a compute-only smoke run without weights add --random-weights)")
        except (UsageError, ValueError, FileNotFoundError, CheckpointError, OSError) as exc:
            _error(f"error: {exc}")
        return 2

    return run


# ------------------------------------------------------------------------- shared steps
def _prepare(args: argparse.Namespace) -> tuple[Any, bool, dict, tuple[int, ...], Any]:
    from ._cli_commands import build_normalizer, load_image

    image, rgb, source = load_image(args)
    shape = tuple(int(s) for s in (image.shape[:-1] if rgb else image.shape))
    return image, rgb, source, shape, build_normalizer(args, image, rgb)


def _check_tiling(args: argparse.Namespace) -> None:
    from .cli import UsageError

    if isinstance(args.tile, int) and 0 < args.tile < 16:
        raise UsageError(f"--tile {args.tile} is too small; use at least 16 pixels (or 0)")
    if args.halo is not None and args.halo < 0:
        raise UsageError(f"--halo must be >= 0, got {args.halo}")
    if args.halo is not None and isinstance(args.tile, int) and args.tile and \
            2 * args.halo >= args.tile:
        raise UsageError(f"--halo {args.halo} must be less than half of --tile {args.tile}")


def _tiled(args, image, rgb, shape, backend, normalizer) -> Any:
    """TiledEmbeddings when the planes are to be tiled, else None."""
    from .tiling import TiledEmbeddings

    size = int(getattr(backend, "image_size", 1024))
    if args.tile == 0 or (args.tile == "auto" and max(shape[-2:]) <= 2 * size):
        return None
    tile = size if args.tile == "auto" else int(args.tile)
    return TiledEmbeddings(image, backend, normalizer=normalizer, rgb=rgb, tile=tile,
                           halo=args.halo, cache=args.cache)


def _session(args, image, rgb, backend, normalizer, store, tiled) -> Any:
    from .session import Session

    return Session(image, backend, rgb=rgb, labels=store, normalizer=normalizer,
                   cache=None if tiled is not None else args.cache)


def _random_note(args: argparse.Namespace) -> None:
    if getattr(args, "random_weights", False):
        print("random weights: the masks above are meaningless (compute-only run)")


# ------------------------------------------------------------------------- auto
@_guarded
def cmd_auto(args: argparse.Namespace) -> int:
    from ._cli_commands import Progress, _open_store_early, _store, load_backend
    from .auto import AutoSettings, auto_segment
    from .cli import UsageError, parse_range

    image, rgb, source, shape, normalizer = _prepare(args)
    lead = shape[:-2]
    if lead and not -len(lead) <= args.axis < len(lead):
        raise UsageError(f"--axis {args.axis} does not exist: the image has {len(lead)} "
                         f"leading axes {lead}")
    axis = args.axis % len(lead) if lead else 0
    if args.range and not lead:
        raise UsageError(f"--range needs a volume or stack; {args.image} is a 2D image {shape}")
    planes = parse_range(args.range, lead[axis]) if args.range else None
    _check_tiling(args)
    if not 0 <= args.link_iou <= 1 or not 0 <= args.stitch_iou <= 1:
        raise UsageError("--link-iou and --stitch-iou must lie in [0, 1]")
    try:
        settings = AutoSettings(
            points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
            pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_thresh,
            box_nms_thresh=args.box_nms_thresh, crop_n_layers=args.crop_layers,
            min_region_area=args.min_region_area, min_area=args.min_area,
            max_overlap=args.max_overlap, use_m2m=args.m2m, generator=args.generator)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _open_store_early(args.out, shape, args.overwrite)

    t0 = time.perf_counter()
    backend = load_backend(args)
    from .auto import _generator_kind

    _generator_kind(backend, settings)  # refuse bad generator/crop combinations early
    tiled = _tiled(args, image, rgb, shape, backend, normalizer)
    store = _store(args.out, shape, args.overwrite)
    session = _session(args, image, rgb, backend, normalizer, store, tiled)
    store.update_provenance(source=source)
    with Progress("segmenting everything", quiet=args.quiet, unit="batch") as bar:
        result = auto_segment(session, planes=planes, axis=axis, settings=settings,
                              link=not args.no_link, link_iou=args.link_iou, tiled=tiled,
                              progress=bar)
    t1 = time.perf_counter()
    how = f", {len(tiled.grid)} tiles of {tiled.grid.tile_shape} per plane" if tiled else ""
    print(f"model {backend.name} on {backend.device}: {len(result.planes)} plane(s) in "
          f"{t1 - t0:.1f} s{how}")
    ids = result.object_ids
    span = f" (ids {min(ids)}..{max(ids)})" if ids else ""
    linked = " linked across planes" if lead and not args.no_link else ""
    print(f"{result.n_objects} objects{linked}{span}")
    _random_note(args)
    print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------------------- boxes
@_guarded
def cmd_boxes(args: argparse.Namespace) -> int:
    from ._cli_commands import Progress, _open_store_early, _store, load_backend
    from .boxes import BoxError, read_boxes, segment_boxes
    from .cli import UsageError

    if args.chunk_size < 1:
        raise UsageError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    image, rgb, source, shape, normalizer = _prepare(args)
    try:
        table = read_boxes(args.boxes).validated(shape)
    except BoxError as exc:
        raise UsageError(str(exc)) from None
    if args.default_class:
        table.classes = [c if c is not None else args.default_class for c in table.classes]
    _check_tiling(args)
    _open_store_early(args.out, shape, args.overwrite)

    t0 = time.perf_counter()
    backend = load_backend(args)
    tiled = _tiled(args, image, rgb, shape, backend, normalizer)
    store = _store(args.out, shape, args.overwrite)
    session = _session(args, image, rgb, backend, normalizer, store, tiled)
    store.update_provenance(source=source)
    with Progress("segmenting boxes", quiet=args.quiet, unit="box") as bar:
        result = segment_boxes(session, table, tiled=tiled, chunk_size=args.chunk_size,
                               overlap=args.overlap, multimask=args.multimask, progress=bar)
    t1 = time.perf_counter()
    print(f"model {backend.name} on {backend.device}: {len(table)} boxes on "
          f"{len(result.planes)} plane(s) in {t1 - t0:.1f} s")
    ids = sorted(set(result.ids.tolist()))
    print(f"{len(ids)} objects (ids {ids[0]}..{ids[-1]}); "
          f"{len(result.empty)} box(es) gave an empty mask")
    classes = sorted({c for c in table.classes if c is not None})
    if classes:
        print(f"classes: {', '.join(classes)}")
    _random_note(args)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover - manual use before wiring into cli.py
    parser = argparse.ArgumentParser(prog="napari-segany")
    add_auto_parsers(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns._run(ns))
