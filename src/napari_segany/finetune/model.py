"""The trainable view of a SAM or SAM2 backend: which weights train, and a differentiable decoder.

The backends decode under ``torch.inference_mode`` through segment-anything's and sam2's
predictors; training needs the same computation with gradients. :class:`TrainableModel`
calls the same modules the predictors call, in the same frame:

* the **input frame** is the model's square input canvas of ``image_size`` pixels: SAM
  resizes the longest side and pads bottom/right (``input_size`` is the unpadded part),
  SAM2 stretches the plane to the whole square. Prompts are ``(x, y)`` pixels of that
  frame, as the prompt encoders take them;
* SAM: ``prompt_encoder`` then ``mask_decoder`` (``image_pe`` from the prompt encoder);
  SAM2: ``sam_prompt_encoder`` (a box is its two corners with labels 2 and 3, before the
  points) then ``sam_mask_decoder`` with the two high-resolution feature maps.

What trains (``mode``):

* ``"decoder"``: the prompt encoder and the mask decoder. SAM2's ``conv_s0``/``conv_s1``
  (stored in the mask decoder but applied to the backbone features when a plane is
  embedded, so part of every cached embedding) and ``no_mem_embed`` stay frozen with the
  image encoder: cached embeddings stay valid, and the image-encoder weights are
  bit-identical after training;
* ``"lora"``: LoRA adapters (the ``peft`` library) on the ``qkv`` projections of the
  image encoder's attention blocks, plus the decoder; the encoder's own weights are frozen;
* ``"full"``: every weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.sam import decode_shared_image
from ..engine.sam2 import LeanImageEncoder

__all__ = ["MODES", "TrainableModel", "merge_lora", "sam2_decode_shared_image"]

MODES = ("decoder", "lora", "full")



class TrainableModel:
    """A backend's torch model prepared for training in one of :data:`MODES`.

    Parameters
    ----------
    backend : SamBackend or Sam2Backend
        The model to train (its ``model`` is trained in place).
    mode : {"decoder", "lora", "full"}
    lora_rank : int
        Rank of the LoRA adapters (``mode="lora"``).
    """

    def __init__(self, backend: Any, mode: str, *, lora_rank: int = 4) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        family = getattr(backend, "family", None)
        if family not in ("sam", "sam2"):
            raise ValueError(f"fine-tuning supports SAM and SAM2 models, not {family!r}")
        self.backend, self.model, self.family, self.mode = backend, backend.model, family, mode
        self.image_size = int(backend.image_size)
        self.lr_size = self.image_size // 4
        self.device = backend.device
        if mode == "lora":
            self._add_lora(int(lora_rank))
        for name, p in self.model.named_parameters():
            p.requires_grad_(self._trains(name))

    # -- parameters -------------------------------------------------------------------------
    def is_embedding_weight(self, name: str) -> bool:
        """Whether a parameter takes part in computing a plane's (cached) embedding."""
        return name.startswith(self.backend.embedding_parameters)

    def _trains(self, name: str) -> bool:
        if self.mode == "full":
            return True
        if self.mode == "lora" and "lora_" in name:
            return True
        if self.is_embedding_weight(name):
            return False
        dec = ("prompt_encoder.", "mask_decoder.") if self.family == "sam" else (
            "sam_prompt_encoder.", "sam_mask_decoder.")
        return name.startswith(dec)

    def trainable(self) -> dict[str, Any]:
        """Name -> parameter of every weight that trains."""
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def _add_lora(self, rank: int) -> None:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as exc:
            raise ValueError("mode 'lora' needs the peft library: pip install "
                             "'napari-segany[finetune]' (or pip install peft)") from exc

        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=["qkv"], lora_dropout=0.0,
                            bias="none")
        inject_adapter_in_model(config, self.model.image_encoder)

    # -- encoder ----------------------------------------------------------------------------
    def preprocess(self, rgb: np.ndarray) -> tuple[Any, tuple[int, int]]:
        """``(1, 3, S, S)`` model input of an ``(H, W, 3)`` uint8 plane, and its input size."""
        import torch

        if self.family == "sam":
            tf = self.backend.predictor.transform
            resized = tf.apply_image(rgb)
            t = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()
            return self.model.preprocess(t[None]), (int(t.shape[-2]), int(t.shape[-1]))
        batch = self.backend.predictor._transforms.forward_batch([rgb]).to(self.device)
        return batch, (self.image_size, self.image_size)

    def encode(self, x: Any) -> dict[str, Any]:
        """Features of a preprocessed batch (with gradients where weights train)."""
        if self.family == "sam":
            return {"image_embed": self.model.image_encoder(x)}
        hr0, hr1, emb = LeanImageEncoder(self.model)(x)
        return {"image_embed": emb, "high_res_feats_0": hr0, "high_res_feats_1": hr1}

    # -- decoder ----------------------------------------------------------------------------
    def decode(self, feats: dict[str, Any], coords: Any, labels: Any, boxes: Any,
               mask_input: Any, multimask: bool) -> tuple[Any, Any]:
        """Low-resolution logits ``(B, M, lr, lr)`` and predicted IoUs ``(B, M)``.

        ``coords`` ``(B, N, 2)`` float and ``labels`` ``(B, N)`` int (or None), ``boxes``
        ``(B, 4)`` XYXY (or None), ``mask_input`` ``(B, 1, lr, lr)`` logits (or None), all
        in the input frame.
        """
        import torch

        points = None if coords is None else (coords, labels)
        if self.family == "sam":
            pe = self.model.prompt_encoder
            sparse, dense = pe(points=points, boxes=boxes, masks=mask_input)
            # the image enters the decoder once, not once per object (same numbers as
            # segment-anything's MaskDecoder; mask inputs take its own path)
            return decode_shared_image(self.model.mask_decoder, feats["image_embed"],
                                       pe.get_dense_pe(), sparse, dense, multimask)
        if boxes is not None:
            b = boxes.reshape(-1, 2, 2)
            bl = torch.tensor([[2, 3]], dtype=torch.int, device=b.device).repeat(b.shape[0], 1)
            points = (b, bl) if points is None else (
                torch.cat([b, points[0]], 1), torch.cat([bl, points[1].int()], 1))
        pe = self.model.sam_prompt_encoder
        sparse, dense = pe(points=points, boxes=None, masks=mask_input)
        n = sparse.shape[0]
        high_res = [feats["high_res_feats_0"], feats["high_res_feats_1"]]
        dec = self.model.sam_mask_decoder
        if n > 1 and feats["image_embed"].shape[0] == 1 and dense.stride(0) == 0:
            return sam2_decode_shared_image(dec, feats["image_embed"], pe.get_dense_pe(),
                                            sparse, dense, multimask, high_res)
        logits, iou, _, _ = dec(
            image_embeddings=feats["image_embed"], image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask, repeat_image=n > 1, high_res_features=high_res)
        return logits, iou


