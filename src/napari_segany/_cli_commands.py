"""The commands behind :mod:`napari_segany.cli`: each takes the parsed arguments, returns 0.

Everything the user typed is checked before a model is loaded or an output is touched;
user errors raise :class:`~napari_segany.cli.UsageError` (or another ``ValueError``), which
``cli.main`` prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .cli import UsageError, parse_box, parse_floats, parse_labels, parse_points, parse_range


# ------------------------------------------------------------------------- progress
class Progress:
    """``progress(done, total)`` callback drawing a bar on stderr (tqdm when installed)."""

    def __init__(self, desc: str, *, quiet: bool = False, unit: str = "plane") -> None:
        self.desc, self.quiet, self.unit = desc, quiet, unit
        self._bar: Any = None
        self._plain = False

    def __call__(self, done: int, total: int) -> None:
        if self.quiet or (self._bar is None and not total):
            return
        if self._bar is None and not self._plain:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr,
                                 dynamic_ncols=True)
            except ImportError:
                self._plain = True
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()
        else:
            filled = int(30 * done / total) if total else 30
            print(f"\r{self.desc} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}",
                  end="", file=sys.stderr, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._plain:
            print(file=sys.stderr)


# ------------------------------------------------------------------------- images
class ChannelsLast:
    """A lazy view of an array with its channel axis moved to the end (read plane by plane)."""

    def __init__(self, data: Any, axis: int) -> None:
        self.data, self.axis = data, axis
        order = [a for a in range(data.ndim) if a != axis] + [axis]
        self._order = order
        self.shape = tuple(int(data.shape[a]) for a in order)
        self.dtype, self.ndim = data.dtype, data.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        orig: list[Any] = [slice(None)] * self.ndim
        for view_axis, k in enumerate(key):
            orig[self._order[view_axis]] = k
        out = np.asarray(self.data[tuple(orig)])
        kept = [a for a in range(self.ndim) if not isinstance(orig[a], (int, np.integer))]
        if self.axis in kept:
            out = np.moveaxis(out, kept.index(self.axis), -1)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)


def _source_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if path.is_dir() and not ((path / "zarr.json").exists() or (path / ".zarray").exists()):
        return "frames"
    return {".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".png": "png", ".jpg": "jpeg",
            ".jpeg": "jpeg"}.get(path.suffix.lower(), "zarr" if path.is_dir() else "other")


def load_image(args: argparse.Namespace) -> tuple[Any, bool, dict[str, Any]]:
    """Read IMAGE and apply --rgb/--channel-axis: ``(data, rgb, source provenance)``."""
    from .io import read_image

    img = read_image(args.image)
    data, rgb = img.data, img.rgb if args.rgb is None else bool(args.rgb)
    if args.rgb and (data.ndim < 3 or data.shape[-1] not in (3, 4)):
        raise UsageError(f"--rgb needs a last axis of 3 or 4 channels; {args.image} has shape "
                         f"{tuple(data.shape)} (use --channel-axis for other layouts)")
    if args.channel_axis is not None:
        if args.rgb:
            raise UsageError("give --rgb (channels last) or --channel-axis, not both")
        if not -data.ndim <= args.channel_axis < data.ndim:
            raise UsageError(f"--channel-axis {args.channel_axis} does not exist for an image "
                             f"of shape {tuple(data.shape)}")
        data, rgb = ChannelsLast(data, args.channel_axis % data.ndim), True
    kind = _source_kind(Path(args.image))
    source = {"path": str(Path(args.image).resolve()), "format": kind,
              "shape": [int(s) for s in data.shape], "rgb": rgb,
              "affine": None if img.affine is None else np.asarray(img.affine).tolist(),
              "spacing": None if img.spacing is None else list(img.spacing),
              "unit": "mm" if kind == "nifti" else None}
    return data, rgb, source


def build_normalizer(args: argparse.Namespace, data: Any, rgb: bool) -> Any:
    """The intensity mapping chosen by --window / --percentiles / --channels."""
    from .intensity import CT_WINDOWS, Normalizer

    if args.window and args.percentiles:
        raise UsageError("give --window or --percentiles, not both")
    kw: dict[str, Any] = {}
    if args.window:
        window = args.window if args.window in CT_WINDOWS else parse_floats(
            args.window, "--window", 2)
        kw = {"mode": "window", "window": window}
    elif args.percentiles:
        kw = {"mode": "percentile", "percentiles": parse_floats(args.percentiles,
                                                                "--percentiles", 2)}
    if args.channels:
        try:
            kw["channels"] = tuple(int(c) for c in args.channels.split(","))
        except ValueError:
            raise UsageError(f"malformed --channels {args.channels!r}; expected e.g. '0,1,2'") \
                from None
        if not rgb:
            raise UsageError("--channels needs --rgb or --channel-axis")
    if rgb and args.channel_axis is not None:
        kw["channel_axis"] = -1
    else:
        kw["rgb"] = rgb
    return Normalizer.fit(data, **kw)


def load_backend(args: argparse.Namespace) -> Any:
    from .engine.registry import DEFAULT_MODEL, load_model

    if args.checkpoint is not None and args.model is None:  # architecture from --arch or file
        return load_model(args.checkpoint, arch=args.arch, device=args.device)
    return load_model(
        args.model or DEFAULT_MODEL, checkpoint=args.checkpoint, device=args.device,
        cache_dir=args.cache_dir, random_weights=args.random_weights,
        progress=_download_progress() if sys.stderr.isatty() else None,
    )


def _download_progress():
    def report(done: int, total: int | None) -> None:
        msg = f"\rdownloading weights: {done / 2**20:.0f}" + (
            f" / {total / 2**20:.0f} MiB" if total else " MiB")
        print(msg, end="", file=sys.stderr, flush=True)

    return report


# ------------------------------------------------------------------------- prompts
def prompts_from_args(args: argparse.Namespace) -> list[Any]:
    """``--points/--point-labels/--box`` -> ObjectPrompts (points + one box: one object)."""
    from .prompts import ObjectPrompt

    prompts: list[ObjectPrompt] = []
    if args.points:
        pts = parse_points(args.points)
        labels = parse_labels(args.point_labels, len(pts)) if args.point_labels else None
        prompts.append(ObjectPrompt(points=pts, labels=labels))
    elif args.point_labels:
        raise UsageError("--point-labels given without --points")
    boxes = [parse_box(b) for b in args.box]
    if prompts and len(boxes) == 1:
        prompts[0] = ObjectPrompt(points=prompts[0].points, labels=prompts[0].labels,
                                  box=boxes[0])
    else:
        prompts += [ObjectPrompt(box=b) for b in boxes]
    return prompts


def check_plane(plane: tuple[int, ...], lead: tuple[int, ...]) -> None:
    if len(plane) != len(lead) or any(not 0 <= k < n for k, n in zip(plane, lead, strict=True)):
        raise UsageError(f"--plane {plane} does not fit an image with leading axes {lead}"
                         + ("" if lead else " (a 2D image takes no --plane)"))


def check_in_image(prompt: Any, hw: tuple[int, int], what: str) -> None:
    h, w = hw
    if prompt.box is not None:
        b = prompt.box
        if b[0] >= w or b[1] >= h or b[2] < 0 or b[3] < 0:
            raise UsageError(f"{what}: box {b.tolist()} lies outside the {w}x{h} image")
    pts = prompt.points
    if len(pts) and (np.any(pts < -0.5) or np.any(pts[:, 0] > w - 0.5)
                     or np.any(pts[:, 1] > h - 0.5)):
        raise UsageError(f"{what}: a point of {pts.tolist()} lies outside the {w}x{h} image")


def read_prompt_file(path: Path, shape: tuple[int, ...]) -> Any:
    """Read and check a PROMPTS.json (``PromptSet.to_dict()`` format) for an image shape."""
    from .prompts import PromptError, PromptSet

    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"prompts file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"prompts file {path} is not valid JSON: {exc}") from None
    try:
        prompts = PromptSet.from_dict(data)
    except (PromptError, ValueError) as exc:
        raise UsageError(f"prompts file {path}: {exc}") from None
    if not len(prompts):
        raise UsageError(f"prompts file {path} holds no prompts")
    lead = shape[:-2]
    for key, objects in prompts.items():
        if len(key) != len(lead) or any(not 0 <= k < n for k, n in zip(key, lead, strict=True)):
            raise UsageError(f"prompts file {path}: plane {key} does not fit an image with "
                             f"leading axes {lead}")
        for oid, p in objects.items():
            check_in_image(p, shape[-2:], f"prompts file {path}, object {oid} on plane {key}")
    return prompts


def _prompt_json(p: Any) -> dict[str, Any]:
    return {"points": p.points.tolist(), "labels": p.labels.tolist(),
            "box": None if p.box is None else p.box.tolist()}


def _open_store_early(path: Path, shape: tuple[int, ...], overwrite: bool) -> None:
    """Refuse a store of another shape (or a non-store) before any work is done."""
    from .labels import LabelsStore

    if path.exists() and not overwrite:
        LabelsStore.open_or_create(path, shape)


def _store(path: Path, shape: tuple[int, ...], overwrite: bool) -> Any:
    from .labels import LabelsStore

    return (LabelsStore.create(path, shape, overwrite=True) if overwrite
            else LabelsStore.open_or_create(path, shape))


# ------------------------------------------------------------------------- segment
def cmd_segment(args: argparse.Namespace) -> int:
    from .overlay import render_overlay, save_png
    from .prompts import ObjectPrompt
    from .session import Session

    truth = None
    if args.sample:
        from .samples import load_sample

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
    check_plane(plane, tuple(shape[:-2]))
    for i, p in enumerate(prompts):
        check_in_image(p, shape[-2:], f"object {i + 1}")
    normalizer = build_normalizer(args, image, rgb)
    store_path = args.out / "labels.zarr"
    _open_store_early(store_path, shape, args.overwrite)
    t0 = time.perf_counter()
    backend = load_backend(args)
    t1 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    store = _store(store_path, shape, args.overwrite)
    session = Session(image, backend, rgb=rgb, labels=store, normalizer=normalizer)
    plane = session.check_plane(plane)
    start_id = store.next_object_id()
    segs = session.segment({start_id + i: p for i, p in enumerate(prompts)}, plane)
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
    _random_note(args)
    print(f"wrote {store_path} and {args.out / 'overlay.png'}")
    return 0


def _random_note(args: argparse.Namespace) -> None:
    if args.random_weights:
        print("random weights: the masks above are meaningless (compute-only run)")


# ------------------------------------------------------------------------- propagate
def cmd_propagate(args: argparse.Namespace) -> int:
    from .prompts import PromptSet
    from .propagate import SliceSettings
    from .session import Session

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
        check_plane(plane, lead)
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
    _open_store_early(args.out, shape, args.overwrite)

    t0 = time.perf_counter()
    backend = load_backend(args)
    if args.method == "sam2" and getattr(backend, "family", None) != "sam2":
        raise UsageError(f"--method sam2 needs a SAM2 model (e.g. --model sam2.1_hiera_tiny); "
                         f"{backend.name} is a {backend.family} model: use --method slice")
    store = _store(args.out, shape, args.overwrite)
    if not user_ids:
        start = store.next_object_id()
        prompts = PromptSet()
        for i, p in enumerate(objects):
            prompts.add(plane, start + i, p)
    session = Session(image, backend, rgb=rgb, labels=store, normalizer=normalizer,
                      cache=args.cache)
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
    _random_note(args)
    print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------------------- embed
def cmd_embed(args: argparse.Namespace) -> int:
    from .session import Session

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    image, rgb, _ = load_image(args)
    normalizer = build_normalizer(args, image, rgb)
    backend = load_backend(args)
    session = Session(image, backend, rgb=rgb, normalizer=normalizer, cache=args.cache)
    t0 = time.perf_counter()
    with Progress("embedding", quiet=args.quiet) as bar:
        n = session.precompute(batch_size=args.batch_size, progress=bar)
    cache = session.cache
    total = int(np.prod(cache.lead_shape)) if cache.lead_shape else 1
    print(f"computed {n} plane embeddings in {time.perf_counter() - t0:.1f} s with "
          f"{backend.name} on {backend.device}; {len(cache.computed_planes())} of {total} "
          f"planes cached in {args.cache}")
    return 0


# ------------------------------------------------------------------------- export
_EXPORT_OPTIONS = {"axes": ("--axes", {"tif"}), "spacing": ("--spacing", {"tif", "nii"}),
                   "unit": ("--unit", {"tif"}), "imagej": ("--no-imagej", {"tif"}),
                   "reference": ("--reference", {"nii"}),
                   "class_names": ("--class-name", {"coco"})}


def cmd_export(args: argparse.Namespace) -> int:
    from .exports import export_labels, resolve_format
    from .labels import LabelsStore

    path = args.labels
    if path.is_dir() and (path / "labels.zarr").exists() and not (path / "zarr.json").exists():
        path = path / "labels.zarr"  # the folder 'segment' wrote
    fmt = resolve_format(args.format, args.out)
    options: dict[str, Any] = {}
    if args.axes:
        options["axes"] = args.axes
    if args.spacing:
        options["spacing"] = parse_floats(args.spacing, "--spacing")
    if args.unit:
        options["unit"] = args.unit
    if args.no_imagej:
        options["imagej"] = False
    if args.reference is not None:
        if not args.reference.exists():
            raise FileNotFoundError(f"reference image not found: {args.reference}")
        options["reference"] = args.reference
    if args.class_name:
        options["class_names"] = _class_names(args.class_name)
    for name in options:
        flag, formats = _EXPORT_OPTIONS[name]
        if fmt not in formats:
            raise UsageError(f"{flag} applies to --format {' or '.join(sorted(formats))}, "
                             f"not {fmt}")
    if not path.exists():
        raise FileNotFoundError(f"labels store not found: {path}")
    if not path.is_dir():
        raise UsageError(f"{path} is not a napari-segany labels store (a zarr folder written by "
                         "'segment' or 'propagate')")
    store = LabelsStore.open(path, mode="r")
    t0 = time.perf_counter()
    export_labels(store, args.out, format=fmt, overwrite=args.overwrite, **options)
    n = int(np.prod(store.shape[:-2])) if store.shape[:-2] else 1
    print(f"wrote {args.out} ({fmt}, labels {store.shape}, {n} planes) in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def _class_names(items: list[str]) -> dict[int, str] | str:
    if len(items) == 1 and "=" not in items[0]:
        return items[0]
    names: dict[int, str] = {}
    for item in items:
        oid, sep, name = item.partition("=")
        try:
            ok = sep and name and int(oid) >= 1
        except ValueError:
            ok = False
        if not ok:
            raise UsageError(f"malformed --class-name {item!r}; expected ID=NAME, e.g. 3=nucleus")
        names[int(oid)] = name
    return names


# ------------------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    from .engine.registry import available_models, get_spec

    for name in available_models():
        spec = get_spec(name)
        print(f"{name:24s} {spec.family:5s} {spec.arch:16s} {spec.description}")
    return 0
