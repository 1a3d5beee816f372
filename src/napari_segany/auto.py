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

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._auto_base import (  # noqa: F401  (re-exported: imported from napari_segany.auto)
    AutoSettings,
    Cancelled,
    MaskRecord,
    Progress,
    _counter,
    _is_cancelled,
)
from ._auto_generate import (  # noqa: F401  (re-exported: imported from napari_segany.auto)
    DEFAULT_IOU_THRESH,
    _generator_kind,
    count_batches,
    generate_masks,
)
from ._auto_link import PlaneLinker, _remove_fragments, match_labels, resolve_overlaps

__all__ = ["AutoSettings", "MaskRecord", "Cancelled", "AutoResult", "PlaneLinker",
           "count_batches", "generate_masks", "resolve_overlaps", "segment_everything",
           "segment_everything_tiled", "match_labels", "auto_plane", "auto_segment",
           "record_objects"]


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
