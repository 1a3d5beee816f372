"""Cheaper forms of SAM2's memory attention and memory encoder for tracking many objects.

SAM2 tracks each object with its own memory: every frame, each object's memory attention
attends from the frame's 64x64 tokens to the object's memories (up to 7 frames of 64x64
tokens plus object pointers). The forms here compute the same functions with less work;
they differ from sam2's own modules by float rounding only (tested against them):

* **Values in the memory's own width.** The cross-attention projects memories of 64
  channels to values of 256 (``v = W_v m + b_v``) and multiplies the attention weights
  ``P`` with them. Since the rows of ``P`` sum to one, ``P v = (P m) W_v^T + b_v``: the
  weights multiply the 64-channel memories and the product is projected afterwards, a
  quarter of the multiply-adds of ``P v``.
* **Shared work once per frame.** When objects are tracked together (a batch of objects
  over one frame, :mod:`.sam2_track`), their image features are one tensor expanded over
  the batch. The first memory-attention layer's self-attention and the memory encoder's
  projection of the image features depend on those features alone, so they are computed
  once for the frame and broadcast to every object.

:func:`lean_tracking` installs these forms on a model for the duration of a block and
restores sam2's modules afterwards; modules of other classes (a SAM2 variant) and modules
whose ``forward`` was already replaced (e.g. by ``torch.compile``) are left alone.
"""

from __future__ import annotations

import contextlib
import math
import types
from collections.abc import Iterator
from typing import Any

__all__ = ["lean_tracking", "is_batch_shared"]


def is_batch_shared(x: Any, dim: int) -> bool:
    """Whether ``x`` repeats one slice along ``dim`` (an ``expand``-ed tensor)."""
    return x.shape[dim] > 1 and x.stride(dim) == 0


def _folded_cross_attention(self: Any, q: Any, k: Any, v: Any,
                            num_k_exclude_rope: int = 0) -> Any:
    """``RoPEAttention.forward`` with the value projection applied after the attention."""
    import torch
    import torch.nn.functional as F
    from sam2.modeling.position_encoding import apply_rotary_enc

    heads = self.num_heads
    q = self._separate_heads(self.q_proj(q), heads)
    k = self._separate_heads(self.k_proj(k), heads)
    w = h = math.sqrt(q.shape[-2])
    self.freqs_cis = self.freqs_cis.to(q.device)
    if self.freqs_cis.shape[0] != q.shape[-2]:
        self.freqs_cis = self.compute_cis(end_x=w, end_y=h).to(q.device)
    if q.shape[-2] != k.shape[-2]:
        assert self.rope_k_repeat
    num_k_rope = k.size(-2) - num_k_exclude_rope
    q, k[:, :, :num_k_rope] = apply_rotary_enc(
        q, k[:, :, :num_k_rope], freqs_cis=self.freqs_cis, repeat_freqs_k=self.rope_k_repeat)
    mem = v.unsqueeze(1).expand(-1, heads, -1, -1)  # (B, heads, Nk, kv_in_dim)
    # the default scale is 1 / sqrt(q's width), the same as with 256-wide values
    pm = F.scaled_dot_product_attention(q, k, mem.to(q.dtype))  # (B, heads, Nq, kv_in_dim)
    dh = self.internal_dim // heads
    weight = self.v_proj.weight.view(heads, dh, -1)  # per head (dh, kv_in_dim)
    out = torch.matmul(pm, weight.transpose(1, 2).to(pm.dtype))
    if self.v_proj.bias is not None:
        out = out + self.v_proj.bias.view(1, heads, 1, dh).to(out.dtype)
    return self.out_proj(self._recombine_heads(out))


