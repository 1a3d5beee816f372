"""Segment everything on one plane (whole or tiled), and on a session's planes one by one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._progress import Progress
from ..engine.base import Backend
from ..storage.embeddings import PlaneSource
from ..tiling import TiledEmbeddings, stitch_tile_labels
from .generate import count_batches, generate_masks
from .overlaps import remove_fragments, resolve_overlaps
from .settings import AutoSettings

__all__ = ["AutoResult", "segment_everything", "segment_everything_tiled", "auto_plane",
           "auto_planes", "batches_per_plane"]


def segment_everything(
    backend: Backend,
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
    tiled: TiledEmbeddings,
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
    return remove_fragments(labels, s.min_area) if s.min_area > 0 else labels


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
    session: PlaneSource,
    plane: Any = None,
    *,
    settings: AutoSettings | None = None,
    tiled: TiledEmbeddings | None = None,
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


def batches_per_plane(backend: Backend, settings: AutoSettings,
                      tiled: TiledEmbeddings | None = None) -> int:
    """Decoder batches one plane costs (the unit of progress of :func:`auto_planes`)."""
    return count_batches(backend, settings) * (len(tiled.grid) if tiled is not None else 1)


def auto_planes(
    source: PlaneSource,
    keys: list[tuple[int, ...]],
    *,
    settings: AutoSettings | None = None,
    tiled: TiledEmbeddings | None = None,
    progress: Progress = None,
    cancel: Any = None,
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield ``(plane, labels)`` for each key in order: every plane's objects, ids ``1..N``.

    ``progress(done, total)`` counts decoder batches over all planes; ``cancel`` raises
    :class:`~napari_segany.errors.Cancelled` at the next batch (the plane in progress
    is then not yielded).
    """
    s = settings or AutoSettings()
    per_plane = batches_per_plane(source.backend, s, tiled)
    total = per_plane * len(keys)
    if progress is not None:
        progress(0, total)
    for n, key in enumerate(keys):
        sub = None if progress is None else (
            lambda done, _t, base=n * per_plane: progress(base + done, total))
        if tiled is not None:
            labels = segment_everything_tiled(tiled, key, settings=s, cancel=cancel,
                                              progress=sub)
        else:
            labels = segment_everything(source.backend, source.plane_rgb(key),
                                        embedding=source.embedding(key), settings=s,
                                        cancel=cancel, progress=sub)
        yield key, labels
