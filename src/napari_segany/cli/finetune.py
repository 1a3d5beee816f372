"""``napari-segany finetune``: fine-tune SAM or SAM2 on annotated images.

Examples::

    napari-segany finetune cells.zarr --model sam_vit_b --out ft-cells
    napari-segany finetune img.tif --labels cells.zarr --model sam2.1_hiera_tiny --out ft
    napari-segany finetune images/ --labels masks/ --mode lora --epochs 20 --out ft-lora
    napari-segany finetune ctc/N2DH-GOWT1 --model sam_vit_b --out ft-gowt1 --resume

DATA is a labels store written by the annotator (its image is the one its provenance
records, or IMAGE with ``--labels STORE``), an image with ``--labels``, two folders paired
by file name, or a Cell Tracking Challenge / DAVIS folder. OUT receives ``model.pt`` (load
it with ``--checkpoint OUT/model.pt`` and the base ``--model``), ``model.json``,
``training_log.csv``, ``training.png`` and ``state.pt`` (``--resume`` continues from it).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..finetune import MODES, SPLIT_BY, FinetuneSettings, finetune
from ._common import Progress, add_model_options

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune SAM / SAM2 on annotated images",
        description="Train a SAM or SAM2 model on labels (prompts simulated from the objects "
                    "as micro-sam's trainer does: a point or a box, then corrections from the "
                    "errors). Writes a checkpoint that --checkpoint loads, its metadata, a "
                    "training log and a plot into OUT.")
    p.add_argument("data", type=Path,
                   help="labels store, image (with --labels), folder of images (with --labels "
                        "folder), Cell Tracking Challenge or DAVIS folder")
    p.add_argument("--labels", type=Path, default=None,
                   help="labels of DATA: a labels store, a labels file or a folder of them")
    p.add_argument("--val", type=Path, default=None,
                   help="validation data (an image; its labels with --val-labels); default: "
                        "a seeded split of DATA")
    p.add_argument("--val-labels", type=Path, default=None, help="labels of --val")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    t = p.add_argument_group("training")
    t.add_argument("--mode", choices=MODES, default="decoder",
                   help="decoder (default: prompt encoder + mask decoder on cached "
                        "embeddings), lora (LoRA adapters on the image encoder + decoder), "
                        "full")
    d = FinetuneSettings()
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate ({d.lr})")
    t.add_argument("--objects-per-step", type=int, default=d.objects_per_step,
                   help=f"objects per step ({d.objects_per_step}; lower it when memory runs "
                        "out)")
    t.add_argument("--decoder-chunk", type=int, default=None,
                   help="objects decoded together within a step (default: 4 on a CPU, the "
                        "whole step on a GPU; lower it when GPU memory runs out)")
    t.add_argument("--accumulate", type=int, default=d.accumulate,
                   help="steps per optimiser step (gradient accumulation)")
    t.add_argument("--corrections", type=int, default=d.n_corrections,
                   help=f"correction rounds per step ({d.n_corrections})")
    t.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"part held out for validation ({d.val_fraction}; 0: none)")
    t.add_argument("--split-by", choices=SPLIT_BY, default=d.split_by,
                   help="hold out whole images (default) or planes")
    t.add_argument("--patience", type=int, default=d.patience,
                   help=f"stop after this many epochs without a better validation IoU "
                        f"({d.patience}; 0: never)")
    t.add_argument("--lora-rank", type=int, default=d.lora_rank)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--embeddings", type=Path, default=None,
                   help="embedding cache folder for the training planes (decoder mode)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    t.add_argument("--overwrite", action="store_true", help="replace OUT/model.pt")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    add_model_options(p)
    p.set_defaults(_run=run)


def _settings(args: argparse.Namespace) -> FinetuneSettings:
    if not math.isfinite(args.lr) or args.lr <= 0:
        raise UsageError(f"--lr must be a number > 0, got {args.lr}")
    for name in ("epochs", "objects_per_step", "accumulate", "lora_rank"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.decoder_chunk is not None and args.decoder_chunk < 1:
        raise UsageError(f"--decoder-chunk must be >= 1, got {args.decoder_chunk}")
    if args.corrections < 0 or args.patience < 0:
        raise UsageError("--corrections and --patience must be >= 0")
    if not 0 <= args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    return FinetuneSettings(mode=args.mode, epochs=args.epochs, lr=args.lr,
                            objects_per_step=args.objects_per_step, accumulate=args.accumulate,
                            n_corrections=args.corrections, val_fraction=args.val_fraction,
                            split_by=args.split_by, patience=args.patience or None,
                            lora_rank=args.lora_rank, seed=args.seed,
                            decoder_chunk=args.decoder_chunk)


def _data(path: Path, labels: Path | None) -> Any:
    return str(path) if labels is None else (str(path), str(labels))


class _Report:
    """Progress of embedding and training on stderr, one line per epoch on stdout."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Progress | None = None
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int, **info: Any) -> None:
        if "row" in info:
            self.close()
            r = info["row"]
            what = "before training" if r["epoch"] == 0 else (
                f"epoch {r['epoch']}: loss {r['train_loss']:.4f}")
            print(f"{what}: validation IoU point {r['val_iou_point']:.4f}, box "
                  f"{r['val_iou_box']:.4f}", flush=True)
            return
        if self.quiet:
            return
        desc = "embed" if stage == "embed" else f"epoch {info.get('epoch', '')}"
        if self.bar is None or self.stage != desc:
            self.close()
            self.bar, self.stage = Progress(desc, unit="step"), desc
        self.bar(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.val_labels is not None and args.val is None:
        raise UsageError("--val-labels needs --val")
    val = None if args.val is None else _data(args.val, args.val_labels)
    report = _Report(args.quiet)
    try:
        res = finetune(_data(args.data, args.labels), args.model or "sam2.1_hiera_tiny",
                       out=args.out, settings=settings, val=val, checkpoint=args.checkpoint,
                       arch=args.arch, device=args.device, precision=args.precision,
                       random_weights=args.random_weights, weights_dir=args.cache_dir,
                       cache_dir=args.embeddings, resume=args.resume, overwrite=args.overwrite,
                       progress=report)
    finally:
        report.close()
    if res.cancelled:
        print("cancelled: the last finished epoch is in state.pt; --resume continues",
              file=sys.stderr)
        return 130
    base = res.metadata["base"]["name"]
    print(f"wrote {res.checkpoint} (best epoch {res.best.get('epoch')}), "
          f"{res.files['log']}; use it with --model {base} --checkpoint {res.checkpoint}")
    if args.random_weights:
        print("random weights: a falling loss proves the training machinery, not that "
              "fine-tuning helps a real model")
    return 0
