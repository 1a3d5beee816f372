"""Candidate masks of everything on one plane: the SAM/SAM2 models' own generators (run by
:mod:`napari_segany.engine.amg`) or a generic point grid on the backend protocol (any
backend), then optional hole filling and island removal."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from .._progress import Progress, check_cancel, counter
from ..engine import amg
from ..engine.base import Backend, check_image
from ..prompts import ObjectPrompt
from .settings import AutoSettings, MaskRecord

__all__ = ["DEFAULT_IOU_THRESH", "generator_kind", "count_batches", "generate_masks"]

DEFAULT_IOU_THRESH = amg.DEFAULT_IOU_THRESH


def generator_kind(backend: Backend, settings: AutoSettings) -> str:
    """``"model"`` or ``"grid"``: the generator ``settings`` pick for ``backend``.

    Raises ValueError for a combination that cannot run (``generator="model"`` on a
    backend without its own generator; crop layers with the point grid).
    """
    native = amg.has_model_generator(backend)
    if settings.generator == "model" and not native:
        name = getattr(backend, "family", "") or type(backend).__name__
        raise ValueError(f"the {name} backend has no "
                         "automatic mask generator of its own; use generator='grid'")
    kind = "model" if settings.generator == "auto" and native else settings.generator
    kind = "grid" if kind == "auto" else kind
    if kind == "grid" and settings.crop_n_layers:
        raise ValueError("crop layers need the SAM/SAM2 model's own generator "
                         "(generator='model'); set crop_n_layers=0 for the point grid")
    return kind


def count_batches(backend: Backend, settings: AutoSettings | None = None) -> int:
    """Decoder batches :func:`generate_masks` runs on one image (the unit of progress)."""
    s = settings or AutoSettings()
    layers = s.crop_n_layers if generator_kind(backend, s) == "model" else 0
    total = 0
    for i in range(layers + 1):
        per_side = int(s.points_per_side / (s.crop_n_points_downscale_factor ** i))
        total += (4 ** i) * math.ceil(per_side ** 2 / s.points_per_batch)
    return total


def generate_masks(
    backend: Backend,
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
    s = settings or AutoSettings()
    img = check_image(image)
    if s.pred_iou_thresh is None:
        s = replace(s, pred_iou_thresh=amg.default_iou_thresh(backend))
    if embedding is not None:
        if tuple(embedding.original_size) != img.shape[:2]:
            raise ValueError(f"the embedding is of a {tuple(embedding.original_size)} plane, the "
                             f"image is {img.shape[:2]}")
        if embedding.model_id != backend.model_id:
            raise ValueError(f"the embedding was computed by {embedding.model_id}, not by "
                             f"{backend.model_id}")
    check_cancel(cancel)
    tick = counter(progress, count_batches(backend, s))
    if generator_kind(backend, s) == "model":
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


def _generate_model(backend, img, embedding, s: AutoSettings, tick, cancel) -> list[MaskRecord]:
    options = dict(points_per_side=int(s.points_per_side), points_per_batch=int(s.points_per_batch),
                   pred_iou_thresh=float(s.pred_iou_thresh),
                   stability_score_thresh=float(s.stability_score_thresh),
                   stability_score_offset=float(s.stability_score_offset),
                   box_nms_thresh=float(s.box_nms_thresh), crop_n_layers=int(s.crop_n_layers),
                   crop_nms_thresh=float(s.crop_nms_thresh),
                   crop_overlap_ratio=float(s.crop_overlap_ratio),
                   crop_n_points_downscale_factor=int(s.crop_n_points_downscale_factor),
                   use_m2m=bool(s.use_m2m))
    found = amg.generate_with_model(backend, img, embedding, options=options, tick=tick,
                                    cancel=cancel)
    return [r for r in (MaskRecord.from_mask(m, iou, stab) for m, iou, stab in found)
            if r is not None]


def _generate_grid(backend, shape, emb, s: AutoSettings, progress, cancel) -> list[MaskRecord]:
    h, w = shape
    n = int(s.points_per_side)
    g = (np.arange(n) + 0.5) / n
    xs, ys = np.meshgrid(np.clip(g * w - 0.5, 0, w - 1), np.clip(g * h - 0.5, 0, h - 1))
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)
    cands: list[MaskRecord] = []
    for start in range(0, len(points), int(s.points_per_batch)):
        check_cancel(cancel)
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
