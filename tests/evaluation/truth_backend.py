"""A "perfect model": a backend that answers every prompt with the ground-truth object under it.

Built from the image, its ground truth and the intensity mapping the evaluation uses, it
recognises which plane it is asked to embed (by the plane's RGB bytes) and answers:

* positive points: the object under the first positive point (rounded to a pixel);
* otherwise a box: the object whose bounding box overlaps the box most (box IoU);
* otherwise a mask input: the object overlapping the mask most;
* nothing found: an empty mask with score 0.

Masks are whole ground-truth objects, scores 1.0, logits +-10 at full resolution. Any
error in coordinates (x/y swapped), axes, plane indices or object ids shows up as IoU
below 1.0 on the prompted planes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from napari_segany.engine.base import Prediction, check_image
from rule_backend import RuleEmbedding, _mask_region

__all__ = ["TruthBackend"]


def _digest(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()


def _boxes(labels: np.ndarray) -> dict[int, tuple[int, int, int, int]]:
    from scipy import ndimage as ndi

    out = {}
    for i, sl in enumerate(ndi.find_objects(labels.astype(np.int64)), start=1):
        if sl is not None:
            out[i] = (sl[1].start, sl[0].start, sl[1].stop - 1, sl[0].stop - 1)
    return out


def _box_iou(a, b) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)


class TruthBackend:
    """Backend protocol over ground truth (see the module docstring).

    Parameters
    ----------
    image : array-like
        The image, as the evaluation sees it (``(..., H, W)``, or RGB with ``rgb=True``).
    truth : np.ndarray
        Integer labels ``(..., H, W)``.
    normalizer : Normalizer
        The mapping the evaluation uses (``Normalizer.fit(image, rgb=rgb)`` by default).
    """

    family = "truth"
    name = "truth"
    image_size = 1024
    device = "cpu"
    weights_id = "ground-truth"

    def __init__(self, image: Any, truth: np.ndarray, normalizer: Any, *, rgb: bool = False):
        self.truth = np.asarray(truth)
        lead = self.truth.shape[:-2]
        self.planes: dict[str, tuple[int, ...]] = {}
        for key in np.ndindex(lead) if lead else [()]:
            self.planes.setdefault(_digest(normalizer(np.asarray(image[key]))), key)
        self.embed_calls = 0
        self.predict_calls: list[int] = []

    @property
    def model_id(self) -> str:
        return "truth:ground-truth"

    def signature(self) -> dict[str, Any]:
        return {"name": self.name, "family": self.family}

    def embed(self, image: np.ndarray) -> RuleEmbedding:
        self.embed_calls += 1
        img = check_image(image)
        key = self.planes.get(_digest(img))
        if key is None:
            raise ValueError("the truth backend was asked to embed a plane it does not know")
        size = (int(img.shape[0]), int(img.shape[1]))
        return RuleEmbedding({"plane": np.asarray(key, np.int64)}, size, size, self.model_id)

    def embed_batch(self, images: list[np.ndarray]) -> list[RuleEmbedding]:
        return [self.embed(im) for im in images]

    def embedding_from_numpy(self, arrays, *, original_size, input_size) -> RuleEmbedding:
        return RuleEmbedding({"plane": np.asarray(arrays["plane"], np.int64)},
                             tuple(original_size), tuple(input_size), self.model_id)

    def mask_to_logits(self, mask: np.ndarray, embedding: Any) -> np.ndarray:
        return np.where(np.asarray(mask) > 0, 10.0, -10.0).astype(np.float32)

    def predict(self, embedding: Any, prompts: Any, *, multimask: bool = True) -> Prediction:
        plist = list(prompts) if isinstance(prompts, (list, tuple)) else [prompts]
        self.predict_calls.append(len(plist))
        key = tuple(int(k) for k in np.asarray(embedding.tensors["plane"]).reshape(-1))
        labels = self.truth[key]
        boxes = _boxes(labels)
        masks = np.stack([labels == self._object(labels, boxes, p) for p in plist])
        m = 3 if multimask else 1
        masks = np.repeat(masks[:, None], m, axis=1)
        scores = np.repeat(masks[:, :1].any(axis=(2, 3)).astype(np.float32), m, axis=1)
        logits = np.where(masks, 10.0, -10.0).astype(np.float32)
        return Prediction(masks=masks, scores=scores, logits=logits)

    @staticmethod
    def _object(labels: np.ndarray, boxes: dict, p: Any) -> int:
        pos = np.asarray(p.points)[np.asarray(p.labels) == 1]
        if len(pos):
            x, y = np.rint(pos[0]).astype(int)
            return int(labels[y, x]) or -1
        if p.box is not None:
            ious = {oid: _box_iou(b, p.box) for oid, b in boxes.items()}
            best = max(ious, key=lambda o: (ious[o], -o), default=None)
            return best if best is not None and ious[best] > 0 else -1
        if p.mask is not None:
            region = _mask_region(p.mask, labels.shape)
            counts = np.bincount(labels[region].astype(np.int64), minlength=2)
            counts[0] = 0
            return int(np.argmax(counts)) if counts.max() else -1
        return -1
