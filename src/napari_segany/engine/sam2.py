"""SAM2 / SAM2.1 backend: Hiera tiny, small, base+, large, and a tiny test architecture.

Models are built by sam2's own hydra builder from the configs shipped in the sam2 package.
The model class is sam2's ``SAM2VideoPredictor`` (a ``SAM2Base``), so one loaded model serves
both single-plane prediction (through ``SAM2ImagePredictor``) and memory propagation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import PromptBatch, TorchBackend
from .base import Embedding

__all__ = [
    "SAM2_ARCHS",
    "LeanImageEncoder",
    "Sam2Backend",
    "build_sam2_model",
    "TINY_SAM2_OVERRIDES",
]

#: Architecture name -> sam2 config file.
SAM2_ARCHS = {
    "sam2_hiera_t": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_s": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_b+": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_l": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
}

#: Hydra overrides that shrink SAM2.1-tiny to a 256-pixel input and stages of 1, 1, 2 and 1 blocks.
TINY_SAM2_OVERRIDES = (
    "++model.image_size=256",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.self_attention.feat_sizes=[16,16]",
    "++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]",
)


def build_sam2_model(arch: str, *, device: Any = "cpu") -> Any:
    """Build an uninitialised (random-weight) SAM2 model with sam2's own builder.

    Parameters
    ----------
    arch : str
        A key of :data:`SAM2_ARCHS`.
    device : str or torch.device
    """
    if arch not in SAM2_ARCHS:
        raise ValueError(
            f"unknown SAM2 architecture {arch!r}; choose one of {sorted(SAM2_ARCHS)}"
        )
    import sam2  # noqa: F401  (registers sam2's configs with hydra)
    from sam2.build_sam import build_sam2_video_predictor

    overrides = list(TINY_SAM2_OVERRIDES) if arch == "tiny" else []
    return build_sam2_video_predictor(
        SAM2_ARCHS[arch], ckpt_path=None, device=str(device), hydra_overrides_extra=overrides
    )


class LeanImageEncoder:
    """SAM2's image encoder, computing only what single-plane prompting uses.

    ``SAM2ImagePredictor.set_image`` runs the full backbone: the Hiera trunk (re-interpolating
    its position embedding on every call), the FPN neck with sine position encodings of all
    four levels (a 64 MiB tensor at the finest level), then drops the coarsest level and every
    position encoding. Prompting needs only the three feature maps. This computes them with
    the same modules and the same operations in the same order, so the features are equal to
    the predictor's bit for bit, while skipping the position encodings of the neck and
    reusing the trunk's interpolated position embedding between calls (recomputed when the
    weights, the grid size, the dtype or the autocast state change).

    ``supported`` is False for a trunk or neck of another class (a third-party SAM2 variant);
    the backend then uses the predictor's own path.
    """

    def __init__(self, model: Any) -> None:
        from sam2.modeling.backbones.hieradet import Hiera
        from sam2.modeling.backbones.image_encoder import FpnNeck

        self.model = model
        enc = model.image_encoder
        self.supported = (
            type(enc.trunk) is Hiera
            and type(enc.neck) is FpnNeck
            and all(hasattr(enc.trunk, a) for a in (
                "_get_pos_embed", "patch_embed", "blocks", "stage_ends", "return_interm_layers",
                "pos_embed", "pos_embed_window"))
            and all(hasattr(enc.neck, a) for a in (
                "convs", "fpn_top_down_levels", "fpn_interp_model", "fuse_type"))
            and getattr(model, "use_high_res_features_in_sam", False)
            and getattr(model, "num_feature_levels", 0) == 3
            and len(enc.neck.convs) - getattr(enc, "scalp", 0) == 3
        )
        self._pos_entry: tuple[tuple, Any] | None = None  # (key, embedding), replaced whole

    def _trunk_pos_embed(self, hw: tuple[int, int], x: Any) -> Any:
        import torch

        trunk = self.model.image_encoder.trunk
        dev = x.device.type
        key = (tuple(hw), x.device, x.dtype, torch.is_autocast_enabled(dev),
               torch.get_autocast_dtype(dev), trunk.pos_embed._version,
               trunk.pos_embed_window._version, trunk.pos_embed.data_ptr(),
               trunk.pos_embed_window.data_ptr())
        entry = self._pos_entry  # one read: a concurrent update cannot pair another key
        if entry is None or entry[0] != key:
            entry = (key, trunk._get_pos_embed(hw))
            self._pos_entry = entry
        return entry[1]

    def _trunk(self, x: Any) -> list[Any]:
        trunk = self.model.image_encoder.trunk
        x = trunk.patch_embed(x)  # (B, H, W, C)
        x = x + self._trunk_pos_embed(x.shape[1:3], x)
        outputs = []
        last = trunk.stage_ends[-1]
        for i, blk in enumerate(trunk.blocks):
            x = blk(x)
            if i == last or (i in trunk.stage_ends and trunk.return_interm_layers):
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs

    def _neck(self, xs: list[Any]) -> list[Any]:
        """The FPN's top-down pass, without position encodings."""
        import torch
        import torch.nn.functional as F

        neck = self.model.image_encoder.neck
        n = len(neck.convs) - 1
        out: list[Any] = [None] * (n + 1)
        prev = None
        for i in range(n, -1, -1):  # coarse to fine
            lateral = neck.convs[n - i](xs[i])
            if i in neck.fpn_top_down_levels and prev is not None:
                up = F.interpolate(
                    prev.to(dtype=torch.float32), scale_factor=2.0, mode=neck.fpn_interp_model,
                    align_corners=None if neck.fpn_interp_model == "nearest" else False,
                    antialias=False)
                prev = lateral + up
                if neck.fuse_type == "avg":
                    prev /= 2
            else:
                prev = lateral
            out[i] = prev
        return out

    def __call__(self, batch: Any) -> tuple[Any, Any, Any]:
        """``(high_res_feats_0, high_res_feats_1, image_embed)`` of a (B, 3, S, S) batch."""
        model = self.model
        enc = model.image_encoder
        fpn = self._neck(self._trunk(batch))
        if enc.scalp > 0:
            fpn = fpn[: -enc.scalp]
        hr0 = model.sam_mask_decoder.conv_s0(fpn[0])
        hr1 = model.sam_mask_decoder.conv_s1(fpn[1])
        emb = fpn[2]
        if model.directly_add_no_mem_embed:
            emb = emb + model.no_mem_embed.reshape(1, -1, 1, 1)
        return hr0, hr1, emb


