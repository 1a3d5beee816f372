"""The backend protocol that SAM and SAM2 both implement, and the types it exchanges.

A backend embeds one 2D RGB plane once (:meth:`Backend.embed`) and then predicts masks many
times from prompts on that embedding (:meth:`Backend.predict`). Embeddings can be turned
into plain numpy arrays and back, which is what the embedding cache stores.

Conventions
-----------
* Images given to a backend are ``(H, W, 3)`` uint8 RGB planes; :mod:`napari_segany.intensity`
  makes them from any microscopy or medical data.
* Prompts are :class:`napari_segany.prompts.ObjectPrompt` objects: points ``(N, 2)`` as
  ``(x, y) = (column, row)`` pixel coordinates, labels 1 positive / 0 negative, one XYXY box,
  and optionally a mask input (a binary ``(H, W)`` mask or the model's low-resolution logits).
* Everything returned is numpy on the CPU, float32 or bool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..prompts import ObjectPrompt

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["Backend", "Embedding", "Prediction", "check_image", "has_capability", "CAPABILITIES"]

#: Optional capabilities a backend may declare in ``capabilities``:
#: ``"automatic"``: the model has its own automatic mask generator (:mod:`.amg`);
#: ``"memory"``: SAM2-style memory tracking through a stack (:mod:`.sam2_video`).
CAPABILITIES = ("automatic", "memory")


@dataclass
class Embedding:
    """Image features of one 2D plane, computed by one model.

    Parameters
    ----------
    tensors : dict of str to torch.Tensor
        The model's features, on the backend's device, with a leading batch axis of 1.
        SAM: ``image_embed`` ``(1, 256, 64, 64)``; SAM2 adds ``high_res_feats_0`` and
        ``high_res_feats_1`` (sizes for a 1024 input; they scale with the model's image size).
    original_size : tuple of int
        ``(H, W)`` of the plane that was embedded.
    input_size : tuple of int
        ``(h, w)`` of the resized plane inside the model's square input.
    model_id : str
        Identity of the model (name and weights hash) that computed it.
    """

    tensors: dict[str, torch.Tensor]
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_id: str

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Features as float32 numpy arrays, keyed as in :attr:`tensors`."""
        return {k: v.detach().float().cpu().numpy() for k, v in self.tensors.items()}

    @property
    def nbytes(self) -> int:
        """Bytes held by the feature tensors."""
        return int(sum(t.numel() * t.element_size() for t in self.tensors.values()))


@dataclass
class Prediction:
    """Masks predicted for a batch of ``B`` prompts, ``M`` candidates each.

    Attributes
    ----------
    masks : np.ndarray
        ``(B, M, H, W)`` bool, at the plane's original size.
    scores : np.ndarray
        ``(B, M)`` float32, the model's predicted IoU of each mask.
    logits : np.ndarray
        ``(B, M, h, w)`` float32 low-resolution logits, usable as a mask input.
    """

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def best_index(self) -> np.ndarray:
        """``(B,)`` index of the highest-scoring candidate for each prompt."""
        return np.argmax(self.scores, axis=1)

    def best(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Highest-scoring mask per prompt: masks ``(B, H, W)``, scores ``(B,)``, logits."""
        idx = self.best_index()
        rows = np.arange(len(self))
        return self.masks[rows, idx], self.scores[rows, idx], self.logits[rows, idx]


@runtime_checkable
class Backend(Protocol):
    """What every segmentation backend provides (SAM, SAM2, third-party).

    A backend may also declare optional ``capabilities`` (a set of names from
    :data:`CAPABILITIES`); see :func:`has_capability`.
    """

    name: str
    family: str
    image_size: int
    device: torch.device
    weights_id: str

    @property
    def model_id(self) -> str:
        """A string identifying architecture and weights, used in cache signatures."""

    def embed(self, image: np.ndarray) -> Embedding:
        """Embed one ``(H, W, 3)`` uint8 RGB plane."""

    def embed_batch(self, images: list[np.ndarray]) -> list[Embedding]:
        """Embed several planes in one forward pass (faster on a GPU)."""

    def predict(
        self,
        embedding: Embedding,
        prompts: ObjectPrompt | list[ObjectPrompt],
        *,
        multimask: bool = True,
    ) -> Prediction:
        """Predict masks for one prompt or a batch of prompts (one per object)."""

    def mask_to_logits(self, mask: np.ndarray, embedding: Embedding) -> np.ndarray:
        """Turn a binary ``(H, W)`` mask into low-resolution logits for a mask input."""

    def embedding_from_numpy(
        self,
        arrays: dict[str, np.ndarray],
        *,
        original_size: tuple[int, int],
        input_size: tuple[int, int],
    ) -> Embedding:
        """Rebuild an :class:`Embedding` from :meth:`Embedding.to_numpy` arrays."""

    def signature(self) -> dict[str, Any]:
        """JSON-serialisable description of model and weights (for caches, provenance)."""


def has_capability(backend: Any, name: str) -> bool:
    """Whether ``backend`` declares capability ``name`` (see :data:`CAPABILITIES`).

    Backends that predate capabilities (or third-party ones without the attribute)
    declare none: they serve interactive prompting, slice-wise propagation and the
    generic point-grid automatic segmentation through the protocol alone.
    """
    return name in getattr(backend, "capabilities", ())


def check_image(image: Any) -> np.ndarray:
    """Validate a plane for embedding and return it as a C-contiguous uint8 array.

    Parameters
    ----------
    image : array-like
        ``(H, W, 3)`` uint8 RGB.

    Raises
    ------
    ValueError
        If the plane is not ``(H, W, 3)`` uint8 or is empty; the message says how to
        convert it (:class:`napari_segany.intensity.Normalizer`).
    """
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(
            f"a backend embeds (H, W, 3) RGB planes, got shape {arr.shape}; convert the "
            "plane with napari_segany.Normalizer first"
        )
    if arr.dtype != np.uint8:
        raise ValueError(
            f"a backend embeds uint8 planes, got dtype {arr.dtype}; convert the plane with "
            "napari_segany.Normalizer first"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"cannot embed an empty plane of shape {arr.shape}")
    return np.ascontiguousarray(arr)
