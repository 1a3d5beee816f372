"""A deterministic, torch-free test backend that segments by a simple intensity rule.

Use it wherever a test needs masks that are exactly predictable::

    from rule_backend import RuleBackend   # tests/ is on sys.path for tests/test_*.py

(tests in sub-folders: ``sys.path.insert(0, str(Path(__file__).parents[1]))`` first, or
use the ``rule_backend`` fixture after ``from rule_backend import rule_backend_fixture``
in a conftest or test module).

The "model"
-----------
* :meth:`RuleBackend.embed` stores the plane itself: the :class:`RuleEmbedding`'s
  ``tensors`` dict holds ``{"image": (1, 1, H, W) float32 numpy}``, the RGB mean. Unlike
  real embeddings these are numpy arrays (``to_numpy`` and ``nbytes`` are overridden).
* :meth:`RuleBackend.predict` thresholds the plane (``gray > threshold``, in uint8 units)
  and labels its 4-connected components. The object is the union of the components under
  the positive points; if no positive point hits one, the component with the most pixels
  inside the box union the mask input (the whole component, not clipped to the box);
  components under negative points are removed. Score 1.0 for a non-empty mask, else 0.0.
* Logits are full-resolution ``(H, W)`` float32: +10 inside, -10 outside. A mask input
  may be a bool ``(H, W)`` mask or float logits of any 2D shape (``> 0`` is inside,
  resized to the plane by nearest neighbour).
* ``embed_calls`` and ``predict_calls`` (the batch size of each call) count the work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_segany.engine.base import Embedding, Prediction, check_image

__all__ = ["RuleBackend", "RuleEmbedding", "rule_backend_fixture"]

LOGIT = 10.0


class RuleEmbedding(Embedding):
    """An :class:`Embedding` whose ``tensors`` are numpy arrays."""

    def to_numpy(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float32) for k, v in self.tensors.items()}

    @property
    def nbytes(self) -> int:
        return int(sum(np.asarray(v).nbytes for v in self.tensors.values()))


class RuleBackend:
    """Backend-protocol implementation segmenting bright connected components.

    Parameters
    ----------
    threshold : float
        Foreground is ``mean(R, G, B) > threshold`` (uint8 units).
    name : str
        Model name (part of ``model_id``).
    """

    family = "rule"
    image_size = 1024
    device = "cpu"

    def __init__(self, *, threshold: float = 127.5, name: str = "rule") -> None:
        self.threshold = float(threshold)
        self.name = name
        self.weights_id = f"threshold-{self.threshold:g}"
        self.embed_calls = 0
        self.predict_calls: list[int] = []

    @property
    def model_id(self) -> str:
        return f"rule:{self.name}:{self.weights_id}"

    def signature(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family, "threshold": self.threshold}

    # -- embedding ------------------------------------------------------------------------------
    def embed(self, image: np.ndarray) -> RuleEmbedding:
        self.embed_calls += 1
        img = check_image(image)
        gray = img.astype(np.float32).mean(axis=-1)
        size = (int(gray.shape[0]), int(gray.shape[1]))
        return RuleEmbedding({"image": gray[None, None]}, size, size, self.model_id)

    def embed_batch(self, images: list[np.ndarray]) -> list[RuleEmbedding]:
        return [self.embed(im) for im in images]

    def embedding_from_numpy(self, arrays, *, original_size, input_size) -> RuleEmbedding:
        if "image" not in arrays:
            raise ValueError("embedding arrays lack ['image'] for the rule backend")
        return RuleEmbedding({"image": np.asarray(arrays["image"], np.float32)},
                             tuple(map(int, original_size)), tuple(map(int, input_size)),
                             self.model_id)

    def mask_to_logits(self, mask: np.ndarray, embedding: Embedding) -> np.ndarray:
        arr = np.asarray(mask)
        if arr.shape != tuple(embedding.original_size):
            raise ValueError(f"mask {arr.shape} does not match plane {embedding.original_size}")
        return np.where(arr > 0, LOGIT, -LOGIT).astype(np.float32)

    # -- prediction -----------------------------------------------------------------------------
    def predict(self, embedding: Embedding, prompts, *, multimask: bool = True) -> Prediction:
        if embedding.model_id != self.model_id:
            raise ValueError(f"embedding from {embedding.model_id}, not {self.model_id}")
        plist = list(prompts) if isinstance(prompts, (list, tuple)) else [prompts]
        if not plist:
            raise ValueError("predict needs at least one prompt")
        self.predict_calls.append(len(plist))
        gray = np.asarray(embedding.tensors["image"])[0, 0]
        labels, _ = ndi.label(gray > self.threshold)
        masks = np.stack([self._segment(labels, p) for p in plist])  # (B, H, W)
        m = 3 if multimask else 1
        masks = np.repeat(masks[:, None], m, axis=1)
        scores = np.repeat(masks.any(axis=(2, 3))[:, :1].astype(np.float32), m, axis=1)
        logits = np.where(masks, LOGIT, -LOGIT).astype(np.float32)
        return Prediction(masks=masks, scores=scores, logits=logits)

    @staticmethod
    def _segment(labels: np.ndarray, p) -> np.ndarray:
        h, w = labels.shape
        if p.is_empty():
            raise ValueError("prompt is empty: give points, a box or a mask")
        pts = np.rint(np.asarray(p.points)).astype(int).reshape(-1, 2)
        if len(pts) and (pts.min() < 0 or np.any(pts[:, 0] >= w) or np.any(pts[:, 1] >= h)):
            raise ValueError(f"a point lies outside the {w}x{h} (WxH) plane")
        under = labels[pts[:, 1], pts[:, 0]]
        pos, neg = under[p.labels == 1], under[p.labels == 0]
        chosen = set(pos[pos > 0].tolist())
        if not chosen:
            region = np.zeros((h, w), bool)
            if p.box is not None:
                x0, y0, x1, y1 = p.box
                region[int(np.ceil(y0)):int(np.floor(y1)) + 1,
                       int(np.ceil(x0)):int(np.floor(x1)) + 1] = True
            if p.mask is not None:
                region |= _mask_region(p.mask, (h, w))
            counts = np.bincount(labels[region], minlength=labels.max() + 1)
            counts[0] = 0
            if counts.max() > 0:
                chosen.add(int(np.argmax(counts)))
        chosen -= set(neg.tolist())
        return np.isin(labels, sorted(chosen)) & (labels > 0)


def _mask_region(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(mask)
    inside = arr if arr.dtype == bool else arr > 0
    if inside.shape == shape:
        return inside
    rows = np.arange(shape[0]) * inside.shape[0] // shape[0]
    cols = np.arange(shape[1]) * inside.shape[1] // shape[1]
    return inside[np.ix_(rows, cols)]


@pytest.fixture(name="rule_backend")
def rule_backend_fixture() -> RuleBackend:
    """A fresh :class:`RuleBackend` (threshold 127.5)."""
    return RuleBackend()