def _memory_attention(self: Any, curr: Any, memory: Any, curr_pos: Any = None,
                      memory_pos: Any = None, num_obj_ptr_tokens: int = 0) -> Any:
    """``MemoryAttention.forward``; the first layer's self-attention once for shared frames."""
    from sam2.modeling.sam.transformer import RoPEAttention

    if isinstance(curr, list):
        assert isinstance(curr_pos, list) and len(curr) == len(curr_pos) == 1
        curr, curr_pos = curr[0], curr_pos[0]
    assert curr.shape[1] == memory.shape[1], "Batch size must be the same for curr and memory"
    batch = curr.shape[1]
    shared = (is_batch_shared(curr, 1) and curr_pos is not None
              and (curr_pos.shape[1] == 1 or is_batch_shared(curr_pos, 1)))
    if shared:  # one frame for every object: the input and the first self-attention once
        curr, curr_pos = curr[:, :1], curr_pos[:, :1]
    output = curr
    if self.pos_enc_at_input and curr_pos is not None:
        output = output + 0.1 * curr_pos
    if self.batch_first:
        output, curr_pos = output.transpose(0, 1), curr_pos.transpose(0, 1)
        memory, memory_pos = memory.transpose(0, 1), memory_pos.transpose(0, 1)
    axis = 0 if self.batch_first else 1
    for i, layer in enumerate(self.layers):
        kwds = ({"num_k_exclude_rope": num_obj_ptr_tokens}
                if isinstance(layer.cross_attn_image, RoPEAttention) else {})
        if shared and i == 0:
            tgt = layer._forward_sa(output, curr_pos)
            shape = list(tgt.shape)
            shape[axis] = batch
            tgt, curr_pos = tgt.expand(*shape), curr_pos.expand(*shape)
            tgt = layer._forward_ca(tgt, memory, curr_pos, memory_pos, **kwds)
            tgt2 = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(tgt)))))
            output = tgt + layer.dropout3(tgt2)
        else:
            output = layer(tgt=output, memory=memory, pos=memory_pos, query_pos=curr_pos, **kwds)
    normed = self.norm(output)
    if self.batch_first:
        normed = normed.transpose(0, 1)
    return normed


def _memory_encoder(self: Any, pix_feat: Any, masks: Any, skip_mask_sigmoid: bool = False
                    ) -> dict[str, Any]:
    """``MemoryEncoder.forward``; the image features projected once for shared frames."""
    import torch.nn.functional as F

    if not skip_mask_sigmoid:
        masks = F.sigmoid(masks)
    masks = self.mask_downsampler(masks)
    pix_feat = pix_feat.to(masks.device)
    if is_batch_shared(pix_feat, 0):
        pix_feat = pix_feat[:1]  # broadcast over the objects by the addition below
    x = self.pix_feat_proj(pix_feat) + masks
    x = self.out_proj(self.fuser(x))
    pos = self.position_encoding(x).to(x.dtype)
    return {"vision_features": x, "vision_pos_enc": [pos]}


def _replacements(model: Any) -> list[tuple[Any, Any]]:
    from sam2.modeling.memory_attention import MemoryAttention
    from sam2.modeling.memory_encoder import MemoryEncoder
    from sam2.modeling.sam.transformer import RoPEAttention

    out: list[tuple[Any, Any]] = []
    attn = getattr(model, "memory_attention", None)
    if type(attn) is MemoryAttention:
        out.append((attn, _memory_attention))
        for layer in attn.layers:
            ca = getattr(layer, "cross_attn_image", None)
            if type(ca) is RoPEAttention and ca.kv_in_dim < ca.internal_dim // ca.num_heads:
                out.append((ca, _folded_cross_attention))
    enc = getattr(model, "memory_encoder", None)
    if type(enc) is MemoryEncoder:
        out.append((enc, _memory_encoder))
    return [(m, f) for m, f in out if "forward" not in vars(m)]


@contextlib.contextmanager
def lean_tracking(model: Any) -> Iterator[int]:
    """Run SAM2's memory attention and memory encoder in the forms above within the block.

    Yields the number of modules replaced (0 for a SAM2 variant of other module classes).
    """
    patched = _replacements(model)
    for module, fn in patched:
        module.forward = types.MethodType(fn, module)
    try:
        yield len(patched)
    finally:
        for module, _ in patched:
            vars(module).pop("forward", None)
