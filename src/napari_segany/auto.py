"""Automatic segmentation ("segment everything") into instance labels, linked across planes.

Pipeline for one plane
----------------------
1. :func:`generate_masks`: a grid of point prompts is decoded in batches and the candidate
   masks filtered by predicted IoU, stability and box NMS. SAM and SAM2 models use their
   own generators (``SamAutomaticMaskGenerator``, ``SAM2AutomaticMaskGenerator``) on the
   plane's cached embedding; any other backend uses an equivalent generic point grid built
   on the backend protocol (``generator="grid"``).
2. :func:`resolve_overlaps`: candidates become one non-overlapping instance image.

   *Overlap rule*: masks are painted in order of decreasing quality (predicted IoU x
   stability score; ties keep the generator's order); a pixel belongs to the first mask
   that claims it. A mask that loses more than ``max_overlap`` (default 0.5) of its area to
   masks painted before it is dropped, as is any 8-connected fragment (and then any object)
   smaller than ``min_area`` pixels left after that. Ids are ``1..N`` in painting order.
3. Large planes: :func:`segment_everything_tiled` runs steps 1-2 per tile window and stitches
   the tiles (:func:`napari_segany.tiling.stitch_tile_labels`) before removing fragments.

Volumes and time stacks
-----------------------
:func:`auto_segment` segments every plane along one axis and links objects from plane to
plane (:class:`PlaneLinker`): the IoU of every pair of objects on consecutive planes is
computed, pairs are assigned with the Hungarian method
(:func:`scipy.optimize.linear_sum_assignment`) and kept when IoU >= ``link_iou``; an object
without a partner gets a new id. Ids only ever increase, so an object that disappears keeps
its id to itself (one that reappears after a gap gets a new id). Planes are written one by
one into the session's :class:`~napari_segany.labels.LabelsStore` (pixels already labelled
there are kept); the whole volume is never held in memory.

Progress is reported per batch of point prompts; cancelling stops at the next batch and
leaves every plane either fully written or untouched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np

__all__ = ["AutoSettings", "MaskRecord", "Cancelled", "AutoResult", "PlaneLinker",
           "count_batches", "generate_masks", "resolve_overlaps", "segment_everything",
           "segment_everything_tiled", "match_labels", "auto_plane", "auto_segment",
           "record_objects"]

#: Default ``pred_iou_thresh`` of each family's own generator.
DEFAULT_IOU_THRESH = {"sam": 0.88, "sam2": 0.8}

Progress = Callable[[int, int], Any] | None


class Cancelled(Exception):
    """Raised inside a plane's segmentation when ``cancel`` was set; nothing was written."""


def _is_cancelled(cancel: Any) -> bool:
    if cancel is None:
        return False
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())