def set_features(predictor: Any, embedding: Embedding) -> None:
    """Put an embedding into a ``SAM2ImagePredictor``, as its ``set_image`` would have."""
    predictor.reset_predictor()
    t = embedding.tensors
    predictor._features = {"image_embed": t["image_embed"],
                           "high_res_feats": [t["high_res_feats_0"], t["high_res_feats_1"]]}
    predictor._orig_hw = [tuple(embedding.original_size)]
    predictor._is_image_set, predictor._is_batch = True, False


class Sam2Backend(TorchBackend):
    """A SAM2 model served through sam2's ``SAM2ImagePredictor``."""

    family = "sam2"
    capabilities = frozenset({"automatic", "memory"})
    _KEYS = ("image_embed", "high_res_feats_0", "high_res_feats_1")
    #: The high-resolution features pass the mask decoder's two input convolutions and the
    #: lowest-resolution map gets ``no_mem_embed`` added: both belong to the embedding.
    embedding_parameters = ("image_encoder.", "sam_mask_decoder.conv_s0.",
                            "sam_mask_decoder.conv_s1.", "no_mem_embed")

    def __init__(self, model: Any, **kwargs: Any) -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        model = model.to(kwargs["device"]).eval()
        super().__init__(model, image_size=model.image_size, **kwargs)
        self.predictor = SAM2ImagePredictor(model)
        s = self.image_size
        # The predictor assumes a 1024 input; its feature sizes must follow the model's.
        self.predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        self.encoder = LeanImageEncoder(model)

    def _feature_keys(self) -> tuple[str, ...]:
        return self._KEYS

    def _embed_batch(self, images: list[np.ndarray]) -> list[Embedding]:
        if not self.encoder.supported:  # an unknown encoder: the predictor's own path
            return self._embed_batch_predictor(images)
        p = self.predictor
        batch = p._transforms.forward_batch(images).to(self.device)
        hr0, hr1, emb = self.encoder(batch)
        return self._embeddings(images, emb, hr0, hr1)

    def _embed_batch_predictor(self, images: list[np.ndarray]) -> list[Embedding]:
        p = self.predictor
        p.set_image_batch(images)
        try:
            hr0, hr1 = p._features["high_res_feats"]
            return self._embeddings(images, p._features["image_embed"], hr0, hr1)
        finally:
            p.reset_predictor()

    def _embeddings(self, images: list[np.ndarray], emb: Any, hr0: Any, hr1: Any
                    ) -> list[Embedding]:
        s = self.image_size
        return [
            Embedding(
                {
                    "image_embed": emb[i : i + 1],
                    "high_res_feats_0": hr0[i : i + 1],
                    "high_res_feats_1": hr1[i : i + 1],
                },
                tuple(int(v) for v in images[i].shape[:2]),
                (s, s),
                self.model_id,
            )
            for i in range(len(images))
        ]

    def _decode(
        self, embedding: Embedding, batch: PromptBatch, multimask: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(next(a for a in (batch.coords, batch.boxes, batch.masks) if a is not None))
        if batch.coords is None and batch.boxes is None and n > 1:
            # SAM2's decoder batches only over point/box prompts: decode masks one by one.
            parts = [
                self._decode(embedding, PromptBatch(None, None, None, batch.masks[i : i + 1]),
                             multimask)
                for i in range(n)
            ]
            return tuple(np.concatenate([pt[k] for pt in parts]) for k in range(3))
        p = self.predictor
        set_features(p, embedding)
        try:
            masks, scores, logits = p.predict(
                point_coords=batch.coords,
                point_labels=batch.labels,
                box=batch.boxes,
                mask_input=batch.masks,
                multimask_output=multimask,
            )
        finally:
            p.reset_predictor()
        if masks.ndim == 3:  # the predictor squeezes a batch of one
            masks, scores, logits = masks[None], scores[None], logits[None]
        return masks > 0.5, scores, logits
