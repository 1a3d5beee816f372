"""The SAM2 backend's lean image encoder equals SAM2ImagePredictor's features bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany import load_model
from napari_segany.engine.sam2 import LeanImageEncoder

KEYS = ("image_embed", "high_res_feats_0", "high_res_feats_1")


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - h // 2) ** 2 + (xx - w // 3) ** 2 < (min(h, w) // 4) ** 2] = 220
    return img


@pytest.fixture(scope="module")
def backend():
    return load_model("sam2_tiny", random_weights=True, device="cpu")


def _predictor_features(backend, images):
    p = backend.predictor
    with torch.inference_mode():
        p.set_image_batch(images)
    try:
        hr0, hr1 = p._features["high_res_feats"]
        return {"image_embed": p._features["image_embed"].clone(),
                "high_res_feats_0": hr0.clone(), "high_res_feats_1": hr1.clone()}
    finally:
        p.reset_predictor()


def _assert_equal_to_predictor(backend, images):
    ours = backend.embed_batch(images)
    ref = _predictor_features(backend, images)
    for i, emb in enumerate(ours):
        for k in KEYS:
            assert emb.tensors[k].shape == ref[k][i : i + 1].shape, k
            assert torch.equal(emb.tensors[k], ref[k][i : i + 1]), f"plane {i}: {k} differs"


def test_lean_encoder_is_used_for_sam2(backend):
    assert isinstance(backend.encoder, LeanImageEncoder)
    assert backend.encoder.supported


def test_features_equal_the_predictor_bit_for_bit(backend):
    _assert_equal_to_predictor(backend, [_image(90, 70, 0), _image(64, 128, 1), _image(33, 33, 2)])


def test_features_equal_after_the_weights_change(backend):
    """The trunk's cached position embedding follows in-place weight updates."""
    _assert_equal_to_predictor(backend, [_image(80, 80, 3)])  # fills the cache
    trunk = backend.model.image_encoder.trunk
    saved = trunk.pos_embed.detach().clone()
    try:
        with torch.no_grad():
            trunk.pos_embed.mul_(3.0).add_(0.5)
        _assert_equal_to_predictor(backend, [_image(80, 80, 3)])
        with torch.no_grad():
            trunk.pos_embed_window.add_(1.0)
        _assert_equal_to_predictor(backend, [_image(80, 80, 3)])
    finally:
        with torch.no_grad():
            trunk.pos_embed.copy_(saved)
            trunk.pos_embed_window.sub_(1.0)
    _assert_equal_to_predictor(backend, [_image(80, 80, 3)])


def test_skips_the_neck_position_encodings(backend, monkeypatch):
    """The predictor computes a sine encoding per level; the lean path computes none."""
    calls = []
    pe = backend.model.image_encoder.neck.position_encoding
    original = type(pe).forward

    def counting(self, x):
        calls.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(type(pe), "forward", counting)
    backend.embed(_image(64, 64, 4))
    assert calls == []
    _predictor_features(backend, [_image(64, 64, 4)])
    assert len(calls) == len(backend.model.image_encoder.neck.convs)


def test_unknown_encoder_falls_back_to_the_predictor(backend, monkeypatch):
    images = [_image(70, 50, 5)]
    expected = backend.embed_batch(images)
    monkeypatch.setattr(backend.encoder, "supported", False)
    called = []
    orig = backend._embed_batch_predictor
    monkeypatch.setattr(backend, "_embed_batch_predictor",
                        lambda ims: called.append(len(ims)) or orig(ims))
    got = backend.embed_batch(images)
    assert called == [1]
    for k in KEYS:
        assert torch.equal(got[0].tensors[k], expected[0].tensors[k])


def test_subclassed_trunk_is_not_supported(backend):
    from sam2.modeling.backbones.hieradet import Hiera

    class OtherTrunk(Hiera):
        pass

    trunk = backend.model.image_encoder.trunk
    try:
        trunk.__class__ = OtherTrunk
        assert not LeanImageEncoder(backend.model).supported
    finally:
        trunk.__class__ = Hiera
    assert LeanImageEncoder(backend.model).supported


def test_neck_without_expected_attributes_is_not_supported(backend):
    """A future sam2 that renames the FPN's settings falls back instead of failing."""
    neck = backend.model.image_encoder.neck
    saved = neck.fuse_type
    try:
        del neck.fuse_type
        assert not LeanImageEncoder(backend.model).supported
    finally:
        neck.fuse_type = saved
    assert LeanImageEncoder(backend.model).supported
