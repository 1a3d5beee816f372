"""Objects tracked together (engine.sam2_track, engine.sam2_kernels) against SAM2's own
``SAM2VideoPredictor``, which tracks each object on its own, on the very same model.

The tiny random-weight model is made decisive for these comparisons (objects always
"appear", one mask output per frame): random weights leave SAM2's discrete choices (which
of three masks, whether the object is there) to near-ties that any rounding flips, while
the comparison is about the continuous computation.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_segany.engine import load_model
from napari_segany.engine.sam2_kernels import is_batch_shared, lean_tracking
from napari_segany.engine.sam2_video import Sam2Propagator
from napari_segany.intensity import Normalizer
from napari_segany.prompts import ObjectPrompt
from napari_segany.samples import blob_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 8
POINTS = [[60.0, 60.0], [30.0, 30.0], [90.0, 95.0]]


def _decisive(backend):
    m = backend.model
    head = m.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.bias += 20.0  # every object appears on every frame
    m.multimask_output_for_tracking = False
    m.multimask_output_in_sam = False
    m.sam_mask_decoder.dynamic_multimask_via_stability = False
    return backend


@pytest.fixture(scope="module")
def planes():
    vol = blob_volume(depth=N)
    norm = Normalizer.fit(vol.image)
    return [norm(np.asarray(vol.image[i])) for i in range(N)]


@pytest.fixture(scope="module")
def models():
    return {p: _decisive(load_model("sam2_tiny", random_weights=True, device="cpu",
                                    precision=p)) for p in ("fp32", "bf16")}


def ours(backend, planes, prompts):
    """Logits ``{frame: (n_obj, H, W)}`` of napari-segany's propagation from frame 0."""
    prop = Sam2Propagator(backend, n_frames=len(planes), frame_size=planes[0].shape[:2],
                          get_embedding=lambda i: backend.embed(planes[i]))
    prop.batch_objects = True  # the batched path (off by default)
    for frame, oid, prompt in prompts:
        prop.add_prompt(frame, oid, prompt)
    out = {f: m[:, 0].float().numpy() for f, _ids, m in prop._run(0, len(planes), False)}
    return out, prop.last_batches


def peer(backend, planes, prompts, tmp_path, *, bf16: bool = False):
    """The same with ``SAM2VideoPredictor.propagate_in_video`` on the same model and frames."""
    model = backend.model
    for i, p in enumerate(planes):
        Image.fromarray(p).save(tmp_path / f"{i:05d}.jpg")
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        state = model.init_state(video_path=str(tmp_path))
        # the frames exactly as napari-segany feeds them (the JPEGs only satisfy init_state)
        state["images"] = backend.predictor._transforms.forward_batch(planes)
        state["cached_features"] = {}
        for frame, oid, p in prompts:
            model.add_new_points_or_box(state, frame, oid, points=p.points.astype(np.float32),
                                        labels=p.labels.astype(np.int32))
        return {f: m[:, 0].float().numpy() for f, _ids, m in model.propagate_in_video(state)}


def _prompts(frames=(0, 0, 0)):
    return [(f, i + 1, ObjectPrompt(points=[pt], labels=[1]))
            for i, (f, pt) in enumerate(zip(frames, POINTS, strict=True))]


def _iou(a, b):
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else float(np.logical_and(a, b).sum() / u)


def test_float32_equals_sam2_video_predictor(models, planes, tmp_path):
    mine, batches = ours(models["fp32"], planes, _prompts())
    ref = peer(models["fp32"], planes, _prompts(), tmp_path)
    assert batches == [3] * (N - 1)  # three objects, one batch per tracked frame
    assert sorted(mine) == sorted(ref) == list(range(N))
    for f in range(N):
        np.testing.assert_allclose(mine[f], ref[f], atol=1e-4, rtol=0)
        np.testing.assert_array_equal(mine[f] > 0, ref[f] > 0)


def test_objects_prompted_on_different_planes(models, planes, tmp_path):
    prompts = _prompts(frames=(0, 0, 2))
    mine, batches = ours(models["fp32"], planes, prompts)
    ref = peer(models["fp32"], planes, prompts, tmp_path)
    # frame 0: object 3 (prompted on 2) is tracked alone, from its memory of frame 2, as
    # SAM2 does; frame 1: objects 1 and 2 together, object 3 alone; frame 2: objects 1 and 2
    # (object 3 keeps its prompted mask); from frame 3 on, two layouts: two batches a frame
    assert batches[:6] == [1, 2, 1, 2, 2, 1] and all(b in (1, 2) for b in batches)
    for f in range(N):
        np.testing.assert_allclose(mine[f], ref[f], atol=1e-4, rtol=0)


