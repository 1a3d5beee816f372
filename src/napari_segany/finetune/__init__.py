"""Fine-tuning SAM and SAM2 on the user's own annotations.

:func:`finetune` takes annotations (labels stores of the annotator, image/label files or
folders, CTC and DAVIS layouts: :mod:`.data`), simulates prompts as micro-sam's trainer
does (:mod:`.prompts`), trains in one of three modes (:mod:`.model`: ``decoder`` on cached
embeddings, ``lora`` adapters through ``peft``, ``full``) with Dice + BCE + IoU losses
(:mod:`.loss`, :mod:`.train`), and writes a checkpoint in the official layout that
:func:`napari_segany.load_model` and segment-anything's / sam2's builders load
(:mod:`.checkpoint`).

Examples
--------
>>> from napari_segany.finetune import finetune                     # doctest: +SKIP
>>> res = finetune([("img.tif", "cells.zarr")], "sam_vit_b", out="ft")  # doctest: +SKIP
>>> res.log[0]["val_iou"], res.best["val_iou"]                       # doctest: +SKIP
"""

from .checkpoint import read_metadata, save_checkpoint
from .data import SPLIT_BY, TrainingPlane, planes_fingerprint, split_planes, training_planes
from .model import MODES, TrainableModel, merge_lora
from .run import finetune
from .train import LOG_COLUMNS, FinetuneError, FinetuneResult, FinetuneSettings

__all__ = [
    "finetune", "FinetuneSettings", "FinetuneResult", "FinetuneError", "MODES", "SPLIT_BY",
    "TrainingPlane", "training_planes", "split_planes", "planes_fingerprint",
    "TrainableModel", "merge_lora", "save_checkpoint", "read_metadata", "LOG_COLUMNS",
]
