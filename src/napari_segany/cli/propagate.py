"""``napari-segany propagate``: objects through a volume or stack, written plane by plane."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..engine.sam2_video import supports_memory
from ..errors import UsageError
from ..prompts import PromptSet
from ..propagate import SliceSettings
from ..session import Session
from ._args import parse_range
from ._common import (
    Progress,
    add_image_argument,
    add_intensity_options,
    add_model_options,
    add_prompt_options,
    build_normalizer,
    check_in_image,
    check_output,
    check_plane_option,
    load_backend,
    load_image,
    open_outputs,
    prompts_from_args,
    random_note,
    read_prompt_file,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    prop = sub.add_parser(
        "propagate", help="segment objects through a volume or stack",
        description="Segment objects on their prompted plane(s) and propagate them through "
                    "the stack, writing every plane into the labels store OUT (zarr) as it "
                    "is done (Ctrl-C keeps the planes written).")
    add_image_argument(prop)
    prop.add_argument("--prompts", type=Path, default=None,
                      help="PROMPTS.json: prompts on one or more planes for one or more objects "
                           "(PromptSet.to_dict() format, see docs/cli.md)")
    add_prompt_options(prop, "the prompted plane: index along each leading axis (repeat "
                              "for 4D); needed with --points/--box")
    prop.add_argument("--axis", type=int, default=0,
                      help="leading axis to propagate along (default 0: z of (z, y, x); "
                           "1 for z of (t, z, y, x))")
    prop.add_argument("--method", choices=["slice", "sam2"], default="slice",
                      help="slice: slice-wise with any model (default); sam2: SAM2 memory "
                           "tracking (SAM2 models)")
    prop.add_argument("--direction", choices=["both", "forward", "backward"], default="both")
    prop.add_argument("--range", default=None, metavar="A:B",
                      help="only planes A <= i < B along --axis (either side optional)")
    prop.add_argument("--cache", type=Path, default=None,
                      help="embedding cache folder (see 'embed'); reused and filled")
    prop.add_argument("--out", type=Path, required=True, help="labels store (e.g. OUT.zarr)")
    prop.add_argument("--overwrite", action="store_true", help="replace an existing store")
    prop.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    g = prop.add_argument_group("slice-wise propagation (--method slice)")
    g.add_argument("--slice-prompt", choices=["box+mask", "box", "box+point", "points"],
                   default="box+mask", help="how a plane's mask prompts the next plane")
    g.add_argument("--min-score", type=float, default=0.5,
                   help="stop an object where the predicted IoU falls below this (0.5)")
    g.add_argument("--min-area", type=int, default=16,
                   help="stop an object where its mask has fewer pixels (16)")
    g.add_argument("--max-area-ratio", type=float, default=2.5,
                   help="stop where the area grows more than this factor per plane (2.5)")
    add_intensity_options(prop)
    add_model_options(prop)
    prop.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    image, rgb, source = load_image(args)
    shape = tuple(image.shape[:-1] if rgb else image.shape)
    lead = shape[:-2]
    if not lead:
        raise UsageError(f"{args.image} is a 2D image {shape}; propagate needs a volume or a "
                         "stack (use 'segment' for one plane)")
    if not -len(lead) <= args.axis < len(lead):
        raise UsageError(f"--axis {args.axis} does not exist: the image has {len(lead)} "
                         f"leading axes {lead}")
    axis = args.axis % len(lead)
    from_args = bool(args.points or args.box or args.point_labels)
    if args.prompts is not None:
        if from_args or args.plane:
            raise UsageError("give --prompts or --points/--box/--plane, not both")
        prompts = read_prompt_file(args.prompts, shape)
        user_ids = True
    else:
        objects = prompts_from_args(args)
        if not objects:
            raise UsageError("give --prompts PROMPTS.json, or --points and/or --box with --plane")
        if not args.plane:
            raise UsageError(f"--points/--box need --plane: the index of the prompted plane "
                             f"along each leading axis {lead}")
        plane = tuple(args.plane)
        check_plane_option(plane, lead)
        for i, p in enumerate(objects):
            check_in_image(p, shape[-2:], f"object {i + 1}")
        user_ids = False
    planes = parse_range(args.range, lead[axis]) if args.range else None
    lo, hi = planes or (0, lead[axis])
    if user_ids and not any(lo <= k[axis] < hi for k in prompts.planes()):
        raise UsageError(f"no prompted plane lies in --range {lo}:{hi} along axis {axis}")
    if not user_ids and not lo <= plane[axis] < hi:
        raise UsageError(f"--plane {plane} lies outside --range {lo}:{hi} along axis {axis}")
    settings = SliceSettings(prompt=args.slice_prompt, min_score=args.min_score,
                             min_area=args.min_area, max_area_ratio=args.max_area_ratio)
    normalizer = build_normalizer(args, image, rgb)
    check_output(args.out, shape, overwrite=args.overwrite, inputs=(args.image, args.prompts))

    t0 = time.perf_counter()
    backend = load_backend(args)
    if args.method == "sam2" and not supports_memory(backend):
        raise UsageError(f"--method sam2 needs a SAM2 model (e.g. --model sam2.1_hiera_tiny); "
                         f"{backend.name} is a {backend.family} model: use --method slice")
    cache, store = open_outputs(args, args.out, shape, image=image, rgb=rgb,
                                normalizer=normalizer, backend=backend)
    if not user_ids:  # new ids, allocated safely with other writers of this store
        prompts = PromptSet()
        for oid, p in zip(store.reserve_object_ids(len(objects)), objects, strict=True):
            prompts.add(plane, oid, p)
    session = Session(image, backend, rgb=rgb, labels=store, normalizer=normalizer,
                      cache=cache)
    store.update_provenance(source=source)
    with Progress(f"propagating ({args.method})", quiet=args.quiet) as bar:
        written = session.propagate(prompts, method=args.method, axis=axis, planes=planes,
                                    direction=args.direction, settings=settings, progress=bar)
    t1 = time.perf_counter()
    print(f"model {backend.name} on {backend.device}: {args.method} propagation along axis "
          f"{axis} in {t1 - t0:.1f} s ({session.embeddings_computed} planes embedded)")
    for oid in prompts.object_ids():
        done = written.get(oid, [])
        span = (f", planes {min(k[axis] for k in done)}..{max(k[axis] for k in done)}"
                if done else "")
        print(f"object {oid}: {len(done)} planes{span}")
    random_note(args)
    print(f"wrote {args.out}")
    return 0
