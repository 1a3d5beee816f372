"""Segment Anything (SAM v1) backend: ViT-B, ViT-L, ViT-H, and a tiny test architecture.

The real architectures are built by segment-anything's own builders; the tiny one is
assembled from segment-anything's own modules at a 256-pixel input with a 2-block encoder,
so tests exercise the real code paths in well under a second per plane.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from ._common import PromptBatch, TorchBackend
from .base import Embedding

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["SAM_ARCHS", "SamBackend", "build_sam_model", "decode_shared_image"]

#: Architectures: the three official encoders and a tiny one for tests and smoke runs.
SAM_ARCHS = ("vit_b", "vit_l", "vit_h", "tiny")


def build_sam_model(arch: str) -> Any:
    """Build an uninitialised (random-weight) segment-anything ``Sam`` model.

    Parameters
    ----------
    arch : {"vit_b", "vit_l", "vit_h", "tiny"}
    """
    if arch not in SAM_ARCHS:
        raise ValueError(f"unknown SAM architecture {arch!r}; choose one of {SAM_ARCHS}")
    if arch != "tiny":
        from segment_anything import sam_model_registry

        return sam_model_registry[arch](checkpoint=None)
    return _build_tiny_sam()


def _build_tiny_sam(img_size: int = 256) -> Any:
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    prompt_dim, patch = 256, 16
    emb = img_size // patch
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch,
            embed_dim=64,
            depth=2,
            num_heads=2,
            mlp_ratio=2,
            out_chans=prompt_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=4,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=256, num_heads=8
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=64,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def decode_shared_image(
    decoder: Any,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
    multimask: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """segment-anything's ``MaskDecoder.forward`` without copying the image per prompt.

    ``MaskDecoder.predict_masks`` repeats the image embedding and its positional encoding
    once per object before its two-way transformer. Without mask inputs the prompt
    encoder's dense embedding is one vector broadcast over the batch, so every copy is the
    same until the first block's image-to-token attention updates them: here the image
    enters the transformer once and torch's broadcasting in ``Attention`` gives each
    object its own copy at that point. The first block's image-side projections then run
    once instead of once per object (a quarter of the decoder's time for 32 boxes on a
    1024 x 1024 ViT-B plane); the results are the same numbers (the tests compare them
    with ``SamPredictor.predict_torch`` bit for bit). Mask inputs differ per object and
    take segment-anything's own path.
    """
    import torch

    b = sparse.shape[0]
    if image_embeddings.shape[0] != 1 or b == 1 or dense.stride(0) != 0:
        return decoder(image_embeddings=image_embeddings, image_pe=image_pe,
                       sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                       multimask_output=multimask)
    d = decoder
    out_tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight], dim=0)
    tokens = torch.cat((out_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
    src = image_embeddings + dense[:1]
    _, c, h, w = src.shape
    hs, src = d.transformer(src, image_pe, tokens)
    if src.shape[0] != b:  # pragma: no cover - a transformer that never mixes in the tokens
        src = src.expand(b, -1, -1)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1 : (1 + d.num_mask_tokens), :]
    up = d.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
    hyper_in = torch.stack(
        [d.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
         for i in range(d.num_mask_tokens)], dim=1)
    _, c, h, w = up.shape
    masks = (hyper_in @ up.view(b, c, h * w)).view(b, -1, h, w)
    iou_pred = d.iou_prediction_head(iou_token_out)
    sl = slice(1, None) if multimask else slice(0, 1)
    return masks[:, sl, :, :], iou_pred[:, sl]


def set_features(predictor: Any, embedding: Embedding) -> None:
    """Put an embedding into a ``SamPredictor``, as its ``set_image`` would have."""
    predictor.reset_image()
    predictor.features = embedding.tensors["image_embed"]
    predictor.original_size = tuple(embedding.original_size)
    predictor.input_size = tuple(embedding.input_size)
    predictor.is_image_set = True


class SamBackend(TorchBackend):
    """A SAM model served through segment-anything's ``SamPredictor`` transforms.

    Embedding reproduces ``SamPredictor.set_image`` exactly (resize longest side, normalise,
    pad) but batches planes; decoding is ``SamPredictor.predict_torch`` with the image
    embedding shared by the objects of a batch (:func:`decode_shared_image`).
    """

    family = "sam"
    capabilities = frozenset({"automatic"})

    def __init__(self, model: Any, **kwargs: Any) -> None:
        from segment_anything import SamPredictor

        model = model.to(kwargs["device"]).eval()
        super().__init__(model, image_size=model.image_encoder.img_size, **kwargs)
        self.predictor = SamPredictor(model)

    def _feature_keys(self) -> tuple[str, ...]:
        return ("image_embed",)

    def _embed_batch(self, images: list[np.ndarray]) -> list[Embedding]:
        import torch

        tf = self.predictor.transform
        inputs, sizes = [], []
        for im in images:
            resized = tf.apply_image(im)
            t = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()
            sizes.append((tuple(im.shape[:2]), tuple(t.shape[-2:])))
            inputs.append(self.model.preprocess(t[None]))
        feats = self.model.image_encoder(torch.cat(inputs))
        return [
            Embedding({"image_embed": feats[i : i + 1]}, orig, inp, self.model_id)
            for i, (orig, inp) in enumerate(sizes)
        ]

    def _decode(
        self, embedding: Embedding, batch: PromptBatch, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.predictor
        set_features(p, embedding)
        try:
            coords = labels = boxes = masks = None
            if batch.coords is not None:
                coords = p.transform.apply_coords_torch(
                    self._tensor(batch.coords), embedding.original_size
                )
                labels = self._tensor(batch.labels, integer=True)
            if batch.boxes is not None:
                boxes = p.transform.apply_boxes_torch(
                    self._tensor(batch.boxes), embedding.original_size
                )
            if batch.masks is not None:
                masks = self._tensor(batch.masks)
            out_masks, scores, logits = self._predict_torch(
                coords, labels, boxes, masks, multimask, embedding
            )
        finally:
            p.reset_image()
        return (
            out_masks.cpu().numpy(),
            scores.float().cpu().numpy(),
            logits.float().cpu().numpy(),
        )

    def _predict_torch(self, coords, labels, boxes, masks, multimask, embedding):
        """``SamPredictor.predict_torch`` with the decoder of :func:`decode_shared_image`."""
        import torch

        m = self.model
        points = (coords, labels) if coords is not None else None
        with torch.no_grad():
            sparse, dense = m.prompt_encoder(points=points, boxes=boxes, masks=masks)
            low, iou = decode_shared_image(
                m.mask_decoder, self.predictor.features, m.prompt_encoder.get_dense_pe(),
                sparse, dense, multimask)
            full = m.postprocess_masks(low, embedding.input_size, embedding.original_size)
        return full > m.mask_threshold, iou, low

    def _tensor(self, arr: np.ndarray, *, integer: bool = False) -> torch.Tensor:
        import torch

        dtype = torch.int64 if integer else torch.float32
        return torch.as_tensor(arr, dtype=dtype, device=self.device)