def sam2_decode_shared_image(decoder: Any, image_embeddings: Any, image_pe: Any, sparse: Any,
                             dense: Any, multimask: bool, high_res: list[Any]
                             ) -> tuple[Any, Any]:
    """sam2's ``MaskDecoder.forward`` (masks and IoUs) without copying the image per object.

    sam2 repeats the image embedding and its positional encoding once per object before the
    two-way transformer. Without mask inputs the dense prompt embedding is one vector
    broadcast over the batch, so every copy is the same until the first block's
    image-to-token attention: here the image enters the transformer once and broadcasting
    (``scaled_dot_product_attention`` and the additions) gives each object its own copy at
    that point, so the first block's image-side projections run once per batch. Up to
    floating-point rounding these are sam2's numbers (tested against its decoder); used for
    training, where a step decodes many objects of one plane forward and backward.
    """
    import torch

    d, b = decoder, sparse.shape[0]
    s = 1 if d.pred_obj_scores else 0
    weights = ([d.obj_score_token.weight] if s else []) + [d.iou_token.weight,
                                                          d.mask_tokens.weight]
    tokens = torch.cat((torch.cat(weights, 0).unsqueeze(0).expand(b, -1, -1), sparse), 1)
    src = image_embeddings + dense[:1]
    _, c, h, w = src.shape
    hs, src = d.transformer(src, image_pe, tokens)
    if src.shape[0] != b:  # pragma: no cover - a transformer that never mixes in the tokens
        src = src.expand(b, -1, -1)
    src = src.transpose(1, 2).reshape(b, c, h, w)
    if d.use_high_res_features:
        dc1, ln1, act1, dc2, act2 = d.output_upscaling
        feat_s0, feat_s1 = high_res
        up = act2(dc2(act1(ln1(dc1(src) + feat_s1))) + feat_s0)
    else:
        up = d.output_upscaling(src)
    mask_tokens = hs[:, s + 1: s + 1 + d.num_mask_tokens, :]
    hyper = torch.stack([d.output_hypernetworks_mlps[i](mask_tokens[:, i, :])
                         for i in range(d.num_mask_tokens)], dim=1)
    _, c, h, w = up.shape
    masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
    iou = d.iou_prediction_head(hs[:, s, :])
    if multimask:
        return masks[:, 1:], iou[:, 1:]
    if d.dynamic_multimask_via_stability and not d.training:
        return d._dynamic_multimask_via_stability(masks, iou)
    return masks[:, 0:1], iou[:, 0:1]


def merge_lora(model: Any) -> int:
    """Fold every peft LoRA layer of ``model`` into its base layer (in place).

    Returns the number of layers merged; the model's state dict is then the official layout.
    """
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
            merged += 1
    return merged