@pytest.mark.parametrize("peer_bf16", [False, True])
def test_bf16_agrees_with_float32_and_with_the_peer_under_autocast(models, planes, tmp_path,
                                                                   peer_bf16):
    mine, _ = ours(models["bf16"], planes, _prompts())
    ref = peer(models["fp32"], planes, _prompts(), tmp_path, bf16=peer_bf16)
    for f in range(N):
        for k in range(len(POINTS)):
            a, b = mine[f][k], ref[f][k]
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999, (f, k)
            assert _iou(a > 0, b > 0) > 0.97, (f, k)


def test_lean_kernels_equal_sam2_modules(models):
    model = models["fp32"].model
    torch.manual_seed(0)
    hw, b, c, mem_tokens, ptr_tokens = 16 * 16, 3, 256, 2 * 16 * 16 + 8, 8
    curr = torch.randn(hw, 1, c).expand(-1, b, -1)  # one frame shared by three objects
    pos = torch.randn(hw, 1, c).expand(-1, b, -1)
    memory, memory_pos = torch.randn(mem_tokens, b, 64), torch.randn(mem_tokens, b, 64)
    pix = torch.randn(1, c, 16, 16).expand(b, -1, -1, -1)
    masks = torch.rand(b, 1, 256, 256)
    with torch.inference_mode():
        ref_attn = model.memory_attention(curr=[curr], curr_pos=[pos], memory=memory,
                                          memory_pos=memory_pos, num_obj_ptr_tokens=ptr_tokens)
        ref_attn1 = model.memory_attention(curr=[curr[:, :1].contiguous()],
                                           curr_pos=[pos[:, :1].contiguous()],
                                           memory=memory[:, :1], memory_pos=memory_pos[:, :1],
                                           num_obj_ptr_tokens=ptr_tokens)
        ref_enc = model.memory_encoder(pix, masks, skip_mask_sigmoid=True)
        with lean_tracking(model) as replaced:
            attn = model.memory_attention(curr=[curr], curr_pos=[pos], memory=memory,
                                          memory_pos=memory_pos, num_obj_ptr_tokens=ptr_tokens)
            attn1 = model.memory_attention(curr=[curr[:, :1].contiguous()],
                                           curr_pos=[pos[:, :1].contiguous()],
                                           memory=memory[:, :1], memory_pos=memory_pos[:, :1],
                                           num_obj_ptr_tokens=ptr_tokens)
            enc = model.memory_encoder(pix, masks, skip_mask_sigmoid=True)
    # memory attention, its cross-attention layer(s) and the memory encoder
    assert replaced == 2 + len(model.memory_attention.layers)
    torch.testing.assert_close(attn, ref_attn, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn1, ref_attn1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enc["vision_features"], ref_enc["vision_features"],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(enc["vision_pos_enc"][0], ref_enc["vision_pos_enc"][0])
    # sam2's own modules are back after the block
    assert all("forward" not in vars(m) for m in model.modules())


def test_replaced_forward_is_left_alone(models):
    model = models["fp32"].model
    enc = model.memory_encoder
    own = enc.forward
    enc.forward = own  # e.g. what torch.compile does to SAM2VideoPredictorVOS's modules
    try:
        with lean_tracking(model) as replaced:
            assert vars(enc)["forward"] is own
        assert replaced == 1 + len(model.memory_attention.layers)
        assert vars(enc)["forward"] is own
    finally:
        del enc.forward


def test_is_batch_shared():
    x = torch.zeros(4, 1, 3)
    assert is_batch_shared(x.expand(-1, 5, -1), 1)
    assert not is_batch_shared(x, 1)  # one object: nothing to share
    assert not is_batch_shared(torch.zeros(4, 5, 3), 1)


def test_jpeg_helper_is_not_what_is_compared(planes, tmp_path):
    """The peer's frames are replaced by napari-segany's input tensors (not the JPEGs)."""
    Image.fromarray(planes[0]).save(tmp_path / "00000.jpg")
    assert Path(tmp_path / "00000.jpg").stat().st_size > 0
