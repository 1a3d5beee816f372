"""A synthetic movie of cells with two divisions, and a perfect model that sees divisions.

:func:`cell_movie` draws ``(T, H, W)`` uint8 frames of round cells and their ground-truth
labels and lineage:

* cell 1 drifts right through every frame; on frame ``NOISE_FRAME`` a thin dark line
  cuts it in two (a split that heals the next frame: not a division);
* cell 2 lives on frames 0..7 and divides: daughters 4 and 5 from frame 8;
* daughter 4 divides again: 6 and 7 from frame 14;
* cell 3 sits still on the left.

:class:`LineageBackend` is a backend that recognises the frame it embeds (by its RGB
bytes) and answers a prompt with the **union of the true objects that overlap it**: the
mask input when there is one (the previous frame's mask during propagation), else the
box, else the objects under the positive points. So a mask whose cell divided comes back
as two components, as a good model would segment it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from napari_segany.engine.base import Prediction, check_image
from rule_backend import RuleEmbedding, _mask_region

__all__ = ["cell_movie", "LineageBackend", "TRUE_PARENTS", "NOISE_FRAME", "T"]

T, H, W = 20, 96, 112
NOISE_FRAME = 5
#: daughter -> parent of the ground truth
TRUE_PARENTS = {4: 2, 5: 2, 6: 4, 7: 4}


def _disc(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def cell_movie() -> tuple[np.ndarray, np.ndarray]:
    """``(image (T, H, W) uint8, truth (T, H, W) uint16)``."""
    image = np.full((T, H, W), 30, np.uint8)
    truth = np.zeros((T, H, W), np.uint16)
    rng = np.random.default_rng(7)
    for t in range(T):
        lab = truth[t]
        lab[_disc(15, 40 + t, 7)] = 1
        if t == NOISE_FRAME:
            lab[:, 40 + t] = np.where(lab[:, 40 + t] == 1, 0, lab[:, 40 + t])
        if t < 8:
            lab[_disc(50, 60, 9)] = 2
        else:
            s = t - 8
            if t < 14:
                lab[_disc(50, 53 - s, 6)] = 4
            else:
                u = t - 14
                lab[_disc(43 - u, 48 - u, 4)] = 6
                lab[_disc(57 + u, 48 - u, 4)] = 7
            lab[_disc(50, 67 + s, 6)] = 5
        lab[_disc(75, 15, 6)] = 3
        noise = rng.integers(0, 12, (H, W))
        image[t] = np.where(lab > 0, 190, 30) + noise
        image[t, 0, t] = 255  # no two frames alike
    return image, truth


def _digest(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()


class LineageBackend:
    """The perfect model of :func:`cell_movie` (see the module docstring)."""

    family = "truth"
    image_size = 1024
    device = "cpu"
    name = "lineage-truth"

    def __init__(self, image: np.ndarray, truth: np.ndarray) -> None:
        self.truth = np.asarray(truth)
        self._frame = {}
        for t in range(len(image)):
            rgb = np.repeat(np.asarray(image[t])[..., None], 3, axis=-1)
            self._frame[_digest(rgb)] = t
        self.model_id = "truth:lineage"
        self.weights_id = "truth"
        self.calls = 0

    def signature(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family}

    def embed(self, image: np.ndarray) -> RuleEmbedding:
        img = check_image(image)
        t = self._frame[_digest(img)]
        size = (int(img.shape[0]), int(img.shape[1]))
        return RuleEmbedding({"image": np.full((1, 1, 1, 1), t, np.float32)}, size, size,
                             self.model_id)

    def embed_batch(self, images):
        return [self.embed(im) for im in images]

    def embedding_from_numpy(self, arrays, *, original_size, input_size):
        return RuleEmbedding({"image": np.asarray(arrays["image"], np.float32)},
                             tuple(map(int, original_size)), tuple(map(int, input_size)),
                             self.model_id)

    def mask_to_logits(self, mask, embedding):
        return np.where(np.asarray(mask) > 0, 10.0, -10.0).astype(np.float32)

    def predict(self, embedding, prompts, *, multimask: bool = True) -> Prediction:
        plist = list(prompts) if isinstance(prompts, (list, tuple)) else [prompts]
        self.calls += len(plist)
        t = int(np.asarray(embedding.tensors["image"]).ravel()[0])
        truth = self.truth[t]
        masks = np.stack([self._answer(truth, p) for p in plist])
        m = 3 if multimask else 1
        masks = np.repeat(masks[:, None], m, axis=1)
        scores = np.repeat(masks.any(axis=(2, 3))[:, :1].astype(np.float32), m, axis=1)
        logits = np.where(masks, 10.0, -10.0).astype(np.float32)
        return Prediction(masks=masks, scores=scores, logits=logits)

    @staticmethod
    def _answer(truth: np.ndarray, p) -> np.ndarray:
        h, w = truth.shape
        if p.mask is not None:
            region = _mask_region(p.mask, (h, w))
        elif p.box is not None:
            x0, y0, x1, y1 = p.box
            region = np.zeros((h, w), bool)
            region[int(np.ceil(y0)):int(np.floor(y1)) + 1,
                   int(np.ceil(x0)):int(np.floor(x1)) + 1] = True
        else:
            pts = np.rint(p.points[p.labels == 1]).astype(int)
            ids = {int(truth[y, x]) for x, y in pts} - {0}
            return np.isin(truth, sorted(ids))
        ids = set(np.unique(truth[region]).tolist()) - {0}
        return np.isin(truth, sorted(ids))
