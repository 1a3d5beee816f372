"""What the commands share: option groups, reading the image, the intensity mapping, the
model, prompts from the options, the output store, and a progress bar.

Everything the user typed is checked before a model is loaded or an output is touched;
user errors raise :class:`~napari_segany.errors.UsageError` (or another ``ValueError``),
which :func:`napari_segany.cli.main` prints as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import check_plane, check_plane_pixels
from ..engine.device import PRECISIONS
from ..engine.registry import load_model
from ..errors import IntensityError, PromptError, UsageError
from ..intensity import WINDOW_PRESETS, Normalizer, normalizer_from_options
from ..io import channels_last, is_dicom, read_image
from ..prompts import ObjectPrompt, PromptSet, check_in_plane
from ..session import Session
from ..storage.atomic import remove
from ..storage.cache import EmbeddingCache
from ..storage.labels import LabelsStore, is_labels_store
from ..tiling import TiledEmbeddings
from ._args import parse_box, parse_floats, parse_labels, parse_points

__all__ = ["Progress", "add_model_options", "add_intensity_options", "add_image_argument",
           "add_prompt_options", "add_tiling_options", "load_image", "build_normalizer",
           "load_backend", "prompts_from_args", "check_plane_option", "check_in_image",
           "read_prompt_file", "check_output", "open_outputs", "random_note",
           "prepare_image", "check_tiling", "tiled_embeddings", "tiled_session"]


# ------------------------------------------------------------------------- options
def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="registry name (default: sam2.1_hiera_tiny); see 'napari-segany models'")
    g.add_argument("--checkpoint", type=Path, default=None,
                   help="local weights file (works offline), e.g. a fine-tuned SAM checkpoint")
    g.add_argument("--arch", default=None, help="architecture of --checkpoint if not guessable")
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    g.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="auto (default, or $NAPARI_SEGANY_PRECISION): bf16 on GPUs and on "
                        "CPUs with native bf16 (AVX512-BF16, AMX), else fp32; fp32 forces "
                        "float32 (results equal to segment-anything's and sam2's)")
    g.add_argument("--random-weights", action="store_true",
                   help="compute-only: random weights, masks are meaningless (benchmarks and "
                        "offline smoke tests)")
    g.add_argument("--cache-dir", type=Path, default=None,
                   help="where official weights are downloaded (default: "
                        "$NAPARI_SEGANY_CACHE_DIR or ~/.cache/napari-segany/models)")


def add_intensity_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("intensities (how pixel values become the model's RGB input)")
    g.add_argument("--window", default=None,
                   help="LOW,HIGH (e.g. -160,240), a CT window (ct_soft_tissue, ct_lung, "
                        "ct_bone, ct_brain, ct_liver) or 'file': the DICOM series' own "
                        "WindowCenter/WindowWidth (CT or MR)")
    g.add_argument("--percentiles", default=None,
                   help="LOW,HIGH percentiles mapped to black/white (default 1,99.8; uint8 "
                        "and RGB images are used as they are)")
    g.add_argument("--rgb", action=argparse.BooleanOptionalAction, default=None,
                   help="the last axis holds RGB(A) channels (default: detected for 2D "
                        "PNG/JPEG/TIFF)")
    g.add_argument("--channel-axis", type=int, default=None,
                   help="axis of IMAGE holding channels, e.g. 0 for (C, Z, Y, X)")
    g.add_argument("--channels", default=None,
                   help="up to 3 channels that become R,G,B, e.g. '0,2' (needed with > 3)")
    d = p.add_argument_group("DICOM")
    d.add_argument("--series", default=None,
                   help="the series to open when a DICOM folder holds several: its "
                        "SeriesInstanceUID, SeriesNumber or (part of its) SeriesDescription")


def add_image_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path,
                   help="TIFF (2D-4D), PNG/JPEG, folder of frames, zarr array, .npy, "
                        "NIfTI (.nii/.nii.gz) or DICOM (a series folder, DICOMDIR or .dcm)")


def add_prompt_options(p: argparse.ArgumentParser, plane_help: str) -> None:
    # --input_point/--input_label/--input_box: the spellings of segment-anything's SAM.py
    p.add_argument("--points", "--input_point", dest="points",
                   help="'x,y;x,y' point prompts (one object), pixel coordinates")
    p.add_argument("--point-labels", "--input_label", dest="point_labels",
                   help="'1,0': 1 positive, 0 negative (default all 1)")
    p.add_argument("--box", "--input_box", dest="box", action="append", default=[],
                   help="'x0,y0,x1,y1' (repeatable: one object per box)")
    p.add_argument("--plane", type=int, action="append", default=None, help=plane_help)


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


def add_tiling_options(p: argparse.ArgumentParser) -> None:
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
def _source_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if is_dicom(path):
        return "dicom"
    if path.is_dir() and not ((path / "zarr.json").exists() or (path / ".zarray").exists()):
        return "frames"
    return {".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".png": "png", ".jpg": "jpeg",
            ".jpeg": "jpeg"}.get(path.suffix.lower(), "zarr" if path.is_dir() else "other")


def load_image(args: argparse.Namespace) -> tuple[Any, bool, dict[str, Any]]:
    """Read IMAGE and apply --rgb/--channel-axis: ``(data, rgb, source provenance)``."""
    img = read_image(args.image, series=getattr(args, "series", None))
    data, rgb = img.data, img.rgb if args.rgb is None else bool(args.rgb)
    check_plane_pixels(data.shape[:-1] if rgb else data.shape, str(args.image), error=UsageError,
                       itemsize=np.dtype(data.dtype).itemsize)
    if args.rgb and (data.ndim < 3 or data.shape[-1] not in (3, 4)):
        raise UsageError(f"--rgb needs a last axis of 3 or 4 channels; {args.image} has shape "
                         f"{tuple(data.shape)} (use --channel-axis for other layouts)")
    if args.channel_axis is not None:
        if args.rgb:
            raise UsageError("give --rgb (channels last) or --channel-axis, not both")
        if not -data.ndim <= args.channel_axis < data.ndim:
            raise UsageError(f"--channel-axis {args.channel_axis} does not exist for an image "
                             f"of shape {tuple(data.shape)}")
        data = channels_last(data, args.channel_axis)
        rgb = True
    kind = _source_kind(Path(args.image))
    source = {"path": str(Path(args.image).resolve()), "format": kind,
              "shape": [int(s) for s in data.shape], "rgb": rgb,
              "affine": None if img.affine is None else np.asarray(img.affine).tolist(),
              "spacing": None if img.spacing is None else list(img.spacing),
              "unit": "mm" if kind in ("nifti", "dicom") else None}
    if kind == "dicom":  # what a DICOM-SEG / RTSTRUCT export needs to find its reference
        source.update(series_uid=img.metadata.get("series_uid"),
                      series_description=img.metadata.get("series_description"),
                      modality=img.metadata.get("modality"))
    return data, rgb, source


def build_normalizer(args: argparse.Namespace, data: Any, rgb: bool) -> Normalizer:
    """The intensity mapping chosen by --window / --percentiles / --channels."""
    if args.window and args.percentiles:
        raise UsageError("give --window or --percentiles, not both")
    window = None
    if args.window:
        if args.window not in WINDOW_PRESETS and args.window[:1].isalpha():
            raise UsageError(f"unknown --window {args.window!r}; use LOW,HIGH or one of "
                             f"{', '.join(WINDOW_PRESETS)}")
        window = args.window if args.window in WINDOW_PRESETS else parse_floats(
            args.window, "--window", 2)
    percentiles = parse_floats(args.percentiles, "--percentiles", 2) if args.percentiles \
        else None
    channels = None
    if args.channels:
        try:
            channels = tuple(int(c) for c in args.channels.split(","))
        except ValueError:
            raise UsageError(f"malformed --channels {args.channels!r}; expected e.g. '0,1,2'") \
                from None
        if not rgb:
            raise UsageError("--channels needs --rgb or --channel-axis")
    try:
        return normalizer_from_options(data, rgb=rgb,
                                       channels_moved=args.channel_axis is not None,
                                       window=window, percentiles=percentiles, channels=channels)
    except IntensityError as exc:  # the library speaks Python; say it in options
        text = str(exc)
        for api, cli in _API_TO_CLI:
            text = text.replace(api, cli)
        raise UsageError(text) from None


#: Python spellings in library messages -> the command line's options.
_API_TO_CLI = (("mode='window' with window=(low, high)", "--window LOW,HIGH"),
               ("window=(low, high)", "--window LOW,HIGH"),
               ("channels=(r, g, b)", "--channels R,G,B"), ("channel_axis=", "--channel-axis"),
               ("rgb=True", "--rgb"), ("channels=", "--channels"))


def load_backend(args: argparse.Namespace) -> Any:
    """The model of --model / --checkpoint / --arch (the default model when none is given)."""
    if args.checkpoint is not None and args.random_weights:
        raise UsageError("give --checkpoint (weights from a file) or --random-weights, not both")
    return load_model(
        args.model, checkpoint=args.checkpoint, arch=args.arch, device=args.device,
        precision=getattr(args, "precision", None),
        cache_dir=args.cache_dir, random_weights=args.random_weights,
        progress=_download_progress() if sys.stderr.isatty() else None,
    )


def _download_progress():
    def report(done: int, total: int | None) -> None:
        msg = f"\rdownloading weights: {done / 2**20:.0f}" + (
            f" / {total / 2**20:.0f} MiB" if total else " MiB")
        print(msg, end="", file=sys.stderr, flush=True)

    return report


def random_note(args: argparse.Namespace) -> None:
    if getattr(args, "random_weights", False):
        print("random weights: the masks above are meaningless (compute-only run)")


# ------------------------------------------------------------------------- prompts
def prompts_from_args(args: argparse.Namespace) -> list[ObjectPrompt]:
    """``--points/--point-labels/--box`` -> ObjectPrompts (points + one box: one object)."""
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


def check_plane_option(plane: tuple[int, ...], lead: tuple[int, ...]) -> None:
    try:
        check_plane(plane, lead, error=UsageError)
    except UsageError as exc:
        raise UsageError(f"--plane {' '.join(map(str, plane)) or '(none)'}: {exc}"
                         + ("" if lead else "; a 2D image takes no --plane")) from None


def check_in_image(prompt: ObjectPrompt, hw: tuple[int, int], what: str) -> None:
    """Refuse a prompt off the image (:func:`~napari_segany.prompts.check_in_plane`)."""
    try:
        check_in_plane(prompt, hw, what)
    except PromptError as exc:
        raise UsageError(str(exc)) from None


def read_prompt_file(path: Path, shape: tuple[int, ...]) -> PromptSet:
    """Read and check a PROMPTS.json (``PromptSet.to_dict()`` format) for an image shape."""
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
    for key, objects in prompts.items():
        try:
            check_plane(key, shape[:-2], error=UsageError)
        except UsageError as exc:
            raise UsageError(f"prompts file {path}: {exc}") from None
        for oid, p in objects.items():
            check_in_image(p, shape[-2:], f"prompts file {path}, object {oid} on plane {key}")
    return prompts


# ------------------------------------------------------------------------- output store
def check_output(path: Path, shape: tuple[int, ...], *, overwrite: bool,
                 inputs: tuple[Path | None, ...] = ()) -> None:
    """Refuse an output before any work is done (nothing is touched here).

    The output must not be (or hold) an input; an existing output must be a napari-segany
    labels store (``--overwrite`` replaces only those); without ``--overwrite`` its shape
    must be the image's.
    """
    out = Path(path).resolve()
    for given in inputs:
        if given is None:
            continue
        src = Path(given).resolve()
        if out == src or out in src.parents:
            raise UsageError(f"--out {path} is the input {given} (or holds it); choose another "
                             "output")
    if not (Path(path).exists() or Path(path).is_symlink()):
        return
    if not is_labels_store(path):
        raise UsageError(f"{path} exists and is not a napari-segany labels store; it is never "
                         "replaced (not even with --overwrite): choose another --out")
    if not overwrite:
        store = LabelsStore.open(path, mode="r")
        if store.shape != tuple(shape):
            raise UsageError(f"{path} holds labels of shape {store.shape}, but the image has "
                             f"shape {tuple(shape)}; choose another --out (or --overwrite to "
                             "replace that store)")


def open_outputs(args: argparse.Namespace, path: Path, shape: tuple[int, ...], *, image: Any,
                 rgb: bool, normalizer: Normalizer, backend: Any, cache: bool = True
                 ) -> tuple[EmbeddingCache | None, LabelsStore]:
    """The embedding cache (checked first: a refused cache leaves the store untouched), then
    the labels store (created, reopened or, with ``--overwrite``, replaced)."""
    emb = None
    new_cache = None
    cache_path = getattr(args, "cache", None) if cache else None
    if cache_path is not None:
        new_cache = None if Path(cache_path).exists() else Path(cache_path)
        emb = EmbeddingCache(cache_path, backend=backend, normalizer=normalizer, data=image,
                             rgb=rgb)
    try:
        if getattr(args, "overwrite", False) and Path(path).exists():
            store = LabelsStore.create(path, shape, overwrite=True)
        else:
            store = LabelsStore.open_or_create(path, shape)
    except BaseException:
        if new_cache is not None:  # made for this run only
            remove(new_cache)
        raise
    return emb, store



# ------------------------------------------------------------------------- planes and tiles
def prepare_image(args: argparse.Namespace) -> tuple[Any, bool, dict, tuple[int, ...], Any]:
    image, rgb, source = load_image(args)
    shape = tuple(int(s) for s in (image.shape[:-1] if rgb else image.shape))
    return image, rgb, source, shape, build_normalizer(args, image, rgb)



def check_tiling(args: argparse.Namespace) -> None:
    if isinstance(args.tile, int) and 0 < args.tile < 16:
        raise UsageError(f"--tile {args.tile} is too small; use at least 16 pixels (or 0)")
    if args.halo is not None and args.halo < 0:
        raise UsageError(f"--halo must be >= 0, got {args.halo}")
    if args.halo is not None and isinstance(args.tile, int) and args.tile and \
            2 * args.halo >= args.tile:
        raise UsageError(f"--halo {args.halo} must be less than half of --tile {args.tile}")



def tiled_embeddings(args, image, rgb, shape, backend, normalizer) -> Any:
    """TiledEmbeddings when the planes are to be tiled, else None."""
    size = int(getattr(backend, "image_size", 1024))
    if args.tile == 0 or (args.tile == "auto" and max(shape[-2:]) <= 2 * size):
        return None
    tile = size if args.tile == "auto" else int(args.tile)
    return TiledEmbeddings(image, backend, normalizer=normalizer, rgb=rgb, tile=tile,
                           halo=args.halo, cache=args.cache)



def tiled_session(args, image, rgb, backend, normalizer, store, tiled, cache) -> Session:
    """The session of a command; with tiles, the cache is the tiled embeddings' own."""
    return Session(image, backend, rgb=rgb, labels=store, normalizer=normalizer,
                   cache=None if tiled is not None else cache)
