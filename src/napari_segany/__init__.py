"""Segment Anything (SAM, SAM2) for scientific images: napari plugin, Python API and CLI.

Importing the package is light: torch, segment-anything, sam2 and napari are imported
only when a model is built or a viewer is used. Public names are resolved lazily.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ._version import __version__

__all__ = [
    "__version__",
    "Normalizer",
    "PromptSet",
    "ObjectPrompt",
    "points_to_prompts",
    "shapes_to_prompts",
    "load_model",
    "available_models",
    "register_model",
    "register_family",
    "ModelSpec",
    "Session",
    "Segmenter",
    "LabelsStore",
    "EmbeddingCache",
    "SliceSettings",
    "read_image",
    "load_sample",
    "export_labels",
    "AutoSettings",
    "auto_segment",
    "segment_boxes",
    "read_boxes",
    "evaluate",
    "finetune",
    "FinetuneSettings",
]

_LAZY = {
    "Session": "napari_segany.session",
    "Segmenter": "napari_segany.api",
    "LabelsStore": "napari_segany.storage",
    "EmbeddingCache": "napari_segany.storage",
    "SliceSettings": "napari_segany.propagate",
    "read_image": "napari_segany.io",
    "export_labels": "napari_segany.exports",
    "AutoSettings": "napari_segany.auto",
    "auto_segment": "napari_segany.auto",
    "segment_boxes": "napari_segany.boxes",
    "read_boxes": "napari_segany.boxes",
    "load_sample": "napari_segany.samples",
    "Normalizer": "napari_segany.intensity",
    "PromptSet": "napari_segany.prompts",
    "ObjectPrompt": "napari_segany.prompts",
    "points_to_prompts": "napari_segany.prompts",
    "shapes_to_prompts": "napari_segany.prompts",
    "load_model": "napari_segany.engine.registry",
    "available_models": "napari_segany.engine.registry",
    "register_model": "napari_segany.engine.registry",
    "register_family": "napari_segany.engine.registry",
    "ModelSpec": "napari_segany.engine.registry",
    "evaluate": "napari_segany.evaluation",
    "finetune": "napari_segany.finetune",
    "FinetuneSettings": "napari_segany.finetune",
}

if TYPE_CHECKING:  # pragma: no cover
    from .api import Segmenter
    from .auto import AutoSettings, auto_segment
    from .boxes import read_boxes, segment_boxes
    from .engine.registry import (
        ModelSpec,
        available_models,
        load_model,
        register_family,
        register_model,
    )
    from .evaluation import evaluate
    from .exports import export_labels
    from .finetune import FinetuneSettings, finetune
    from .intensity import Normalizer
    from .io import read_image
    from .prompts import ObjectPrompt, PromptSet, points_to_prompts, shapes_to_prompts
    from .propagate import SliceSettings
    from .samples import load_sample
    from .session import Session
    from .storage import EmbeddingCache, LabelsStore


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_segany' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
