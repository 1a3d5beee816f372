"""The training loop: prompts from ground truth, Dice + BCE + IoU loss, AdamW, checkpoints.

One **step** is a batch of up to ``objects_per_step`` objects of one training plane: the
first prompt (a point with three candidates, or a box), then ``n_corrections`` correction
rounds (:mod:`.prompts`); the loss of every round is averaged. For a multimask prediction
the candidate with the lowest loss is trained and continued with (as micro-sam does); the
IoU head learns the true IoU of every candidate. An **epoch** visits every training object
once, in an order drawn from ``(seed, epoch)``. The optimiser (AdamW) steps every
``accumulate`` steps, its learning rate warming up linearly over the first ``warmup``
fraction of all optimiser steps and then following a cosine to zero.

In ``decoder`` mode the objects of a step go through the decoder in chunks of
``decoder_chunk``: the plane's features once per step, then forward and backward per
chunk, the gradients summed with each chunk's share of the step's loss (the same training
signal as one batch). On a CPU the default chunk is 4 objects: the decoder's per-object
tensors of a bigger batch exceed the C allocator's 32 MiB mmap threshold, so every step
maps fresh memory and page-faults it in (measured with SAM ViT-B, 16 objects: 2.3 million
page faults and 7.6 s per step as one batch, none and 4.0 s in chunks of 4). Elsewhere a
step is one batch.

Losses are computed in a frame of ``loss_size`` pixels a side (the model's input canvas,
downscaled when larger): the decoder's low-resolution logits are upsampled to it as the
predictors upsample them, and the labels are resized to it (nearest neighbour).

In ``decoder`` mode every plane is embedded once, before training, by the unchanged image
encoder (through an embedding cache with ``cache_dir``); the encoder never runs in the
loop. This gives up image augmentation: a flipped embedding is not the embedding of a
flipped image (position embeddings and attention windows are not flip-equivariant), and
no embeddings of augmented planes are cached, so no augmentation is done in any mode.

After every epoch the validation planes are scored (mean IoU of every object from its most
interior point, best of three candidates by predicted IoU, and from its box), the
training state is written to ``state.pt`` (``resume=True`` continues from it exactly) and
a row is added to ``training_log.csv``. Training stops early after ``patience`` epochs
without a better validation IoU; the weights of the best epoch are saved.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import is_cancelled
from ..engine.device import autocast
from ..engine.weights import file_sha256
from ..evaluation.simulate import interior_point, object_box
from ..storage.atomic import replacing
from ..storage.cache import EmbeddingCache
from .checkpoint import save_checkpoint
from .data import TrainingPlane, planes_fingerprint
from .loss import mask_iou, mask_losses
from .model import MODES, TrainableModel, merge_lora
from .prompts import add_corrections, first_prompts, start_of_step

__all__ = ["FinetuneSettings", "FinetuneResult", "FinetuneError", "train_model", "LOG_COLUMNS"]

LOG_COLUMNS = ("epoch", "steps", "train_loss", "val_iou_point", "val_iou_box", "val_iou",
               "lr", "seconds")


class FinetuneError(ValueError):
    """Training cannot run as asked (the message says what to change)."""


@dataclass(frozen=True)
class FinetuneSettings:
    """How a model is fine-tuned.

    Attributes
    ----------
    mode : {"decoder", "lora", "full"}
        What trains (:mod:`.model`).
    epochs : int
        At most this many epochs (each visits every training object once).
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
    warmup : float
        Fraction of the optimiser steps over which the learning rate rises linearly.
    objects_per_step : int
        Objects of one plane decoded together in a step (lower it when memory runs out).
    accumulate : int
        Steps whose gradients are summed before the optimiser steps.
    n_corrections : int
        Correction rounds after the first prompt (micro-sam: 7 after the first).
    logits_prob : float
        Probability that a correction round gets the last logits as a mask input.
    val_fraction : float
        Part of the images (or planes) held out for validation; 0: none.
    split_by : {"image", "plane"}
    patience : int or None
        Stop after this many epochs without a better validation IoU (None: never).
    seed : int
    lora_rank : int
    min_area : int
        Objects smaller than this (pixels) are not trained on.
    loss_size : int
        Side of the frame the loss is computed in (at most the model's input size).
    max_val_objects : int
        Objects scored per validation plane (the lowest ids).
    encoder_in_loop : bool
        ``decoder`` mode only: run the frozen encoder forward in every step instead of
        using cached embeddings (what trainers without a cache do; for benchmarks).
    decoder_chunk : int or None
        Objects decoded together within a step (forward and backward); None: 4 on a CPU,
        the whole step on a GPU. It changes speed and memory, not what is learnt.
    """

    mode: str = "decoder"
    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: float = 0.05
    objects_per_step: int = 16
    accumulate: int = 1
    n_corrections: int = 3
    logits_prob: float = 0.5
    val_fraction: float = 0.2
    split_by: str = "image"
    patience: int | None = 5
    seed: int = 0
    lora_rank: int = 4
    min_area: int = 10
    loss_size: int = 256
    max_val_objects: int = 64
    encoder_in_loop: bool = False
    decoder_chunk: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("epochs", "objects_per_step", "accumulate", "lora_rank", "loss_size",
                     "max_val_objects"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if int(self.n_corrections) < 0:
            raise ValueError(f"n_corrections must be >= 0, got {self.n_corrections}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.logits_prob <= 1 or not 0 <= self.warmup < 1:
            raise ValueError("logits_prob must be in [0, 1] and warmup in [0, 1)")
        if self.decoder_chunk is not None and int(self.decoder_chunk) < 1:
            raise ValueError(f"decoder_chunk must be >= 1 or None, got {self.decoder_chunk}")
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")
        if self.encoder_in_loop and self.mode != "decoder":
            raise ValueError("encoder_in_loop is for mode='decoder' (lora and full always "
                             "run the encoder in the loop)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FinetuneResult:
    """What a training run produced.

    Attributes
    ----------
    checkpoint : Path or None
        The model file (None when cancelled before the end).
    backend : Backend or None
        The trained model, ready to segment (the same weights as the checkpoint).
    log : list of dict
        One row per epoch (:data:`LOG_COLUMNS`); epoch 0 is the model before training.
    metadata : dict
        What the sidecar JSON holds.
    folder : Path
    cancelled : bool
    """

    checkpoint: Path | None
    backend: Any
    log: list[dict[str, Any]]
    metadata: dict[str, Any]
    folder: Path
    cancelled: bool = False
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def before(self) -> dict[str, Any]:
        return self.log[0] if self.log else {}

    @property
    def best(self) -> dict[str, Any]:
        return self.metadata.get("validation", {}).get("best", {})


# ----------------------------------------------------------------------------- plane data
class _Plane:
    """A plane prepared for training: features or model input, targets in the loss frame."""

    def __init__(self, plane: TrainingPlane, tm: TrainableModel, L: int, *, feats=None,
                 x=None, input_size=None) -> None:
        self.name = plane.name
        self.feats, self.x = feats, x
        S = tm.image_size
        h_in, w_in = input_size
        self.hl, self.wl = max(1, round(h_in * L / S)), max(1, round(w_in * L / S))
        lab = plane.labels
        rows = np.minimum((np.arange(self.hl) + 0.5) * lab.shape[0] / self.hl, lab.shape[0] - 1)
        cols = np.minimum((np.arange(self.wl) + 0.5) * lab.shape[1] / self.wl, lab.shape[1] - 1)
        small = lab[rows.astype(np.int64)][:, cols.astype(np.int64)]
        ids = np.unique(small)
        ids = ids[ids > 0]
        self.masks = np.stack([small == i for i in ids]) if ids.size else np.zeros(
            (0, self.hl, self.wl), bool)
        self.scale = S / L

    def __len__(self) -> int:
        return len(self.masks)


def _embed_planes(tm: TrainableModel, planes: list[TrainingPlane], L: int, cache_dir: Any,
                  progress: Callable | None, encode: bool) -> list[_Plane]:
    import torch

    out = []
    for i, p in enumerate(planes):
        x, size = tm.preprocess(p.rgb)
        if encode:
            out.append(_Plane(p, tm, L, x=x, input_size=size))
        else:
            emb = _embedding(tm, p, cache_dir)
            feats = {k: v.detach().clone(memory_format=torch.contiguous_format).float()
                     for k, v in emb.tensors.items()}  # (SAM2 caches channels-last views)
            out.append(_Plane(p, tm, L, feats=feats, input_size=size))
        if progress is not None:
            progress("embed", i + 1, len(planes))
    del torch
    return out


class _Identity:
    """The normaliser of planes that are already the model's uint8 RGB input."""

    def __call__(self, plane: Any) -> np.ndarray:
        return np.asarray(plane)

    def to_dict(self) -> dict:
        return {"kind": "identity (training plane)"}


def _embedding(tm: TrainableModel, p: TrainingPlane, cache_dir: Any) -> Any:
    if cache_dir is None:
        return tm.backend.embed(p.rgb)
    key = planes_fingerprint([p])[:20]
    cache = EmbeddingCache(Path(cache_dir) / f"train-{key}.zarr", backend=tm.backend,
                           normalizer=_Identity(), data=p.rgb, rgb=True)
    return cache.get(())


# ----------------------------------------------------------------------------- one step
def _tensor(a: Any, tm: TrainableModel, dtype: Any = None) -> Any:
    import torch

    if a is None:
        return None
    return torch.as_tensor(a, device=tm.device, dtype=dtype or torch.float32)


def _to_model(coords: np.ndarray | None, scale: float) -> np.ndarray | None:
    return None if coords is None else (coords + 0.5) * scale - 0.5


def _features(tm: TrainableModel, pd: _Plane, grad: bool) -> dict[str, Any]:
    import torch

    if pd.feats is not None:
        return pd.feats
    if grad:
        return tm.encode(pd.x)
    with torch.no_grad():
        return {k: v.float() for k, v in tm.encode(pd.x).items()}


def _upsample(logits: Any, L: int, pd: _Plane) -> Any:
    import torch.nn.functional as F

    logits = logits.float()
    if tuple(logits.shape[-2:]) != (L, L):  # the loss frame is the decoder's own at L = S/4
        logits = F.interpolate(logits, (L, L), mode="bilinear", align_corners=False)
    return logits[..., : pd.hl, : pd.wl]


def _step_loss(tm: TrainableModel, pd: _Plane, idx: np.ndarray, step: int,
               rng: np.random.Generator, s: FinetuneSettings, L: int, dtype: Any,
               feats: dict[str, Any] | None = None) -> Any:
    """The mean loss over the first prompt and the correction rounds of some objects
    (``feats``: the plane's features when the caller has them)."""
    import torch

    masks = pd.masks[idx]
    target = _tensor(masks[:, None].astype(np.float32), tm)
    start = start_of_step(step)
    coords, labels, boxes = first_prompts(masks, start, rng)
    multimask, mask_input, total = start == "point", None, 0.0
    rows = torch.arange(len(idx), device=tm.device)
    if feats is None:
        with autocast(tm.device, dtype):
            feats = _features(tm, pd, grad=tm.mode != "decoder")
    for it in range(1 + int(s.n_corrections)):
        with autocast(tm.device, dtype):
            logits, iou_pred = tm.decode(
                feats, _tensor(_to_model(coords, pd.scale), tm),
                _tensor(labels, tm, torch.int64), _tensor(_to_model(boxes, pd.scale), tm),
                mask_input, multimask)
        up = _upsample(logits, L, pd)
        per_mask, true_iou = mask_losses(up, target)
        best = per_mask.detach().argmin(1)
        mask_loss = per_mask.min(1).values.mean()
        iou_loss = torch.mean((iou_pred.float() - true_iou) ** 2)
        total = total + mask_loss + iou_loss
        if it == int(s.n_corrections):
            break
        pred = (up[rows, best] > 0).detach().cpu().numpy()
        coords, labels = add_corrections(masks, pred, coords, labels, rng)
        mask_input = logits[rows, best][:, None].detach().float() if (
            rng.random() < s.logits_prob) else None
        multimask = False
    return total / (1 + int(s.n_corrections))


CPU_CHUNK = 4


def chunk_size(s: FinetuneSettings, device: Any) -> int:
    """Objects decoded together within a step (:attr:`FinetuneSettings.decoder_chunk`)."""
    if s.decoder_chunk is not None:
        return int(s.decoder_chunk)
    return CPU_CHUNK if getattr(device, "type", str(device)) == "cpu" else int(
        s.objects_per_step)


def train_step(tm: TrainableModel, pd: _Plane, idx: np.ndarray, step: int,
               rng: np.random.Generator, s: FinetuneSettings, L: int, dtype: Any,
               scale: float = 1.0) -> float:
    """Forward and backward of one step (its objects in chunks); returns the step's loss.

    Each chunk's loss is weighted by its share of the step's objects, so the gradients are
    those of the step's mean loss (times ``scale``, e.g. ``1 / accumulate``).
    """
    with autocast(tm.device, dtype):  # the plane's features once per step, not per chunk
        feats = _features(tm, pd, grad=tm.mode != "decoder")
    # with an encoder that trains, every chunk would hold (or redo) the encoder's graph:
    # lora and full steps are one batch
    k = chunk_size(s, tm.device) if tm.mode == "decoder" else len(idx)
    total = 0.0
    for lo in range(0, len(idx), k):
        part = idx[lo:lo + k]
        loss = _step_loss(tm, pd, part, step, rng, s, L, dtype, feats)
        share = len(part) / len(idx)
        (loss * (share * scale)).backward()
        total += float(loss.detach()) * share
    return total


def _validate(tm: TrainableModel, planes: list[_Plane], s: FinetuneSettings, L: int,
              dtype: Any) -> dict[str, float]:
    """Mean IoU of every validation object from its interior point and from its box."""
    import torch

    if not planes:
        return {"val_iou_point": float("nan"), "val_iou_box": float("nan"),
                "val_iou": float("nan")}
    point_ious, box_ious = [], []
    with torch.no_grad():
        for pd in planes:
            n = min(len(pd), int(s.max_val_objects))
            if not n:
                continue
            feats = _features(tm, pd, grad=False)
            k = chunk_size(s, tm.device)
            for lo in range(0, n, k):
                masks = pd.masks[lo:min(n, lo + k)]
                target = _tensor(masks[:, None].astype(np.float32), tm)
                pts = np.stack([interior_point(m) for m in masks])[:, None].astype(np.float32)
                lab = np.ones((len(masks), 1), np.int64)
                boxes = np.stack([object_box(m) for m in masks]).astype(np.float32)
                with autocast(tm.device, dtype):
                    lp, ip = tm.decode(feats, _tensor(_to_model(pts, pd.scale), tm),
                                       _tensor(lab, tm, torch.int64), None, None, True)
                    lb, _ = tm.decode(feats, None, None, _tensor(_to_model(boxes, pd.scale), tm),
                                      None, False)
                ious = mask_iou(_upsample(lp, L, pd), target)
                pick = ip.float().argmax(1)
                point_ious += ious[torch.arange(len(masks)), pick].cpu().tolist()
                box_ious += mask_iou(_upsample(lb, L, pd), target)[:, 0].cpu().tolist()
    p, b = float(np.mean(point_ious)), float(np.mean(box_ious))
    return {"val_iou_point": p, "val_iou_box": b, "val_iou": (p + b) / 2}


def _units(planes: list[_Plane], s: FinetuneSettings, rng: np.random.Generator
           ) -> list[tuple[int, np.ndarray]]:
    """An epoch: every object once, in batches of one plane, in a random order."""
    units = []
    k = int(s.objects_per_step)
    for i, pd in enumerate(planes):
        order = rng.permutation(len(pd))
        units += [(i, order[lo:lo + k]) for lo in range(0, len(order), k)]
    return [units[j] for j in rng.permutation(len(units))]


def _n_units(planes: list[_Plane], s: FinetuneSettings) -> int:
    return sum(math.ceil(len(p) / int(s.objects_per_step)) for p in planes)


# ----------------------------------------------------------------------------- the run
def _lr_lambda(total: int, warmup: float) -> Callable[[int], float]:
    n_warm = int(round(total * warmup))

    def f(step: int) -> float:
        if step < n_warm:
            return (step + 1) / (n_warm + 1)
        t = (step - n_warm) / max(1, total - n_warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f


def _train_dtype(backend: Any) -> Any:
    import torch

    dt = getattr(backend, "autocast_dtype", None)
    return dt if dt == torch.bfloat16 else None  # fp16 would need loss scaling: train fp32


def _write_log(path: Path, log: list[dict[str, Any]]) -> None:
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        w.writeheader()
        for row in log:
            w.writerow({k: row.get(k) for k in LOG_COLUMNS})


def _plot(path: Path, log: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in log]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot([r["epoch"] for r in log if r["epoch"] > 0],
           [r["train_loss"] for r in log if r["epoch"] > 0], "o-")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    for key, lab in (("val_iou_point", "point"), ("val_iou_box", "box")):
        b.plot(ep, [r[key] for r in log], "o-", label=lab)
    b.set_xlabel("epoch (0: before training)")
    b.set_ylabel("validation IoU")
    b.legend()
    from matplotlib.ticker import MaxNLocator

    for ax in (a, b):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    import torch

    with replacing(path) as tmp:
        torch.save(state, tmp)


def _cpu_state(trainable: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu().clone() for k, v in trainable.items()}


def train_model(
    backend: Any,
    train: list[TrainingPlane],
    val: list[TrainingPlane],
    *,
    settings: FinetuneSettings,
    out: str | os.PathLike,
    base: dict[str, Any],
    cache_dir: Any = None,
    resume: bool = False,
    progress: Callable[..., Any] | None = None,
    cancel: Any = None,
) -> FinetuneResult:
    """Train ``backend``'s model in place and write the checkpoint into ``out``.

    ``base`` describes the base model (``name``, ``checkpoint``, ``weights``) for the
    metadata; :func:`napari_segany.finetune.finetune` is the documented entry point.
    ``progress(stage, done, total, **info)`` is called with ``"embed"`` per plane and with
    ``"train"`` per step (``loss=``) and per epoch (``row=``).
    """
    import torch

    s = settings
    out = Path(out)
    tm = TrainableModel(backend, s.mode, lora_rank=s.lora_rank)
    L = min(int(s.loss_size), tm.image_size)
    dtype = _train_dtype(backend)
    encode = s.mode != "decoder" or s.encoder_in_loop
    fp = planes_fingerprint(train + val)
    tr = _embed_planes(tm, train, L, None if encode else cache_dir, progress, encode)
    va = _embed_planes(tm, val, L, None if encode else cache_dir, progress, encode)
    trainable = tm.trainable()
    params = list(trainable.values())
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    per_epoch = math.ceil(_n_units(tr, s) / int(s.accumulate))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(per_epoch * int(s.epochs), s.warmup))
    state_path = out / "state.pt"
    log: list[dict[str, Any]] = []
    start_epoch, best, best_state, bad = 1, -math.inf, None, 0
    if resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        if st.get("settings") != s.to_dict() or st.get("data") != fp or (
                st.get("base") != base):
            raise FinetuneError(f"{state_path} is the state of another training run (other "
                                "data, base model or settings); give another output folder or "
                                "train without resume")
        with torch.no_grad():
            for k, v in st["trainable"].items():
                trainable[k].copy_(v)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        log, best, bad = list(st["log"]), float(st["best"]), int(st["bad"])
        best_state, start_epoch = st["best_state"], int(st["epoch"]) + 1
    if not log:
        t0 = time.perf_counter()
        log.append({"epoch": 0, "steps": 0, "train_loss": float("nan"),
                    **_validate(tm, va, s, L, dtype), "lr": 0.0,
                    "seconds": time.perf_counter() - t0})
        best, best_state = -math.inf, None  # the best trained epoch (never the base model)
        if progress is not None:
            progress("train", 0, int(s.epochs), row=log[0])
    cancelled, stopped = False, bool(s.patience is not None and bad >= int(s.patience))
    step = sum(r["steps"] for r in log)
    for epoch in range(start_epoch, int(s.epochs) + 1):
        if stopped:
            break
        t0 = time.perf_counter()
        rng = np.random.default_rng([int(s.seed), epoch])
        units = _units(tr, s, rng)
        losses = []
        opt.zero_grad(set_to_none=True)
        for j, (i, idx) in enumerate(units):
            if is_cancelled(cancel):
                cancelled = True
                break
            try:
                loss = train_step(tm, tr[i], idx, step, rng, s, L, dtype,
                                  scale=1 / int(s.accumulate))
            except torch.OutOfMemoryError as exc:
                raise FinetuneError(
                    f"out of {tm.device.type.upper()} memory with {chunk_size(s, tm.device)} "
                    f"objects decoded together: lower decoder_chunk (--decoder-chunk) or "
                    f"objects_per_step (--objects-per-step), and raise "
                    f"accumulate (--accumulate) to keep the batch; nothing was saved "
                    f"under the checkpoint name") from exc
            losses.append(loss)
            step += 1
            if (j + 1) % int(s.accumulate) == 0 or j == len(units) - 1:
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
            if progress is not None:
                progress("train", j + 1, len(units), epoch=epoch, loss=losses[-1])
        if cancelled:
            break
        row = {"epoch": epoch, "steps": len(units), "train_loss": float(np.mean(losses)),
               **_validate(tm, va, s, L, dtype), "lr": float(sched.get_last_lr()[0])}
        row["seconds"] = time.perf_counter() - t0
        log.append(row)
        if not va or row["val_iou"] > best:
            best, best_state, bad = (row["val_iou"] if va else best), _cpu_state(trainable), 0
        else:
            bad += 1
        _save_state(state_path, {"epoch": epoch, "trainable": _cpu_state(trainable),
                                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                 "log": log, "best": best, "bad": bad, "best_state": best_state,
                                 "settings": s.to_dict(), "data": fp, "base": base})
        _write_log(out / "training_log.csv", log)
        if progress is not None:
            progress("train", epoch, int(s.epochs), row=row)
        stopped = s.patience is not None and bad >= int(s.patience)
    files = {"state": state_path, "log": out / "training_log.csv"}
    if log:
        _write_log(files["log"], log)
    if cancelled:
        return FinetuneResult(None, None, log, {}, out, cancelled=True, files=files)
    with torch.no_grad():
        for k, v in best_state.items():
            trainable[k].copy_(v.to(trainable[k].device))
    if s.mode == "lora":
        merge_lora(backend.model)
    for p in backend.model.parameters():
        p.requires_grad_(False)
    best_row = max((r for r in log if r["epoch"] > 0), key=lambda r: r["val_iou"],
                   default=log[-1]) if va else log[-1]
    meta = {
        "napari_segany_finetune": 1,
        "base": base,
        "family": tm.family,
        "arch": getattr(backend, "arch", None),
        "mode": s.mode,
        "settings": s.to_dict(),
        "data": {"fingerprint": fp, "train": [p.name for p in train],
                 "val": [p.name for p in val],
                 "train_objects": int(sum(len(p) for p in tr)),
                 "val_objects": int(sum(len(p) for p in va))},
        "validation": {"before": _metrics(log[0]), "best": _metrics(best_row),
                       "epochs_run": len(log) - 1},
        "encoder_unchanged": s.mode == "decoder",
    }
    meta = json.loads(json.dumps(meta, default=str))
    path = save_checkpoint(backend.model, out / "model.pt", family=tm.family, metadata=meta)
    files.update(checkpoint=path, metadata=path.with_suffix(".json"))
    try:
        _plot(out / "training.png", log)
        files["plot"] = out / "training.png"
    except ImportError:  # matplotlib is optional
        pass
    trained = _rewrap(backend, path)
    return FinetuneResult(path, trained, log, meta, out, files=files)


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ("epoch", "val_iou_point", "val_iou_box", "val_iou",
                                    "train_loss")}


def _rewrap(backend: Any, path: Path) -> Any:
    """A backend over the trained model, identified by the checkpoint file as load_model does."""
    model = backend.model.eval()
    name = f"{path.parent.name}/{path.name}" if path.parent.name else path.name  # ft-x/model.pt
    return type(backend)(model, name=name, arch=backend.arch,
                         weights_id="sha256:" + file_sha256(path), device=backend.device,
                         autocast_dtype=backend.autocast_dtype)
