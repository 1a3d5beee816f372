"""The SAM backend's decoder (image shared by a batch's objects) equals
``SamPredictor.predict_torch`` bit for bit, for points, boxes, both, mask inputs and one
object."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany import load_model
from napari_segany.engine._common import PromptBatch
from napari_segany.engine.sam import decode_shared_image, set_features


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    return load_model("sam_tiny", random_weights=True, device="cpu")


@pytest.fixture(scope="module")
def embedding(backend):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    return backend.embed(img)


def _batch(n, *, points=True, boxes=False, masks=False, seed=0):
    rng = np.random.default_rng(seed)
    coords = labels = bx = mk = None
    if points:
        coords = (rng.random((n, 3, 2)) * [300, 200]).astype(np.float32)
        labels = rng.integers(0, 2, (n, 3)).astype(np.int32)
    if boxes:
        x0, y0 = rng.random(n) * 150, rng.random(n) * 100
        bx = np.stack([x0, y0, x0 + 40 + rng.random(n) * 100, y0 + 30 + rng.random(n) * 60],
                      1).astype(np.float32)
    if masks:
        mk = rng.normal(0, 4, (n, 1, 64, 64)).astype(np.float32)
    return PromptBatch(coords, labels, bx, mk)


def _raw(backend, embedding, batch, multimask):
    p = backend.predictor
    set_features(p, embedding)
    try:
        t = backend._tensor
        coords = labels = boxes = masks = None
        if batch.coords is not None:
            coords = p.transform.apply_coords_torch(t(batch.coords), embedding.original_size)
            labels = t(batch.labels, integer=True)
        if batch.boxes is not None:
            boxes = p.transform.apply_boxes_torch(t(batch.boxes), embedding.original_size)
        if batch.masks is not None:
            masks = t(batch.masks)
        out = p.predict_torch(coords, labels, boxes, masks, multimask_output=multimask)
    finally:
        p.reset_image()
    return [o.cpu().numpy() for o in out]


@pytest.mark.parametrize("kind", ["points", "boxes", "both", "masks", "one"])
@pytest.mark.parametrize("multimask", [False, True])
def test_decode_equals_predict_torch(backend, embedding, kind, multimask):
    batch = _batch(1 if kind == "one" else 7, points=kind in ("points", "both", "masks", "one"),
                   boxes=kind in ("boxes", "both"), masks=kind == "masks")
    ours = backend._decode(embedding, batch, multimask)
    ref = _raw(backend, embedding, batch, multimask)
    for a, b, name in zip(ours, ref, ("masks", "scores", "logits"), strict=True):
        assert a.shape == b.shape, name
        assert np.array_equal(a, b), f"{name} differ (max {np.abs(a.astype(float) - b).max()})"
    assert ours[0].any()  # the comparison is on masks with pixels in them


def test_the_image_enters_the_transformer_once(backend, embedding):
    """The shared path is taken: the transformer sees one image, not one per object."""
    seen = []
    hook = backend.model.mask_decoder.transformer.register_forward_pre_hook(
        lambda mod, args: seen.append(args[0].shape[0]))
    try:
        backend._decode(embedding, _batch(5), False)
        backend._decode(embedding, _batch(5, masks=True), False)
    finally:
        hook.remove()
    assert seen == [1, 5]  # mask inputs differ per object: segment-anything's own path


def test_decode_shared_image_needs_one_image(backend, embedding):
    """Two image embeddings fall back to the decoder's own repeat (no silent broadcast)."""
    m = backend.model
    sparse, dense = m.prompt_encoder(points=None, boxes=torch.rand(2, 4) * 256, masks=None)
    feats = embedding.tensors["image_embed"].repeat(2, 1, 1, 1)
    with torch.no_grad():
        with pytest.raises(RuntimeError):  # segment-anything's own error for 2 x 2 copies
            decode_shared_image(m.mask_decoder, feats, m.prompt_encoder.get_dense_pe(),
                                sparse, dense, False)
