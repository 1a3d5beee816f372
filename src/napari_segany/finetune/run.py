"""``finetune``: the one entry point the API, the command line and the widget call."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine.registry import load_model
from ..engine.sam import SamBackend
from ..engine.sam2 import Sam2Backend
from ..storage.labels import is_labels_store
from .data import split_planes, training_planes
from .train import FinetuneError, FinetuneResult, FinetuneSettings, train_model

__all__ = ["finetune"]


def _check_out(out: Path, *, resume: bool, overwrite: bool) -> None:
    for p in (out, *out.parents):
        if is_labels_store(p):
            raise FinetuneError(f"{out} is inside the labels store {p}: training never writes "
                                "into labels stores; give another output folder")
    if out.exists() and not out.is_dir():
        raise FinetuneError(f"{out} is a file; give a folder for the training output")
    done = out / "model.pt"
    if done.exists() and not (resume or overwrite):
        raise FinetuneError(f"{done} exists already; give another output folder, or "
                            "overwrite=True (--overwrite) to replace it")


def finetune(
    data: Any,
    model: Any = "sam2.1_hiera_tiny",
    *,
    out: str | os.PathLike,
    mode: str | None = None,
    epochs: int | None = None,
    settings: FinetuneSettings | None = None,
    val: Any = None,
    checkpoint: str | os.PathLike | None = None,
    arch: str | None = None,
    device: Any = None,
    precision: str | None = None,
    random_weights: bool = False,
    weights_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[..., Any] | None = None,
    cancel: Any = None,
) -> FinetuneResult:
    """Fine-tune a SAM or SAM2 model on annotated images.

    Parameters
    ----------
    data : labels store, (image, store), (image, labels), Sample, folder, or a list of them
        The annotations (:func:`~napari_segany.finetune.training_planes`): labels stores of
        the annotator (their committed objects, on the image their provenance names or the
        one given with them), image/label files or arrays, folders, Cell Tracking Challenge
        and DAVIS layouts. Planes of volumes and stacks are trained on one by one.
    model : str, path or Backend
        The base model: a registry name (``"sam_vit_b"``, ``"sam2.1_hiera_tiny"``), a
        checkpoint file, or a loaded backend (its model is copied, not changed).
    out : path
        Folder for ``model.pt`` (the fine-tuned checkpoint), ``model.json`` (metadata:
        base model, data fingerprint, settings, validation before and after),
        ``training_log.csv``, ``training.png`` and ``state.pt`` (to resume).
    mode, epochs :
        Shortcuts for the same fields of ``settings``.
    settings : FinetuneSettings, optional
    val : same kinds as ``data``, optional
        Validation data; default: a seeded split of ``data`` (``settings.val_fraction``,
        ``settings.split_by``).
    checkpoint, arch, device, precision, random_weights, weights_dir :
        As for :func:`napari_segany.load_model` (``weights_dir`` is its ``cache_dir``).
    cache_dir : path, optional
        ``decoder`` mode: embedding caches of the training planes, reused by later runs.
    resume : bool
        Continue from ``out/state.pt`` (same data, base and settings) where it stopped.
    overwrite : bool
        Replace an existing ``out/model.pt``.
    progress : callable, optional
        ``progress(stage, done, total, **info)``: ``"embed"`` per plane, ``"train"`` per step
        (``epoch=``, ``loss=``) and per epoch (``row=`` the log row).
    cancel : threading.Event or callable, optional
        Checked before every step; the last finished epoch stays in ``state.pt`` and no
        checkpoint is written.

    Returns
    -------
    FinetuneResult
        ``checkpoint``, ``backend`` (the trained model), ``log``, ``metadata``.

    Examples
    --------
    >>> res = finetune("cells.zarr", "sam_vit_b", out="ft", epochs=5)   # doctest: +SKIP
    >>> seg = Segmenter(image, model="sam_vit_b", checkpoint=res.checkpoint)  # doctest: +SKIP
    """
    s = settings or FinetuneSettings()
    changes = {k: v for k, v in (("mode", mode), ("epochs", epochs)) if v is not None}
    s = replace(s, **changes) if changes else s
    out = Path(out)
    _check_out(out, resume=resume, overwrite=overwrite)
    planes = training_planes(data, min_area=s.min_area)
    if val is not None:
        train, valid = planes, training_planes(val, min_area=s.min_area)
    else:
        train, valid = split_planes(planes, val_fraction=s.val_fraction, by=s.split_by,
                                    seed=s.seed)
    backend, base = _base(model, checkpoint=checkpoint, arch=arch, device=device,
                          precision=precision, random_weights=random_weights,
                          weights_dir=weights_dir)
    out.mkdir(parents=True, exist_ok=True)
    return train_model(backend, train, valid, settings=s, out=out, base=base,
                       cache_dir=cache_dir, resume=resume, progress=progress, cancel=cancel)


def _base(model: Any, **kw: Any) -> tuple[Any, dict[str, Any]]:
    if hasattr(model, "embed") and hasattr(model, "model"):
        backend = copy.copy(model)
        backend.model = copy.deepcopy(model.model)
        _rebind_predictor(backend)
        name = str(getattr(model, "name", "model"))
        return backend, {"name": name, "weights": getattr(model, "weights_id", None),
                         "checkpoint": None}
    ckpt = kw.pop("checkpoint")
    weights_dir = kw.pop("weights_dir")
    backend = load_model(model, checkpoint=ckpt, cache_dir=weights_dir, **kw)
    return backend, {"name": str(model) if ckpt is None or model else str(ckpt),
                     "weights": backend.weights_id,
                     "checkpoint": None if ckpt is None else str(Path(ckpt).name)}


def _rebind_predictor(backend: Any) -> None:
    """A copied backend must predict with its own (copied) model."""
    cls = SamBackend if backend.family == "sam" else Sam2Backend
    fresh = cls(backend.model, name=backend.name, arch=backend.arch,
                weights_id=backend.weights_id, device=backend.device,
                autocast_dtype=backend.autocast_dtype)
    backend.__dict__.update(fresh.__dict__)
