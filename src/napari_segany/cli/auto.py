"""``napari-segany auto``: segment everything on every plane, objects linked across planes.

A grid of point prompts on every plane (SAM/SAM2 automatic mask generators), overlaps
resolved into instance labels, objects linked across the planes of a volume or stack,
written plane by plane into a labels store. See ``docs/automatic.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..auto import AutoSettings, generator_kind
from ..errors import UsageError
from ._args import parse_range
from ._common import (
    Progress,
    add_image_argument,
    add_intensity_options,
    add_model_options,
    add_tiling_options,
    check_output,
    check_tiling,
    load_backend,
    open_outputs,
    prepare_image,
    random_note,
    tiled_embeddings,
    tiled_session,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    auto = sub.add_parser(
        "auto", help="segment everything: instance labels of every object, linked across planes",
        description="Automatic segmentation: a grid of point prompts on every plane, masks "
                    "filtered and made non-overlapping (better masks first), objects linked "
                    "across the planes of a volume or stack (IoU, Hungarian assignment), "
                    "written plane by plane into a labels store. See docs/automatic.md.")
    add_image_argument(auto)
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
    add_tiling_options(auto)
    auto.add_argument("--stitch-iou", type=float, default=0.5,
                      help="minimum IoU in the tiles' overlap to join objects of two tiles")
    auto.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_intensity_options(auto)
    add_model_options(auto)
    auto.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    image, rgb, source, shape, normalizer = prepare_image(args)
    lead = shape[:-2]
    if lead and not -len(lead) <= args.axis < len(lead):
        raise UsageError(f"--axis {args.axis} does not exist: the image has {len(lead)} "
                         f"leading axes {lead}")
    axis = args.axis % len(lead) if lead else 0
    if args.range and not lead:
        raise UsageError(f"--range needs a volume or stack; {args.image} is a 2D image {shape}")
    planes = parse_range(args.range, lead[axis]) if args.range else None
    check_tiling(args)
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
    check_output(args.out, shape, overwrite=args.overwrite,
                 inputs=(args.image, getattr(args, "boxes", None)))

    t0 = time.perf_counter()
    backend = load_backend(args)
    generator_kind(backend, settings)  # refuse bad generator/crop combinations early
    tiled = tiled_embeddings(args, image, rgb, shape, backend, normalizer)
    cache, store = open_outputs(args, args.out, shape, image=image, rgb=rgb,
                                normalizer=normalizer, backend=backend, cache=tiled is None)
    session = tiled_session(args, image, rgb, backend, normalizer, store, tiled, cache)
    store.update_provenance(source=source)
    with Progress("segmenting everything", quiet=args.quiet, unit="batch") as bar:
        result = session.auto_segment(planes=planes, axis=axis, settings=settings,
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
    random_note(args)
    print(f"wrote {args.out}")
    return 0
