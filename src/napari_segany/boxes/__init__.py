"""Boxes to masks in batch: auto-annotation from detections, drawn boxes or box tables.

Boxes come from a napari Shapes layer (:func:`boxes_from_shapes`), a CSV or JSON file
(:func:`read_boxes`) or a detector's ``(N, 4)`` array (:meth:`BoxTable.from_array`). Each
plane's boxes are decoded in batches (``chunk_size`` boxes per ``backend.predict`` call) on
that plane's embedding, or routed to the tiles of a large plane
(:class:`~napari_segany.tiling.TiledEmbeddings`), and painted into one labels image with
one id per box; a box's class goes into the store's object attributes (``class_name``).

Coordinates
-----------
Pixel coordinates of the image plane, as SAM prompts and ``--box``: ``x`` is the column,
``y`` the row, pixel centres at integers; ``(x0, y0)`` is the top-left and ``(x1, y1)`` the
bottom-right corner. Boxes are clipped to the plane; a box entirely outside it is an error.

Files
-----
CSV: a header row, then one row per box. Columns (case-insensitive; others are ignored):

* ``x0, y0, x1, y1`` (required; also ``xmin, ymin, xmax, ymax``), or ``x, y, width, height``
  (top-left corner and size, e.g. COCO ``bbox``);
* ``plane`` (required for stacks, absent for 2D images): index along the leading axis
  (``z`` or ``t``; the aliases ``z``, ``t``, ``frame`` work too); for two leading axes
  (``t, z, y, x``) write ``"t:z"``, e.g. ``3:12``;
* ``class`` (optional; also ``class_name``, ``label``, ``category``): a class name;
* ``id`` (optional): the object id; rows with the same id on different planes are one object
  (e.g. a tracked detection); rows without one get new ids in row order;
* ``score`` (optional; also ``confidence``): the detector's confidence, recorded only.

JSON: a list of box records, or ``{"format": "napari-segany.boxes", "version": 1, "boxes":
[...]}``. A record is an object with ``"box": [x0, y0, x1, y1]`` (or ``"bbox": [x, y, w,
h]``, or the CSV column names as keys) and optionally ``"plane"`` (an integer, or a list of
integers for several leading axes), ``"class"``, ``"id"`` and ``"score"``.

Overlaps
--------
Where the masks of several boxes overlap, ``overlap="score"`` (default) gives each pixel to
the box whose mask has the highest predicted IoU (ties: the earlier row); ``"order"`` gives it
to the earliest row. Pixels already labelled in the store are never overwritten. Every box
keeps its id, even if its mask ends up empty (its area is then 0 in the result).
"""

from __future__ import annotations

from typing import Any

from ..errors import BoxError
from .read import BOXES_FORMAT, boxes_from_shapes, read_boxes
from .segment import OVERLAP_POLICIES, BoxesResult, box_planes, boxes_to_labels
from .table import BoxTable

__all__ = ["BoxError", "BoxTable", "BoxesResult", "read_boxes", "boxes_from_shapes",
           "boxes_to_labels", "segment_boxes", "box_planes", "BOXES_FORMAT",
           "OVERLAP_POLICIES"]


def segment_boxes(session: Any, boxes: Any, **options: Any) -> BoxesResult:
    """Segment boxes on a session's planes and write them into its labels store.

    The same as :meth:`napari_segany.Session.segment_boxes` (see there for the options).
    """
    return session.segment_boxes(boxes, **options)