@dataclass(frozen=True)
class AutoSettings:
    """Knobs of automatic segmentation (names follow segment-anything's generator).

    Attributes
    ----------
    points_per_side : int
        The point grid has ``points_per_side ** 2`` prompts per crop (32 by default).
    points_per_batch : int
        Prompts per decoder call (progress is reported per batch).
    pred_iou_thresh : float or None
        Keep masks whose predicted IoU is above this; None: the family's default (SAM 0.88,
        SAM2 0.8, others 0.88).
    stability_score_thresh, stability_score_offset : float
        Keep masks whose stability (IoU of the mask thresholded at +-offset) is at least this.
    box_nms_thresh : float
        Box IoU above which duplicates are removed.
    crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor :
        Optional crop layers (SAM/SAM2 generators only; the ``grid`` generator has none).
    min_region_area : int
        Fill holes and remove islands smaller than this inside each candidate mask before
        resolving overlaps (done here with scipy; no OpenCV or CUDA extension needed).
    min_area : int
        Remove fragments and objects smaller than this after resolving overlaps (16).
    max_overlap : float
        Drop a mask that loses more than this fraction of its area to better masks.
    use_m2m : bool
        SAM2 only: one refinement step using the previous mask.
    generator : {"auto", "model", "grid"}
        ``"model"``: the SAM/SAM2 model's own generator; ``"grid"``: the generic point grid
        on the backend protocol (any backend); ``"auto"``: ``"model"`` when available.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float | None = None
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_region_area: int = 0
    min_area: int = 16
    max_overlap: float = 0.5
    use_m2m: bool = False
    generator: str = "auto"

    def __post_init__(self) -> None:
        if int(self.points_per_side) < 1 or int(self.points_per_batch) < 1:
            raise ValueError("points_per_side and points_per_batch must be >= 1, got "
                             f"{self.points_per_side} and {self.points_per_batch}")
        if not 0.0 <= float(self.max_overlap) <= 1.0:
            raise ValueError(f"max_overlap must lie in [0, 1], got {self.max_overlap}")
        if int(self.crop_n_layers) < 0 or int(self.min_area) < 0 or int(self.min_region_area) < 0:
            raise ValueError("crop_n_layers, min_area and min_region_area must be >= 0")
        if self.generator not in ("auto", "model", "grid"):
            raise ValueError(f"generator must be 'auto', 'model' or 'grid', not "
                             f"{self.generator!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MaskRecord:
    """One candidate mask, stored cropped to its bounding box.

    Attributes
    ----------
    mask : np.ndarray
        ``(y1 - y0, x1 - x0)`` bool.
    bbox : (y0, y1, x0, x1)
        End exclusive, in pixels of the image it was generated on.
    score : float
        Predicted IoU.
    stability : float
        Stability score (1.0 when unknown).
    """

    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    score: float = 1.0
    stability: float = 1.0

    @classmethod
    def from_mask(cls, mask: np.ndarray, score: float = 1.0, stability: float = 1.0
                  ) -> MaskRecord | None:
        """Crop a full ``(H, W)`` mask; None when it is empty."""
        m = np.asarray(mask, bool)
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if not rows.size:
            return None
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(m[y0:y1, x0:x1].copy(), (y0, y1, x0, x1), float(score), float(stability))

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def quality(self) -> float:
        return float(self.score) * float(self.stability)

    def full(self, shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape, bool)
        y0, y1, x0, x1 = self.bbox
        out[y0:y1, x0:x1] = self.mask
        return out


# ----------------------------------------------------------------------------------- generators
def _family(backend: Any) -> str:
    return str(getattr(backend, "family", ""))


def _generator_kind(backend: Any, settings: AutoSettings) -> str:
    native = _family(backend) in ("sam", "sam2") and getattr(backend, "model", None) is not None
    if settings.generator == "model" and not native:
        raise ValueError(f"the {_family(backend) or type(backend).__name__} backend has no "
                         "automatic mask generator of its own; use generator='grid'")
    kind = "model" if settings.generator == "auto" and native else settings.generator
    kind = "grid" if kind == "auto" else kind
    if kind == "grid" and settings.crop_n_layers:
        raise ValueError("crop layers need the SAM/SAM2 model's own generator "
                         "(generator='model'); set crop_n_layers=0 for the point grid")
    return kind


def count_batches(backend: Any, settings: AutoSettings | None = None) -> int:
    """Decoder batches :func:`generate_masks` runs on one image (the unit of progress)."""
    s = settings or AutoSettings()
    layers = s.crop_n_layers if _generator_kind(backend, s) == "model" else 0
    total = 0
    for i in range(layers + 1):
        per_side = int(s.points_per_side / (s.crop_n_points_downscale_factor ** i))
        total += (4 ** i) * math.ceil(per_side ** 2 / s.points_per_batch)
    return total


def generate_masks(
    backend: Any,
    image: np.ndarray,
    *,
    embedding: Any = None,
    settings: AutoSettings | None = None,
    progress: Progress = None,
    cancel: Any = None,
) -> list[MaskRecord]:
    """Candidate masks of everything on one ``(H, W, 3)`` uint8 plane (or tile window).

    Parameters
    ----------
    backend : Backend
    image : np.ndarray
        ``(H, W, 3)`` uint8 (from :class:`~napari_segany.intensity.Normalizer`).
    embedding : Embedding, optional
        The plane's embedding (e.g. from a session's cache); computed when omitted.
    settings : AutoSettings
    progress : callable, optional
        ``progress(done, total)`` with ``done`` batches of point prompts out of ``total``
        (:func:`count_batches`), reported at 0 and after each batch.
    cancel : threading.Event or callable, optional
        Checked before each batch; raises :class:`Cancelled` when set.

    Returns
    -------
    list of MaskRecord
        In the generator's order, possibly overlapping.
    """
    from .engine.base import check_image

    s = settings or AutoSettings()
    img = check_image(image)
    if s.pred_iou_thresh is None:
        s = replace(s, pred_iou_thresh=DEFAULT_IOU_THRESH.get(_family(backend), 0.88))
    if embedding is not None:
        if tuple(embedding.original_size) != img.shape[:2]:
            raise ValueError(f"the embedding is of a {tuple(embedding.original_size)} plane, the "
                             f"image is {img.shape[:2]}")
        if embedding.model_id != backend.model_id:
            raise ValueError(f"the embedding was computed by {embedding.model_id}, not by "
                             f"{backend.model_id}")
    if _is_cancelled(cancel):
        raise Cancelled()
    tick = _counter(progress, count_batches(backend, s))
    if _generator_kind(backend, s) == "model":
        records = _generate_model(backend, img, embedding, s, tick, cancel)
    else:
        emb = embedding if embedding is not None else backend.embed(img)
        records = _generate_grid(backend, img.shape[:2], emb, s, tick, cancel)
    if s.min_region_area > 0:
        records = [r for r in (_clean_record(r, s.min_region_area) for r in records) if r]
    return records


def _clean_record(rec: MaskRecord, area: int) -> MaskRecord | None:
    from scipy import ndimage as ndi

    m = np.pad(rec.mask, 1)
    holes, n = ndi.label(~m)
    if n > 1:
        sizes = np.bincount(holes.ravel())
        small = sizes < area
        small[0] = False
        small[holes[0, 0]] = False  # the outside
        m |= small[holes]
    islands, n = ndi.label(m, structure=np.ones((3, 3)))
    if n:
        sizes = np.bincount(islands.ravel())
        keep = sizes >= area
        keep[0] = False
        if not keep.any():
            return None
        m = keep[islands]
    y0, _, x0, _ = rec.bbox
    out = MaskRecord.from_mask(m[1:-1, 1:-1], rec.score, rec.stability)
    if out is not None:
        oy0, oy1, ox0, ox1 = out.bbox
        out.bbox = (oy0 + y0, oy1 + y0, ox0 + x0, ox1 + x0)
    return out


def _generate_grid(backend, shape, emb, s: AutoSettings, progress, cancel) -> list[MaskRecord]:
    from .prompts import ObjectPrompt

    h, w = shape
    n = int(s.points_per_side)
    g = (np.arange(n) + 0.5) / n
    xs, ys = np.meshgrid(np.clip(g * w - 0.5, 0, w - 1), np.clip(g * h - 0.5, 0, h - 1))
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)
    cands: list[MaskRecord] = []
    for start in range(0, len(points), int(s.points_per_batch)):
        if _is_cancelled(cancel):
            raise Cancelled()
        batch = points[start:start + int(s.points_per_batch)]
        pred = backend.predict(emb, [ObjectPrompt(points=[p], labels=[1]) for p in batch],
                               multimask=True)
        logits = np.asarray(pred.logits, np.float32)
        hi = (logits > s.stability_score_offset).sum(axis=(-2, -1))
        lo = (logits > -s.stability_score_offset).sum(axis=(-2, -1))
        stab = np.where(lo > 0, hi / np.maximum(lo, 1), 0.0)
        for b in range(pred.masks.shape[0]):
            for m in range(pred.masks.shape[1]):
                sc, st = float(pred.scores[b, m]), float(stab[b, m])
                if sc <= s.pred_iou_thresh or st < s.stability_score_thresh:
                    continue
                rec = MaskRecord.from_mask(pred.masks[b, m], sc, st)
                if rec is not None:
                    cands.append(rec)
        if progress is not None:
            progress()
    return _box_nms(cands, s.box_nms_thresh)


def _box_nms(recs: list[MaskRecord], thresh: float) -> list[MaskRecord]:
    if len(recs) < 2:
        return recs
    boxes = np.array([r.bbox for r in recs], np.float64)  # y0, y1, x0, x1
    scores = np.array([r.score for r in recs])
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        dy = np.minimum(boxes[i, 1], boxes[rest, 1]) - np.maximum(boxes[i, 0], boxes[rest, 0])
        dx = np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 2], boxes[rest, 2])
        inter = np.clip(dy, 0, None) * np.clip(dx, 0, None)
        iou = inter / (area[i] + area[rest] - inter)
        order = rest[iou <= thresh]
    return [recs[i] for i in sorted(keep)]


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
            if _is_cancelled(self.cancel):
                raise Cancelled()
            out = super()._process_batch(points, *args, **kwargs)
            for k, v in list(out.items()):  # SAM's MaskData.to_numpy cannot take bfloat16
                if getattr(v, "is_floating_point", lambda: False)() and v.dtype != torch.float32:
                    out[k] = v.float()
            if self.tick is not None:
                self.tick()
            return out

    return Generator


def _load_features(pred: Any, family: str, emb: Any) -> None:
    """Put a backend embedding into a SamPredictor / SAM2ImagePredictor (as set_image would)."""
    if family == "sam":
        pred.reset_image()
        pred.features = emb.tensors["image_embed"]
        pred.original_size = tuple(emb.original_size)
        pred.input_size = tuple(emb.input_size)
        pred.is_image_set = True
    else:
        pred.reset_predictor()
        t = emb.tensors
        pred._features = {"image_embed": t["image_embed"],
                          "high_res_feats": [t["high_res_feats_0"], t["high_res_feats_1"]]}
        pred._orig_hw = [tuple(emb.original_size)]
        pred._is_image_set, pred._is_batch = True, False


def _generate_model(backend, img, embedding, s: AutoSettings, progress, cancel):
    import torch

    family = _family(backend)
    kw = dict(points_per_side=int(s.points_per_side), points_per_batch=int(s.points_per_batch),
              pred_iou_thresh=float(s.pred_iou_thresh),
              stability_score_thresh=float(s.stability_score_thresh),
              stability_score_offset=float(s.stability_score_offset),
              box_nms_thresh=float(s.box_nms_thresh), crop_n_layers=int(s.crop_n_layers),
              crop_nms_thresh=float(s.crop_nms_thresh),
              crop_overlap_ratio=float(s.crop_overlap_ratio),
              crop_n_points_downscale_factor=int(s.crop_n_points_downscale_factor),
              min_mask_region_area=0, output_mode="uncompressed_rle")
    if family == "sam2":
        kw["use_m2m"] = bool(s.use_m2m)
    gen = _generator_class(family)(backend.model, **kw)
    if family == "sam2":  # the predictor assumes a 1024 input; its feature sizes follow the model
        size = int(backend.model.image_size)
        gen.predictor._bb_feat_sizes = [(size // k, size // k) for k in (4, 8, 16)]
    gen.embedding, gen.tick, gen.cancel = embedding, progress, cancel
    autocast = backend._autocast() if hasattr(backend, "_autocast") else nullcontext()
    with torch.inference_mode(), autocast:
        anns = gen.generate(img)
    if family == "sam":
        from segment_anything.utils.amg import rle_to_mask
    else:
        from sam2.utils.amg import rle_to_mask
    out = []
    for a in anns:
        rec = MaskRecord.from_mask(rle_to_mask(a["segmentation"]), a["predicted_iou"],
                                   a["stability_score"])
        if rec is not None:
            out.append(rec)
    return out


# ----------------------------------------------------------------------------------- overlaps
def resolve_overlaps(
    masks: Sequence[MaskRecord | np.ndarray],
    scores: Sequence[float] | None = None,
    *,
    shape: tuple[int, int] | None = None,
    min_area: int = 0,
    max_overlap: float = 0.5,
) -> np.ndarray:
    """Turn possibly overlapping masks into one non-overlapping instance labels image.

    Parameters
    ----------
    masks : sequence of MaskRecord or (H, W) bool arrays
    scores : sequence of float, optional
        Painting priority of each mask (higher first). Default: a record's predicted IoU x
        stability, 1.0 for plain arrays. Ties keep the input order.
    shape : (H, W), optional
        Needed when ``masks`` holds only records (or is empty).
    min_area : int
        8-connected fragments, and then objects, with fewer pixels are removed.
    max_overlap : float
        A mask losing more than this fraction of its pixels to masks painted before it is
        dropped.

    Returns
    -------
    np.ndarray
        ``(H, W)`` uint32, ids ``1..N`` consecutive, in painting order.
    """
    recs: list[MaskRecord | None] = []
    for m in masks:
        if isinstance(m, MaskRecord):
            recs.append(m)
        else:
            arr = np.asarray(m, bool)
            if shape is None:
                shape = arr.shape
            elif arr.shape != tuple(shape):
                raise ValueError(f"mask of shape {arr.shape} in a list of {tuple(shape)} masks")
            recs.append(MaskRecord.from_mask(arr))
    if shape is None:
        raise ValueError("give shape=(H, W) for a list of MaskRecords or an empty list")
    h, w = (int(v) for v in shape)
    prio = ([r.quality if r is not None else 0.0 for r in recs] if scores is None
            else [float(v) for v in scores])
    if len(prio) != len(recs):
        raise ValueError(f"got {len(prio)} scores for {len(recs)} masks")
    labels = np.zeros((h, w), np.uint32)
    next_id = 1
    for i in np.argsort(-np.asarray(prio, np.float64), kind="stable"):
        r = recs[i]
        if r is None:
            continue
        y0, y1, x0, x1 = r.bbox
        if y0 < 0 or x0 < 0 or y1 > h or x1 > w:
            raise ValueError(f"mask {i} with box {r.bbox} lies outside the {(h, w)} plane")
        view = labels[y0:y1, x0:x1]
        area = int(r.mask.sum())
        claim = r.mask & (view == 0)
        got = int(claim.sum())
        if area == 0 or got == 0 or (area - got) > max_overlap * area:
            continue
        view[claim] = next_id
        next_id += 1
    if min_area > 0:
        labels = _remove_fragments(labels, int(min_area))
    return labels


def _remove_fragments(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Remove 8-connected pieces smaller than ``min_area`` and renumber ids consecutively."""
    from scipy import ndimage as ndi

    out = labels.copy()
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        obj = labels[sl] == i
        comp, n = ndi.label(obj, structure=np.ones((3, 3)))
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        small = sizes < min_area
        small[0] = False
        if small.any():
            out[sl][small[comp]] = 0
    return _renumber(out)


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Ids ``1..N`` keeping the order of the old ids."""
    ids = np.flatnonzero(np.bincount(labels.ravel()))
    ids = ids[ids != 0]
    if len(ids) and ids[-1] == len(ids):
        return labels.astype(np.uint32, copy=False)
    lut = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.uint32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.uint32)
    return lut[labels]


# ----------------------------------------------------------------------------------- one plane
def segment_everything(
    backend: Any,
    image: np.ndarray,
    *,
    embedding: Any = None,
    settings: AutoSettings | None = None,
    progress: Progress = None,
    cancel: Any = None,
) -> np.ndarray:
    """Segment everything on one ``(H, W, 3)`` uint8 plane into ``(H, W)`` uint32 labels.

    ``progress(done, total)`` counts batches of point prompts (:func:`count_batches`);
    ``cancel`` raises :class:`Cancelled` at the next batch.
    """
    s = settings or AutoSettings()
    recs = generate_masks(backend, image, embedding=embedding, settings=s, progress=progress,
                          cancel=cancel)
    return resolve_overlaps(recs, shape=np.asarray(image).shape[:2], min_area=s.min_area,
                            max_overlap=s.max_overlap)


def _counter(progress: Progress, total: int) -> Callable[[], None] | None:
    """A no-argument ``tick`` that reports ``progress(done, total)`` (0 reported first)."""
    if progress is None:
        return None
    state = [0]
    progress(0, total)

    def tick() -> None:
        state[0] += 1
        progress(min(state[0], total), total)

    return tick


def segment_everything_tiled(
    tiled: Any,
    plane: Any = None,
    *,
    settings: AutoSettings | None = None,
    stitch_iou: float = 0.5,
    progress: Progress = None,
    cancel: Any = None,
) -> np.ndarray:
    """Segment everything on a large plane tile by tile (``tiled``: a
    :class:`~napari_segany.tiling.TiledEmbeddings`) and stitch the tiles without cut objects.

    Each tile window is segmented (:func:`generate_masks`, :func:`resolve_overlaps`) on its
    own embedding; tiles are joined by :func:`~napari_segany.tiling.stitch_tile_labels`;
    fragments smaller than ``settings.min_area`` are removed last.
    """
    from .tiling import stitch_tile_labels

    s = settings or AutoSettings()
    grid = tiled.grid
    per = count_batches(tiled.backend, s)
    total = per * len(grid)
    if progress is not None:
        progress(0, total)
    per_tile = {}
    for k, t in enumerate(grid):
        sub = None if progress is None else (
            lambda done, _t, base=k * per: progress(base + done, total))
        recs = generate_masks(tiled.backend, tiled.tile_rgb(plane, t),
                              embedding=tiled.get(plane, t), settings=s, progress=sub,
                              cancel=cancel)
        per_tile[t.index] = resolve_overlaps(recs, shape=t.shape, max_overlap=s.max_overlap)
    labels = stitch_tile_labels(grid, per_tile, min_iou=stitch_iou)
    return _remove_fragments(labels, s.min_area) if s.min_area > 0 else labels


# ----------------------------------------------------------------------------------- linking
def match_labels(previous: np.ndarray, current: np.ndarray, *, min_iou: float = 0.3
                 ) -> dict[int, int]:
    """Optimal one-to-one matching of the objects of two label images by IoU.

    Returns
    -------
    dict
        current id -> previous id. Only pairs with IoU >= ``min_iou`` can be matched; among
        them the assignment maximising the total IoU is chosen (Hungarian method).
    """
    from scipy.optimize import linear_sum_assignment

    a = np.asarray(previous).ravel()
    b = np.asarray(current).ravel()
    if np.shape(previous) != np.shape(current):
        raise ValueError(f"cannot match labels of shapes {np.shape(previous)} and "
                         f"{np.shape(current)}")
    both = (a > 0) & (b > 0)
    if not both.any():
        return {}
    nb = int(b.max()) + 1
    codes, inter = np.unique(a[both].astype(np.int64) * nb + b[both], return_counts=True)
    pa, pb = codes // nb, codes % nb
    area_a, area_b = np.bincount(a.astype(np.int64)), np.bincount(b.astype(np.int64))
    iou = inter / (area_a[pa] + area_b[pb] - inter)
    ok = iou >= max(float(min_iou), 1e-12)
    if not ok.any():
        return {}
    pa, pb, iou = pa[ok], pb[ok], iou[ok]
    ra, ia = np.unique(pa, return_inverse=True)
    rb, ib = np.unique(pb, return_inverse=True)
    matrix = np.zeros((len(ra), len(rb)))
    matrix[ia, ib] = iou
    rows, cols = linear_sum_assignment(-matrix)
    return {int(rb[c]): int(ra[r]) for r, c in zip(rows, cols, strict=True) if matrix[r, c] > 0}


@dataclass
class PlaneLinker:
    """Gives the objects of successive planes stable ids (3D objects, tracks).

    Call it with each plane's labels in order; ``group`` separates independent sequences
    (e.g. each time point of a (t, z, y, x) stack linked along z). Unmatched objects get
    ``next_id``, which only increases.
    """

    min_iou: float = 0.3
    next_id: int = 1
    _previous: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    def __call__(self, labels: np.ndarray, group: Any = ()) -> np.ndarray:
        cur = np.asarray(labels)
        prev = self._previous.get(group)
        mapping = match_labels(prev, cur, min_iou=self.min_iou) if prev is not None else {}
        ids = np.flatnonzero(np.bincount(cur.ravel().astype(np.int64))) if cur.size else []
        lut = np.zeros(int(ids[-1]) + 1 if len(ids) else 1, np.uint32)
        for i in ids[1:] if len(ids) and ids[0] == 0 else ids:
            if int(i) in mapping:
                lut[i] = mapping[int(i)]
            else:
                lut[i] = self.next_id
                self.next_id += 1
        out = lut[cur]
        self._previous[group] = out
        return out


# ----------------------------------------------------------------------------------- sessions
@dataclass
class AutoResult:
    """What :func:`auto_segment` did."""

    planes: list[tuple[int, ...]]
    object_ids: list[int]
    cancelled: bool = False

    @property
    def n_objects(self) -> int:
        return len(self.object_ids)


def auto_plane(
    session: Any,
    plane: Any = None,
    *,
    settings: AutoSettings | None = None,
    tiled: Any = None,
    progress: Progress = None,
    cancel: Any = None,
) -> np.ndarray:
    """Instance labels of one plane of a session (nothing is written; for previews)."""
    key = session.check_plane(plane)
    if tiled is not None:
        return segment_everything_tiled(tiled, key, settings=settings, progress=progress,
                                        cancel=cancel)
    return segment_everything(session.backend, session.plane_rgb(key),
                              embedding=session.embedding(key), settings=settings,
                              progress=progress, cancel=cancel)


def auto_segment(
    session: Any,
    *,
    planes: tuple[int, int] | None = None,
    axis: int = 0,
    settings: AutoSettings | None = None,
    link: bool = True,
    link_iou: float = 0.3,
    tiled: Any = None,
    progress: Progress = None,
    cancel: Any = None,
) -> AutoResult:
    """Segment everything on every plane of a session's image and write the labels store.

    Parameters
    ----------
    session : Session
        With a labels store (``labels=PATH``).
    planes : (start, stop), optional
        Only planes ``start <= i < stop`` along ``axis``.
    axis : int
        Leading axis along which objects are linked (z of (z, y, x), t of (t, y, x)).
    settings : AutoSettings
    link : bool
        Link objects across consecutive planes (else every plane's objects get new ids).
    link_iou : float
        Minimum IoU for two objects on consecutive planes to be one object.
    tiled : TiledEmbeddings, optional
        Segment tile by tile (large planes).
    progress : callable, optional
        ``progress(done, total)`` in batches of point prompts over all planes.
    cancel : threading.Event or callable, optional
        Checked before each batch; the plane in progress is then not written.

    Returns
    -------
    AutoResult
        Planes written (in order), ids of the new objects, whether it was cancelled.
    """
    store = session._require_labels()
    s = settings or AutoSettings()
    keys = _plane_order(session.plane_keys_shape, planes, axis)
    per_plane = count_batches(session.backend, s) * (len(tiled.grid) if tiled else 1)
    total = per_plane * len(keys)
    if progress is not None:
        progress(0, total)
    store.update_provenance(auto={"settings": s.to_dict(), "axis": axis, "planes": planes,
                                  "link": bool(link), "link_iou": float(link_iou),
                                  "tiling": tiled.tiling if tiled is not None else None})
    linker = PlaneLinker(min_iou=float(link_iou), next_id=store.next_object_id())
    ax = axis % len(keys[0]) if keys and keys[0] else 0
    written: list[tuple[int, ...]] = []
    new_ids: list[int] = []
    seen: set[int] = set()
    for n, key in enumerate(keys):
        sub = None if progress is None else (
            lambda done, _t, base=n * per_plane: progress(base + done, total))
        try:
            if tiled is not None:
                labels = segment_everything_tiled(tiled, key, settings=s, cancel=cancel,
                                                  progress=sub)
            else:
                labels = segment_everything(session.backend, session.plane_rgb(key),
                                            embedding=session.embedding(key), settings=s,
                                            cancel=cancel, progress=sub)
        except Cancelled:
            return AutoResult(written, new_ids, cancelled=True)
        existing = store.read_plane(key)
        linker.next_id = max(linker.next_id, int(existing.max()) + 1)
        group = key[:ax] + key[ax + 1:] if link else n
        linked = linker(labels, group)
        plane = np.where(existing > 0, existing, linked).astype(np.uint32)
        fresh = [int(i) for i in np.unique(linked[existing == 0]) if i and int(i) not in seen]
        seen.update(fresh)
        store.write_plane(key, plane)
        if fresh:
            record_objects(store, {i: {"source": "auto"} for i in fresh})
            new_ids += fresh
        written.append(key)
    return AutoResult(written, new_ids)


def _plane_order(lead: tuple[int, ...], planes: tuple[int, int] | None, axis: int
                 ) -> list[tuple[int, ...]]:
    if not lead:
        if planes is not None:
            raise ValueError("planes=(start, stop) needs a volume or stack; this image is 2D")
        return [()]
    ax = axis % len(lead) if -len(lead) <= axis < len(lead) else None
    if ax is None:
        raise ValueError(f"axis {axis} does not exist: the image has leading axes {lead}")
    lo, hi = planes if planes is not None else (0, lead[ax])
    if not 0 <= lo < hi <= lead[ax]:
        raise ValueError(f"planes {planes} is not a non-empty range within 0..{lead[ax]} "
                         f"along axis {ax}")
    others = [n for i, n in enumerate(lead) if i != ax]
    keys = []
    for rest in np.ndindex(*others):
        for i in range(lo, hi):
            keys.append(tuple(int(v) for v in rest[:ax]) + (i,) + tuple(int(v) for v in rest[ax:]))
    return keys


def record_objects(store: Any, infos: dict[int, dict[str, Any]]) -> None:
    """Record metadata of many objects in one attribute write (as ``set_object`` does)."""
    meta = store.provenance
    objects = dict(meta.get("objects", {}))
    for oid, info in infos.items():
        objects[str(int(oid))] = {**objects.get(str(int(oid)), {}), **info}
    store.update_provenance(objects=objects)
