"""Logic shared by the torch backends: prompt validation, batching, mask inputs, outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..prompts import ObjectPrompt, check_in_plane
from .base import Embedding, Prediction, check_image
from .device import autocast, precision_name

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["TorchBackend", "PromptBatch"]

#: Logit magnitude given to a binary mask turned into a mask input (inverse sigmoid of
#: 1 - 1e-3), the same scale SAM's own confident low-resolution logits reach.
_MASK_EPS = 1e-3


@dataclass
class PromptBatch:
    """Prompts of one homogeneous batch, as arrays in original pixel coordinates."""

    coords: np.ndarray | None  # (B, N, 2) float32 (x, y)
    labels: np.ndarray | None  # (B, N) int32
    boxes: np.ndarray | None  # (B, 4) float32 XYXY
    masks: np.ndarray | None  # (B, 1, lr, lr) float32 logits


class TorchBackend:
    """Base class of the SAM and SAM2 backends (see :class:`napari_segany.engine.Backend`).

    Subclasses implement ``_embed_batch(images)`` and ``_decode(embedding, batch, multimask)``.
    """

    family: str = ""
    #: What the backend can do beyond the protocol (see :func:`.base.has_capability`).
    capabilities: frozenset[str] = frozenset()
    #: Names (prefixes) of the model's parameters and buffers an image embedding depends on.
    embedding_parameters: tuple[str, ...] = ("image_encoder.",)

    def __init__(
        self,
        model: Any,
        *,
        name: str,
        arch: str,
        weights_id: str,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        image_size: int,
    ) -> None:
        self.model = model
        self.name = name
        self.arch = arch
        self.weights_id = weights_id
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.image_size = int(image_size)

    # -- identity -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return f"{self.family}:{self.arch}:{self.image_size}:{self.weights_id}"

    @property
    def low_res_size(self) -> int:
        """Side of the square low-resolution logits (a quarter of the input size)."""
        return self.image_size // 4

    @property
    def precision(self) -> str:
        """The compute precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
        return precision_name(self.autocast_dtype)

    @property
    def encoder_weights_id(self) -> str:
        """sha256 of the weights an embedding depends on (:attr:`embedding_parameters`).

        A checkpoint that changes only the prompt encoder and mask decoder (a ``decoder``
        fine-tune) has another :attr:`weights_id` but this same id, so embedding caches made
        with the base model stay valid for it. Computed on first use and again only after a
        weight is replaced or changed in place (torch's version counters say so).
        """
        import hashlib

        import torch

        named = [(n, t) for n, t in (*self.model.named_parameters(),
                                     *self.model.named_buffers())
                 if n.startswith(self.embedding_parameters)]
        key = tuple((n, t.data_ptr(), t._version) for n, t in named)
        cached = getattr(self, "_encoder_id", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        digest = hashlib.sha256()
        for n, t in sorted(named, key=lambda nt: nt[0]):
            t = t.detach().cpu().contiguous()
            digest.update(f"{n}:{t.dtype}:{tuple(t.shape)};".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        self._encoder_id = (key, digest.hexdigest())
        return self._encoder_id[1]

    def signature(self) -> dict[str, Any]:
        """Model, weights and compute precision (caches record the precision, see
        :class:`~napari_segany.storage.EmbeddingCache`; they do not compare it)."""
        return {
            "name": self.name,
            "family": self.family,
            "arch": self.arch,
            "image_size": self.image_size,
            "weights": self.weights_id,
            "precision": self.precision,
        }

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name} ({self.arch}) on {self.device}, "
                f"{self.precision}>")

    def _autocast(self):
        return autocast(self.device, self.autocast_dtype)

    # -- embedding --------------------------------------------------------------------------
    def embed(self, image: np.ndarray) -> Embedding:
        return self.embed_batch([image])[0]

    def embed_batch(self, images: list[np.ndarray]) -> list[Embedding]:
        import torch

        checked = [check_image(im) for im in images]
        if not checked:
            return []
        with torch.inference_mode(), self._autocast():
            return self._embed_batch(checked)

    def embedding_from_numpy(
        self,
        arrays: dict[str, np.ndarray],
        *,
        original_size: tuple[int, int],
        input_size: tuple[int, int],
    ) -> Embedding:
        import torch

        missing = set(self._feature_keys()) - set(arrays)
        if missing:
            raise ValueError(f"embedding arrays lack {sorted(missing)} for {self.name}")
        dtype = self.autocast_dtype or torch.float32
        tensors = {
            k: torch.as_tensor(np.asarray(arrays[k]), device=self.device).to(dtype)
            for k in self._feature_keys()
        }
        return Embedding(
            tensors,
            (int(original_size[0]), int(original_size[1])),
            (int(input_size[0]), int(input_size[1])),
            self.model_id,
        )

    # -- prediction -------------------------------------------------------------------------
    def predict(
        self,
        embedding: Embedding,
        prompts: ObjectPrompt | list[ObjectPrompt],
        *,
        multimask: bool = True,
    ) -> Prediction:
        import torch

        if embedding.model_id != self.model_id:
            raise ValueError(
                f"this embedding was computed by {embedding.model_id}, not by {self.model_id}; "
                "embed the plane again with this model"
            )
        single = not isinstance(prompts, (list, tuple))
        plist = [prompts] if single else list(prompts)
        if not plist:
            raise ValueError("predict needs at least one prompt")
        for i, p in enumerate(plist):
            self._validate_prompt(p, embedding.original_size, i)
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(plist):
            key = (len(p.points), p.box is not None, p.mask is not None)
            groups.setdefault(key, []).append(i)
        results: list[Any] = [None] * len(plist)
        with torch.inference_mode(), self._autocast():
            for idx in groups.values():
                batch = self._make_batch([plist[i] for i in idx], embedding)
                masks, scores, logits = self._decode(embedding, batch, multimask)
                for j, i in enumerate(idx):
                    results[i] = (masks[j], scores[j], logits[j])
        return Prediction(
            masks=np.stack([r[0] for r in results]),
            scores=np.stack([r[1] for r in results]).astype(np.float32),
            logits=np.stack([r[2] for r in results]).astype(np.float32),
        )

    def _validate_prompt(self, p: ObjectPrompt, size: tuple[int, int], i: int) -> None:
        h, w = size
        pts = np.asarray(p.points, dtype=np.float64).reshape(-1, 2)
        if pts.size == 0 and p.box is None and p.mask is None:
            raise ValueError(f"prompt {i} is empty: give points, a box or a mask")
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"prompt {i} has non-finite point coordinates")
        labels = np.asarray(p.labels).reshape(-1)
        if len(labels) != len(pts) or not np.all(np.isin(labels, (0, 1))):
            raise ValueError(f"prompt {i}: need one label per point, 1 (positive) or 0 (negative)")
        if p.box is not None:
            box = np.asarray(p.box, dtype=np.float64).reshape(-1)
            if box.shape != (4,) or not np.all(np.isfinite(box)):
                raise ValueError(f"prompt {i}: a box is 4 finite numbers x0, y0, x1, y1")
        check_in_plane(p, (h, w), f"prompt {i}")

    def _make_batch(self, plist: list[ObjectPrompt], embedding: Embedding) -> PromptBatch:
        coords = labels = boxes = masks = None
        if len(plist[0].points):
            coords = np.stack([np.asarray(p.points, np.float32).reshape(-1, 2) for p in plist])
            labels = np.stack([np.asarray(p.labels, np.int32).reshape(-1) for p in plist])
        if plist[0].box is not None:
            boxes = np.stack([np.asarray(p.box, np.float32).reshape(4) for p in plist])
        if plist[0].mask is not None:
            masks = np.stack([self._mask_input(p.mask, embedding) for p in plist])[:, None]
        return PromptBatch(coords, labels, boxes, masks)

    def _mask_input(self, mask: np.ndarray, embedding: Embedding) -> np.ndarray:
        arr = np.asarray(mask)
        lr = self.low_res_size
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.dtype.kind == "f" and arr.shape == (lr, lr):
            return arr.astype(np.float32)
        if arr.shape == tuple(embedding.original_size):
            return self.mask_to_logits(arr, embedding)
        raise ValueError(
            f"mask input of shape {arr.shape} fits neither the plane {embedding.original_size} "
            f"(a binary mask) nor the model's ({lr}, {lr}) float logits"
        )

    def mask_to_logits(self, mask: np.ndarray, embedding: Embedding) -> np.ndarray:
        """Binary ``(H, W)`` mask to ``(lr, lr)`` float32 logits in the model's input frame."""
        import torch
        import torch.nn.functional as F

        arr = np.asarray(mask)
        if arr.shape != tuple(embedding.original_size):
            raise ValueError(
                f"mask of shape {arr.shape} does not match the plane {embedding.original_size}"
            )
        lr = self.low_res_size
        h_in, w_in = embedding.input_size
        h = max(1, round(h_in * lr / self.image_size))
        w = max(1, round(w_in * lr / self.image_size))
        t = torch.as_tensor((arr > 0).astype(np.float32))[None, None]
        small = F.interpolate(t, size=(h, w), mode="area")[0, 0].numpy()
        prob = np.zeros((lr, lr), np.float32)
        prob[:h, :w] = small
        prob = np.clip(prob, _MASK_EPS, 1 - _MASK_EPS)
        return np.log(prob / (1 - prob)).astype(np.float32)

    # -- to implement -----------------------------------------------------------------------
    def _feature_keys(self) -> tuple[str, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _embed_batch(self, images: list[np.ndarray]) -> list[Embedding]:  # pragma: no cover
        raise NotImplementedError

    def _decode(
        self, embedding: Embedding, batch: PromptBatch, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError
