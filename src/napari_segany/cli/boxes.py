"""``napari-segany boxes``: boxes (detections, annotations) to masks, one object per box.

Boxes read from a CSV or JSON file are decoded in batches; every box becomes one object of
the labels store, its class in the store's attributes. See ``docs/automatic.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..boxes import BoxError, read_boxes
from ..errors import UsageError
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
    box = sub.add_parser(
        "boxes", help="turn boxes (detections, annotations) into masks, one object per box",
        description="Segment boxes read from a CSV or JSON file in batches; every box becomes "
                    "one object of the labels store, its class in the store's attributes. "
                    "Columns: plane (stacks), x0,y0,x1,y1, class, id, score; see "
                    "docs/automatic.md.")
    add_image_argument(box)
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
    add_tiling_options(box)
    box.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_intensity_options(box)
    add_model_options(box)
    box.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    if args.chunk_size < 1:
        raise UsageError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    image, rgb, source, shape, normalizer = prepare_image(args)
    try:
        table = read_boxes(args.boxes).validated(shape)
    except BoxError as exc:
        raise UsageError(str(exc)) from None
    if args.default_class:
        table.classes = [c if c is not None else args.default_class for c in table.classes]
    check_tiling(args)
    check_output(args.out, shape, overwrite=args.overwrite,
                 inputs=(args.image, getattr(args, "boxes", None)))

    t0 = time.perf_counter()
    backend = load_backend(args)
    tiled = tiled_embeddings(args, image, rgb, shape, backend, normalizer)
    cache, store = open_outputs(args, args.out, shape, image=image, rgb=rgb,
                                normalizer=normalizer, backend=backend, cache=tiled is None)
    session = tiled_session(args, image, rgb, backend, normalizer, store, tiled, cache)
    store.update_provenance(source=source)
    with Progress("segmenting boxes", quiet=args.quiet, unit="box") as bar:
        result = session.segment_boxes(table, tiled=tiled, chunk_size=args.chunk_size,
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
    random_note(args)
    print(f"wrote {args.out}")
    return 0
