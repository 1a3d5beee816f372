"""``napari-segany segment``: objects on one plane from points and boxes, with an overlay."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..overlay import render_overlay, save_png
from ..prompts import ObjectPrompt
from ..samples import load_sample
from ..session import Session
from ._common import (
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
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    seg = sub.add_parser("segment", help="segment objects on one plane from points/boxes",
                         description="Segment objects on one plane and write a zarr labels "
                                     "store (OUT/labels.zarr) and a PNG overlay "
                                     "(OUT/overlay.png). Running again adds objects.")
    src = seg.add_mutually_exclusive_group(required=True)
    src.add_argument("image", nargs="?", type=Path,
                     help="TIFF, PNG/JPEG, folder of frames, zarr, .npy or NIfTI image")
    src.add_argument("--sample", choices=["nuclei", "volume"],
                     help="use a bundled sample instead of a file")
    add_prompt_options(seg, "index along each leading axis (repeat for 4D), default 0 / "
                             "the sample's")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument("--overwrite", action="store_true", help="replace an existing labels store")
    add_intensity_options(seg)
    add_model_options(seg)
    seg.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    truth = None
    if args.sample:
        sample = load_sample(args.sample)
        image, rgb, truth = sample.image, False, sample
        source: dict[str, Any] = {"sample": args.sample}
    else:
        image, rgb, source = load_image(args)
    prompts = prompts_from_args(args)
    if not prompts:
        if truth is None:
            raise UsageError("give --points and/or --box (or use --sample)")
        prompts = [ObjectPrompt(points=[truth.point], labels=[1])]
    shape = tuple(image.shape[:-1] if rgb else image.shape)
    plane = tuple(args.plane) if args.plane else (truth.point_plane if truth else None)
    if plane is None:
        plane = (0,) * (len(shape) - 2)

    # check everything the user typed before loading a model or touching the output
    check_plane_option(plane, tuple(shape[:-2]))
    for i, p in enumerate(prompts):
        check_in_image(p, shape[-2:], f"object {i + 1}")
    normalizer = build_normalizer(args, image, rgb)
    store_path = args.out / "labels.zarr"
    check_output(store_path, shape, overwrite=args.overwrite, inputs=(args.image,))
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; segment writes a folder (labels.zarr "
                         "and overlay.png): choose another --out")
    t0 = time.perf_counter()
    backend = load_backend(args)
    t1 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    _, store = open_outputs(args, store_path, shape, image=image, rgb=rgb,
                            normalizer=normalizer, backend=backend, cache=False)
    session = Session(image, backend, rgb=rgb, labels=store, normalizer=normalizer)
    plane = session.check_plane(plane)
    ids = store.reserve_object_ids(len(prompts))  # safe with other writers of this store
    start_id = ids[0]
    segs = session.segment(dict(zip(ids, prompts, strict=True)), plane)
    t2 = time.perf_counter()
    for seg in segs.values():
        session.commit(seg)
    store.update_provenance(prompts={**store.provenance.get("prompts", {}),  # keep earlier runs'
                                     **{str(k): _prompt_json(prompts[k - start_id]) for k in segs}},
                            plane=list(plane), source=source)
    labels = store.read_plane(plane)
    pts = np.concatenate([p.points for p in prompts]) if prompts else None
    save_png(args.out / "overlay.png", render_overlay(session.plane_rgb(plane), labels, points=pts))
    print(f"model {backend.name} on {backend.device}: loaded in {t1 - t0:.1f} s, "
          f"embedded + segmented plane {plane or '(2D)'} in {t2 - t1:.1f} s")
    for oid, seg in segs.items():
        line = f"object {oid}: {int(seg.mask.sum())} px, predicted IoU {seg.score:.3f}"
        if truth is not None:
            gt = (truth.labels[plane] if plane else truth.labels) == truth.object_id
            iou = np.logical_and(gt, seg.mask).sum() / max(1, np.logical_or(gt, seg.mask).sum())
            line += f", IoU with ground truth {iou:.3f}"
        print(line)
    random_note(args)
    print(f"wrote {store_path} and {args.out / 'overlay.png'}")
    return 0


def _prompt_json(p: Any) -> dict[str, Any]:
    return {"points": p.points.tolist(), "labels": p.labels.tolist(),
            "box": None if p.box is None else p.box.tolist()}
