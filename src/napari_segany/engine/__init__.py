"""Model engine: one backend protocol for SAM and SAM2, a model registry, weights and devices.

Nothing here imports torch at package import time; builders import it when a model is built.
"""

from __future__ import annotations

from .base import Backend, Embedding, Prediction
from .registry import (
    ModelSpec,
    available_models,
    get_spec,
    load_model,
    register_family,
    register_model,
)

__all__ = [
    "Backend",
    "Embedding",
    "Prediction",
    "ModelSpec",
    "available_models",
    "get_spec",
    "load_model",
    "register_family",
    "register_model",
]
