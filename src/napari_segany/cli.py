"""Command line: ``napari-segany segment | propagate | auto | boxes | embed | export | models``.

Points follow the convention of segment-anything's examples: ``--points "x,y;x,y"`` with
``--point-labels "1,0"`` (1 positive, 0 negative); boxes are ``--box x0,y0,x1,y1`` and may
be repeated (one object per box). User errors exit with status 2 and a one-line message on
stderr, never a traceback; progress bars go to stderr. The commands themselves live in
:mod:`napari_segany._cli_commands` (``auto`` and ``boxes`` in :mod:`napari_segany._cli_auto`);
this module holds the parser and the argument parsing.
See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "build_parser", "parse_points", "parse_box", "parse_range", "UsageError"]


class UsageError(ValueError):
    """A command-line argument is malformed."""


# ------------------------------------------------------------------------- argument values
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


def parse_floats(text: str, option: str, n: int | None = None) -> tuple[float, ...]:
    """``"1,99.8"`` -> floats (exactly ``n`` of them when given)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or (n is not None and len(values) != n):
        want = f"{n} comma-separated numbers" if n else "comma-separated numbers"
        raise UsageError(f"malformed {option} {text!r}; expected {want}")
    return values


def parse_range(text: str, size: int) -> tuple[int, int]:
    """``"a:b"`` (either side optional) -> ``(a, b)`` with ``0 <= a < b <= size``."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lo = int(parts[0]) if parts[0].strip() else 0
        hi = int(parts[1]) if parts[1].strip() else size
    except ValueError:
        raise UsageError(f"malformed --range {text!r}; expected 'start:stop', e.g. '10:40'") \
            from None
    if not 0 <= lo < hi <= size:
        raise UsageError(f"--range {text} is not a non-empty range within 0:{size}")
    return lo, hi


# ------------------------------------------------------------------------- parser
def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="registry name (default: sam2.1_hiera_tiny); see 'napari-segany models'")
    g.add_argument("--checkpoint", type=Path, default=None,
                   help="local weights file (works offline), e.g. a fine-tuned SAM checkpoint")
    g.add_argument("--arch", default=None, help="architecture of --checkpoint if not guessable")
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
    g.add_argument("--random-weights", action="store_true",
                   help="compute-only: random weights, masks are meaningless (benchmarks and "
                        "offline smoke tests)")
    g.add_argument("--cache-dir", type=Path, default=None,
                   help="where official weights are downloaded (default: "
                        "$NAPARI_SEGANY_CACHE_DIR or ~/.cache/napari-segany/models)")


def _add_intensity_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("intensities (how pixel values become the model's RGB input)")
    g.add_argument("--window", default=None,
                   help="LOW,HIGH (e.g. -160,240) or a CT window: ct_soft_tissue, ct_lung, "
                        "ct_bone, ct_brain")
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


def _add_image_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=Path,
                   help="TIFF (2D-4D), PNG/JPEG, folder of frames, zarr array, .npy or "
                        "NIfTI (.nii/.nii.gz)")


def _add_prompt_options(p: argparse.ArgumentParser, plane_help: str) -> None:
    p.add_argument("--points", help="'x,y;x,y' point prompts (one object), pixel coordinates")
    p.add_argument("--point-labels", help="'1,0': 1 positive, 0 negative (default all 1)")
    p.add_argument("--box", action="append", default=[],
                   help="'x0,y0,x1,y1' (repeatable: one object per box)")
    p.add_argument("--plane", type=int, action="append", default=None, help=plane_help)


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-segany`` argument parser."""
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="napari-segany", description="Segment Anything (SAM, SAM2) for scientific images.",
        epilog="Run 'napari-segany COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser("segment", help="segment objects on one plane from points/boxes",
                         description="Segment objects on one plane and write a zarr labels "
                                     "store (OUT/labels.zarr) and a PNG overlay "
                                     "(OUT/overlay.png). Running again adds objects.")
    src = seg.add_mutually_exclusive_group(required=True)
    src.add_argument("image", nargs="?", type=Path,
                     help="TIFF, PNG/JPEG, folder of frames, zarr, .npy or NIfTI image")
    src.add_argument("--sample", choices=["nuclei", "volume"],
                     help="use a bundled sample instead of a file")
    _add_prompt_options(seg, "index along each leading axis (repeat for 4D), default 0 / "
                             "the sample's")
    seg.add_argument("--out", type=Path, required=True, help="output folder")
    seg.add_argument("--overwrite", action="store_true", help="replace an existing labels store")
    _add_intensity_options(seg)
    _add_model_options(seg)

    prop = sub.add_parser(
        "propagate", help="segment objects through a volume or stack",
        description="Segment objects on their prompted plane(s) and propagate them through "
                    "the stack, writing every plane into the labels store OUT (zarr) as it "
                    "is done (Ctrl-C keeps the planes written).")
    _add_image_argument(prop)
    prop.add_argument("--prompts", type=Path, default=None,
                      help="PROMPTS.json: prompts on one or more planes for one or more objects "
                           "(PromptSet.to_dict() format, see docs/cli.md)")
    _add_prompt_options(prop, "the prompted plane: index along each leading axis (repeat "
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
    _add_intensity_options(prop)
    _add_model_options(prop)

    from ._cli_auto import add_auto_parsers  # 'auto' and 'boxes' (they set their own _run)

    add_auto_parsers(sub)

    emb = sub.add_parser(
        "embed", help="precompute the embeddings of every plane into a cache",
        description="Embed every plane into the cache folder DIR. Resumable: planes already "
                    "cached are skipped, so a second run computes nothing. Use the same "
                    "model and intensity options with 'propagate --cache DIR'.")
    _add_image_argument(emb)
    emb.add_argument("--cache", type=Path, required=True, help="embedding cache folder")
    emb.add_argument("--batch-size", type=int, default=1,
                     help="planes per forward pass (larger is faster on a GPU)")
    emb.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_intensity_options(emb)
    _add_model_options(emb)

    exp = sub.add_parser(
        "export", help="export a labels store to TIFF, zarr, NIfTI, RLE CSV or COCO JSON",
        description="Export a napari-segany labels store plane by plane. Formats: tif "
                    "(ImageJ hyperstack), zarr (copy), nii (NIfTI, .nii or .nii.gz), rle "
                    "(CSV of run-length strings), coco (COCO JSON with RLE masks).")
    exp.add_argument("labels", type=Path,
                     help="labels store (e.g. OUT.zarr, or the folder 'segment' wrote)")
    exp.add_argument("--format", default=None,
                     help="tif | zarr | nii | rle | coco (default: from --out's ending)")
    exp.add_argument("--out", type=Path, required=True, help="output file (folder for zarr)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exp.add_argument("--axes", default=None, help="tif: axis letters in TZCYX order, e.g. TYX")
    exp.add_argument("--spacing", default=None,
                     help="tif, nii: voxel size per labels axis, e.g. '2,0.5,0.5' for (z, y, x) "
                          "(default: the source image's, if recorded)")
    exp.add_argument("--unit", default=None, help="tif: unit of --spacing, e.g. um")
    exp.add_argument("--no-imagej", action="store_true",
                     help="tif: plain uint32 TIFF instead of an ImageJ hyperstack")
    exp.add_argument("--reference", type=Path, default=None,
                     help="nii: NIfTI image whose header and affine the labels take")
    exp.add_argument("--class-name", action="append", default=[], metavar="ID=NAME",
                     help="coco: class of an object, e.g. 3=nucleus (repeatable), or NAME "
                          "for all objects")

    sub.add_parser("models", help="list the models in the registry",
                   description="List the registered models: name, family, architecture.")
    return parser


# ------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-segany`` command; returns the exit status."""
    from . import _cli_commands as commands
    from .engine.weights import CheckpointError, DownloadError

    args = build_parser().parse_args(_join_negative_values(
        sys.argv[1:] if argv is None else list(argv)))
    run = getattr(args, "_run", None) or {
        "segment": commands.cmd_segment, "propagate": commands.cmd_propagate,
        "embed": commands.cmd_embed, "export": commands.cmd_export,
        "models": commands.cmd_models}[args.command]
    try:
        return run(args)
    except DownloadError as exc:
        _error(f"{exc} (for a compute-only smoke run without weights add --random-weights)")
        return 2
    except (UsageError, ValueError, FileNotFoundError, CheckpointError) as exc:
        _error(f"error: {exc}")
        return 2
    except OSError as exc:  # unreadable input, full disk, no permission: the user can fix it
        _error(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _error("interrupted; every plane written so far is complete and kept")
        return 130


_NUMERIC_OPTIONS = {"--window", "--box", "--points", "--percentiles", "--spacing",
                    "--min-score", "--channel-axis", "--axis"}


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--window -160,240`` -> ``--window=-160,240`` (argparse takes '-1...' for an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if token in _NUMERIC_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and (
                nxt[1].isdigit() or nxt[1] == "." or nxt[1:4].lower() == "inf"):
            out.append(f"{token}={nxt}")
            i += 2
        else:
            out.append(token)
            i += 1
    return out


def _error(message: str) -> None:
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"napari-segany: {text}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
