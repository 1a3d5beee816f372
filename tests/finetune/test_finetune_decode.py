"""The training decoder shares the image among a step's objects: the same masks, IoUs and
gradients as the libraries' own decoders, which copy the image once per object."""

from __future__ import annotations

import copy

import pytest
import torch
from ftdata import discs

from napari_segany.finetune import TrainableModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(tm, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = float(tm.image_size)
    coords = torch.rand(n, 3, 2, generator=g) * S
    labels = torch.tensor([[1, 0, 1]] * n)
    xy = torch.rand(n, 2, generator=g) * S / 2
    boxes = torch.cat([xy, xy + S / 3], 1)
    return coords, labels, boxes


def _own(tm, feats, coords, labels, boxes, multimask):
    """The library's own decoder call (the image repeated per object)."""
    points = None if coords is None else (coords, labels)
    if tm.family == "sam":
        pe = tm.model.prompt_encoder
        sparse, dense = pe(points=points, boxes=boxes, masks=None)
        return tm.model.mask_decoder(image_embeddings=feats["image_embed"],
                                     image_pe=pe.get_dense_pe(),
                                     sparse_prompt_embeddings=sparse,
                                     dense_prompt_embeddings=dense, multimask_output=multimask)
    if boxes is not None:
        b = boxes.reshape(-1, 2, 2)
        bl = torch.tensor([[2, 3]], dtype=torch.int).repeat(b.shape[0], 1)
        points = (b, bl) if points is None else (torch.cat([b, points[0]], 1),
                                                 torch.cat([bl, points[1].int()], 1))
    pe = tm.model.sam_prompt_encoder
    sparse, dense = pe(points=points, boxes=None, masks=None)
    logits, iou, _, _ = tm.model.sam_mask_decoder(
        image_embeddings=feats["image_embed"], image_pe=pe.get_dense_pe(),
        sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
        multimask_output=multimask, repeat_image=True,
        high_res_features=[feats["high_res_feats_0"], feats["high_res_feats_1"]])
    return logits, iou


@pytest.mark.parametrize("family", ["sam", "sam2"])
@pytest.mark.parametrize("multimask, use_box, training", [
    (True, False, True), (False, True, True), (False, False, False), (True, True, False)])
def test_shared_image_decoding_equals_the_libraries_own(family, multimask, use_box, training,
                                                        request):
    backend = copy.deepcopy(request.getfixturevalue(family))
    tm = TrainableModel(backend, "decoder")
    tm.model.train(training)
    rgb = torch.randint(0, 255, (96, 80, 3), generator=torch.Generator().manual_seed(1))
    x, _ = tm.preprocess(rgb.numpy().astype("uint8"))
    with torch.no_grad():
        feats = {k: v.float() for k, v in tm.encode(x).items()}
    coords, labels, boxes = _inputs(tm, 5)
    if use_box:
        coords, labels = coords[:, :1], labels[:, :1]
    else:
        boxes = None
    params = dict(tm.trainable())
    out = {}
    for name, fn in (("shared", lambda: tm.decode(feats, coords, labels, boxes, None,
                                                     multimask)),
                     ("own", lambda: _own(tm, feats, coords, labels, boxes, multimask))):
        for p in params.values():
            p.grad = None
        logits, iou = fn()
        (logits.float().square().mean() + iou.float().sum()).backward()
        out[name] = (logits.detach(), iou.detach(),
                     {k: p.grad.clone() for k, p in params.items() if p.grad is not None})
    (l1, i1, g1), (l2, i2, g2) = out["shared"], out["own"]
    assert l1.shape == l2.shape and i1.shape == i2.shape
    torch.testing.assert_close(l1, l2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(i1, i2, rtol=1e-4, atol=1e-5)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-3, atol=1e-5, msg=k)


@pytest.mark.parametrize("family", ["sam", "sam2"])
def test_a_step_in_chunks_gives_the_gradients_of_one_batch(family, request):
    """Chunks change speed and memory, not the training signal: with box prompts and no
    correction round (nothing random), chunks of 2 and 3 give one batch's loss and
    gradients."""
    import numpy as np

    from napari_segany.finetune import FinetuneSettings, training_planes
    from napari_segany.finetune import train as T

    backend = copy.deepcopy(request.getfixturevalue(family))
    tm = TrainableModel(backend, "decoder")
    (plane,) = training_planes(discs(6, size=96))
    (pd,) = T._embed_planes(tm, [plane], 64, None, None, encode=False)
    idx = np.arange(len(pd))
    assert len(idx) == 6
    out = {}
    for chunk in (6, 2, 3):
        s = FinetuneSettings(n_corrections=0, loss_size=64, decoder_chunk=chunk)
        for p in tm.trainable().values():
            p.grad = None
        loss = T.train_step(tm, pd, idx, 1, np.random.default_rng(0), s, 64, None)  # box
        out[chunk] = (loss, {k: p.grad.clone() for k, p in tm.trainable().items()
                             if p.grad is not None})
    for chunk in (2, 3):
        assert out[chunk][0] == pytest.approx(out[6][0], rel=1e-5)
        for k, g in out[6][1].items():
            torch.testing.assert_close(out[chunk][1][k], g, rtol=1e-3, atol=1e-6, msg=k)
    assert T.chunk_size(FinetuneSettings(), torch.device("cpu")) == T.CPU_CHUNK
    assert T.chunk_size(FinetuneSettings(objects_per_step=12), torch.device("cuda")) == 12



@pytest.mark.parametrize("mode, loop", [("decoder", True), ("lora", True)])
def test_the_encoder_runs_once_per_step_whatever_the_chunks(mode, loop, sam):
    """With the encoder in the loop (a benchmark's frozen encoder, or lora/full training)
    a step encodes its plane once, not once per chunk of objects."""
    import numpy as np

    from napari_segany.finetune import FinetuneSettings, training_planes
    from napari_segany.finetune import train as T

    tm = TrainableModel(copy.deepcopy(sam), mode)
    (plane,) = training_planes(discs(6, size=96))
    (pd,) = T._embed_planes(tm, [plane], 64, None, None, encode=True)
    calls = []
    encode = tm.encode
    tm.encode = lambda x: calls.append(1) or encode(x)
    s = FinetuneSettings(mode=mode, n_corrections=1, loss_size=64, decoder_chunk=2,
                         encoder_in_loop=mode == "decoder")
    loss = T.train_step(tm, pd, np.arange(6), 0, np.random.default_rng(0), s, 64, None)
    assert np.isfinite(loss) and len(calls) == 1
