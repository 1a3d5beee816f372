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
one into the session's :class:`~napari_segany.storage.LabelsStore` (pixels already labelled
there are kept); the whole volume is never held in memory.

Progress is reported per batch of point prompts; cancelling stops at the next batch and
leaves every plane either fully written or untouched.
"""

from __future__ import annotations

from typing import Any

from ..errors import Cancelled
from .generate import DEFAULT_IOU_THRESH, count_batches, generate_masks, generator_kind
from .linking import PlaneLinker, match_labels
from .overlaps import resolve_overlaps
from .planes import (
    AutoResult,
    auto_plane,
    auto_planes,
    segment_everything,
    segment_everything_tiled,
)
from .settings import AutoSettings, MaskRecord

__all__ = ["AutoSettings", "MaskRecord", "Cancelled", "AutoResult", "PlaneLinker",
           "count_batches", "generate_masks", "resolve_overlaps", "segment_everything",
           "segment_everything_tiled", "match_labels", "auto_plane", "auto_segment",
           "record_objects", "auto_planes", "generator_kind", "DEFAULT_IOU_THRESH"]


def auto_segment(session: Any, **options: Any) -> AutoResult:
    """Segment everything on every plane of a session and write its labels store.

    The same as :meth:`napari_segany.Session.auto_segment` (see there for the options).
    """
    return session.auto_segment(**options)


def record_objects(store: Any, infos: dict[int, dict[str, Any]]) -> None:
    """Record metadata of many objects in one write (:meth:`LabelsStore.set_objects`)."""
    store.set_objects(infos)
