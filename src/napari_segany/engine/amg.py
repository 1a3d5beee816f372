"""The SAM and SAM2 models' own automatic mask generators, run on a cached embedding.

segment-anything's ``SamAutomaticMaskGenerator`` and sam2's ``SAM2AutomaticMaskGenerator``
embed the image themselves through their predictor. Here they are extended to take an
embedding already computed (or read from the embedding cache), to report progress per
batch of point prompts and to stop when cancelled. This is engine code: it sets the
predictors' private feature attributes, as ``set_image`` would.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import cache
from typing import Any

import numpy as np

from .._progress import check_cancel
from . import sam, sam2
from .base import Backend, Embedding, has_capability

__all__ = ["AMG_CAPABILITY", "DEFAULT_IOU_THRESH", "has_model_generator", "default_iou_thresh",
           "generate_with_model"]

#: Backends with this capability have a model generator that :func:`generate_with_model` runs.
AMG_CAPABILITY = "automatic"
#: Default ``pred_iou_thresh`` of each family's own generator.
DEFAULT_IOU_THRESH = {"sam": 0.88, "sam2": 0.8}


def has_model_generator(backend: Any) -> bool:
    """Whether ``backend`` is a SAM or SAM2 model whose own generator can run."""
    return has_capability(backend, AMG_CAPABILITY) and getattr(backend, "model", None) is not None


def default_iou_thresh(backend: Any) -> float:
    """The generator's default ``pred_iou_thresh`` for this backend's family (0.88 otherwise)."""
    return DEFAULT_IOU_THRESH.get(str(getattr(backend, "family", "")), 0.88)


@cache
def _generator_class(family: str) -> type:
    """The family's generator, extended with progress, cancel and a precomputed embedding."""
    import torch

    if family == "sam":
        from segment_anything import SamAutomaticMaskGenerator as Base
    else:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as Base

    class Generator(Base):
        embedding: Any = None
        tick: Any = None
        cancel: Any = None

        def _process_crop(self, image, crop_box, crop_layer_idx, orig_size):
            pred = self.predictor
            if self.embedding is not None and crop_layer_idx == 0:
                pred.set_image = lambda *_a, **_k: _load_features(pred, family, self.embedding)
            try:
                return super()._process_crop(image, crop_box, crop_layer_idx, orig_size)
            finally:
                pred.__dict__.pop("set_image", None)

        def _process_batch(self, points, *args, **kwargs):
            check_cancel(self.cancel)
            out = super()._process_batch(points, *args, **kwargs)
            for k, v in list(out.items()):  # SAM's MaskData.to_numpy cannot take bfloat16
                if getattr(v, "is_floating_point", lambda: False)() and v.dtype != torch.float32:
                    out[k] = v.float()
            if self.tick is not None:
                self.tick()
            return out

    return Generator


def _load_features(pred: Any, family: str, emb: Any) -> None:
    """Put a backend embedding into the generator's predictor (as set_image would)."""
    (sam.set_features if family == "sam" else sam2.set_features)(pred, emb)


def generate_with_model(backend: Backend, image: np.ndarray, embedding: Embedding | None, *,
                        options: dict[str, Any], tick: Any = None, cancel: Any = None
                        ) -> list[tuple[np.ndarray, float, float]]:
    """Run the backend's own generator on one ``(H, W, 3)`` uint8 plane.

    Parameters
    ----------
    backend : Backend
        A SAM or SAM2 backend (:func:`has_model_generator`).
    image : np.ndarray
        The plane.
    embedding : Embedding or None
        The plane's embedding; computed by the generator when None.
    options : dict
        Keyword arguments of the generator (``points_per_side``, ``pred_iou_thresh``,
        ``crop_n_layers``, ...; ``use_m2m`` for SAM2 only).
    tick : callable, optional
        Called after each batch of point prompts.
    cancel : threading.Event or callable, optional
        Checked before each batch; raises :class:`~napari_segany.errors.Cancelled`.

    Returns
    -------
    list of (mask, predicted_iou, stability_score)
        ``(H, W)`` bool masks in the generator's order.
    """
    import torch

    family = str(backend.family)
    kw = dict(options, min_mask_region_area=0, output_mode="uncompressed_rle")
    if family != "sam2":
        kw.pop("use_m2m", None)
    gen = _generator_class(family)(backend.model, **kw)
    if family == "sam2":  # the predictor assumes a 1024 input; its feature sizes follow the model
        size = int(backend.model.image_size)
        gen.predictor._bb_feat_sizes = [(size // k, size // k) for k in (4, 8, 16)]
    gen.embedding, gen.tick, gen.cancel = embedding, tick, cancel
    autocast = backend._autocast() if hasattr(backend, "_autocast") else nullcontext()
    with torch.inference_mode(), autocast:
        anns = gen.generate(image)
    if family == "sam":
        from segment_anything.utils.amg import rle_to_mask
    else:
        from sam2.utils.amg import rle_to_mask
    return [(rle_to_mask(a["segmentation"]), float(a["predicted_iou"]),
             float(a["stability_score"])) for a in anns]
