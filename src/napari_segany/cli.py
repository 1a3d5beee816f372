"""Command line: ``napari-segany segment ...``.

Points follow the convention of segment-anything's examples: ``--points "x,y;x,y"`` with
``--point-labels "1,0"`` (1 positive, 0 negative); boxes are ``--box x0,y0,x1,y1`` and may
be repeated (one object per box). User errors exit with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "parse_points", "parse_box"]


class UsageError(ValueError):
    """A command-line argument is malformed."""


def parse_points(text: str) -> np.ndarray:
    """``"x,y;x,y"`` -> ``(N, 2)`` float array."""
    try:
        pts = [[float(v) for v in pair.split(",")] for pair in text.split(";") if pair.strip()]
    except ValueError:
        raise UsageError(f"malformed --points {text!r}; expected 'x,y;x,y'") from None
    if not pts or any(len(p) != 2 for p in pts):
        raise UsageError(f"malformed --points {text!r}; expected 'x,y;x,y'")
    return np.array(pts, dtype=float)


def parse_labels(text: str, n: int) -> np.ndarray:
    """``"1,0"`` -> ``(n,)`` int array of 1 (positive) / 0 (negative)."""
    try:
        labels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"malformed --point-labels {text!r}; expected e.g. '1,0'") from None
    if len(labels) != n or any(v not in (0, 1) for v in labels):
        raise UsageError(f"--point-labels needs {n} values of 1 or 0, got {text!r}")
    return np.array(labels, dtype=np.int32)


def parse_box(text: str) -> np.ndarray:
    """``"x0,y0,x1,y1"`` -> ``(4,)`` float array."""
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise UsageError(f"malformed --box {text!r}; expected 'x0,y0,x1,y1'")
    return np.array(box, dtype=float)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="registry name (default: sam2.1_hiera_tiny); see 'napari-segany models'")
    g.add_argument("--checkpoint", type=Path, default=None,
                   help="local weights file (works offline), e.g. a fine-tuned SAM checkpoint")
    g.add_argument("--arch", default=None, help="architecture of --checkpoint if not guessable")
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    g.add_argument("--random-weights", action="store_true",
                   help="compute-only smoke runs and benchmarks: random weights, masks are "
                        "meaningless")
    g.add_argument("--cache-dir", type=Path, default=None,
                   help="where official weights are downloaded (default: "
                        "$NAPARI_SEGANY_CACHE_DIR or ~/.cache/napari-segany/models)")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="napari-segany", description="Segment Anything (SAM, SAM2) for scientific images."
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment objects on one plane from points/boxes",
                         description="Segment objects on one plane and write a zarr labels "
                                     "store and a PNG overlay into OUT.")
    src = seg.add_mutually_exclusive_group(required=True)
    src.add_argument("image", nargs="?", type=Path, help="TIFF, PNG/JPEG, zarr or .npy image")
    src.add_argument("--sample", choices=["nuclei", "volume"],
                     help="use a bundled sample instead of a file")
    seg.add_argument("--points", help="'x,y;x,y' point prompts (one object)")
    seg.add_argument("--point-labels", help="'1,0': 1 positive, 0 negative (default all 1)")
    seg.add_argument("--box", action="append", default=[], help="'x0,y0,x1,y1' (repeatable)")
    seg.add_argument("--plane", type=int, action="append", default=None,
                     help="index along each leading axis (repeat for 4D), default 0 / sample's")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument("--overwrite", action="store_true", help="replace an existing labels store")
    _add_model_options(seg)

    sub.add_parser("models", help="list the models in the registry")
    return parser


def _load_backend(args: argparse.Namespace) -> Any:
    from .engine.registry import DEFAULT_MODEL, load_model

    if args.checkpoint is not None and args.model is None:  # architecture from --arch or the file
        return load_model(args.checkpoint, arch=args.arch, device=args.device)
    return load_model(
        args.model or DEFAULT_MODEL, checkpoint=args.checkpoint, device=args.device, cache_dir=args.cache_dir,
        random_weights=args.random_weights,
        progress=_download_progress() if sys.stderr.isatty() else None,
    )


def _download_progress():
    def report(done: int, total: int | None) -> None:
        msg = f"\rdownloading weights: {done / 2**20:.0f}" + (
            f" / {total / 2**20:.0f} MiB" if total else " MiB")
        print(msg, end="", file=sys.stderr, flush=True)

    return report


def _cmd_segment(args: argparse.Namespace) -> int:
    from .labels import LabelsStore
    from .overlay import render_overlay, save_png
    from .prompts import ObjectPrompt
    from .session import Session

    truth = None
    if args.sample:
        from .samples import load_sample

        sample = load_sample(args.sample)
        image, rgb, truth = sample.image, False, sample
    else:
        from .io import read_image

        img = read_image(args.image)
        image, rgb = img.data, img.rgb
    prompts: list[ObjectPrompt] = []
    if args.points:
        pts = parse_points(args.points)
        labels = parse_labels(args.point_labels, len(pts)) if args.point_labels else None
        prompts.append(ObjectPrompt(points=pts, labels=labels))
    elif args.point_labels:
        raise UsageError("--point-labels given without --points")
    boxes = [parse_box(b) for b in args.box]
    if prompts and len(boxes) == 1:
        prompts[0] = ObjectPrompt(points=prompts[0].points, labels=prompts[0].labels, box=boxes[0])
    else:
        prompts += [ObjectPrompt(box=b) for b in boxes]
    if not prompts:
        if truth is None:
            raise UsageError("give --points and/or --box (or use --sample)")
        prompts = [ObjectPrompt(points=[truth.point], labels=[1])]
    plane = tuple(args.plane) if args.plane else (truth.point_plane if truth else None)
    shape = image.shape[:-1] if rgb else image.shape
    if plane is None:
        plane = (0,) * (len(shape) - 2)

    # check everything the user typed before loading a model or touching the output
    lead, (h, w) = tuple(shape[:-2]), tuple(shape[-2:])
    if len(plane) != len(lead) or any(not 0 <= k < n for k, n in zip(plane, lead)):
        raise UsageError(f"--plane {plane} does not fit an image with leading axes {lead}"
                         + ("" if lead else " (a 2D image takes no --plane)"))
    for i, p in enumerate(prompts):
        if p.box is not None and (p.box[0] >= w or p.box[1] >= h or p.box[2] < 0 or p.box[3] < 0):
            raise UsageError(f"box {i + 1} {p.box.tolist()} lies outside the {w}x{h} image")
        if len(p.points) and (np.any(p.points < -0.5) or np.any(p.points[:, 0] > w - 0.5)
                              or np.any(p.points[:, 1] > h - 0.5)):
            raise UsageError(f"a point of {p.points.tolist()} lies outside the {w}x{h} image")
    store_path = args.out / "labels.zarr"
    if store_path.exists() and not args.overwrite:
        LabelsStore.open_or_create(store_path, shape)  # refuses a store of another shape
    t0 = time.perf_counter()
    backend = _load_backend(args)
    t1 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    store = (LabelsStore.create(store_path, shape, overwrite=True) if args.overwrite
             else LabelsStore.open_or_create(store_path, shape))
    session = Session(image, backend, rgb=rgb, labels=store)
    plane = session.check_plane(plane)
    start_id = store.next_object_id()
    segs = session.segment({start_id + i: p for i, p in enumerate(prompts)}, plane)
    t2 = time.perf_counter()
    for seg in segs.values():
        session.commit(seg)
    store.update_provenance(prompts={**store.provenance.get("prompts", {}),  # keep earlier runs'
                                     **{str(k): _prompt_json(prompts[k - start_id]) for k in segs}},
                            plane=list(plane))
    labels = store.read_plane(plane)
    pts = np.concatenate([p.points for p in prompts]) if prompts else None
    save_png(args.out / "overlay.png", render_overlay(session.plane_rgb(plane), labels, points=pts))
    print(f"model {backend.name} on {backend.device}: loaded in {t1 - t0:.1f} s, "
          f"embedded + segmented plane {plane or '(2D)'} in {t2 - t1:.1f} s")
    for oid, seg in segs.items():
        line = f"object {oid}: {int(seg.mask.sum())} px, predicted IoU {seg.score:.3f}"
        if truth is not None:
            gt = truth.labels[plane] == truth.object_id if plane else truth.labels == truth.object_id
            inter = np.logical_and(gt, seg.mask).sum()
            line += f", IoU with ground truth {inter / max(1, np.logical_or(gt, seg.mask).sum()):.3f}"
        print(line)
    if args.random_weights:
        print("random weights: the masks above are meaningless (compute-only run)")
    print(f"wrote {store_path} and {args.out / 'overlay.png'}")
    return 0


def _prompt_json(p: Any) -> dict[str, Any]:
    return {"points": p.points.tolist(), "labels": p.labels.tolist(),
            "box": None if p.box is None else p.box.tolist()}


def _cmd_models(args: argparse.Namespace) -> int:
    from .engine.registry import available_models, get_spec

    for name in available_models():
        spec = get_spec(name)
        print(f"{name:24s} {spec.family:5s} {spec.arch:16s} {spec.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-segany`` command."""
    from .engine.weights import CheckpointError, DownloadError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "segment":
            return _cmd_segment(args)
        return _cmd_models(args)
    except DownloadError as exc:
        print(f"napari-segany: {exc} (for a compute-only smoke run without weights add "
              "--random-weights)", file=sys.stderr)
        return 2
    except (UsageError, ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"napari-segany: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
