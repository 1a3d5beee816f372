"""napari Points / Shapes layer data to Segment Anything (SAM/SAM2) prompts.

The only code that turns napari Points / Shapes layer data into SAM prompts. It
never imports napari: layers are read by duck typing
(:meth:`~napari_segany.prompts.geometry.Transform.from_layer`).

Coordinates
    A layer maps data to world with ``world = affine @ (data * scale + translate)``.
    Layers are aligned by **trailing** axes, as in napari: a prompt layer with more
    dimensions than the image has its extra leading world axes dropped; one with
    fewer cannot be placed and raises :class:`PromptError`. ``image_shape`` is the
    image data shape without an RGB axis, ``(*leading, H, W)``; the plane key is the
    tuple of leading indices (``()`` for 2D), each rounded to the nearest integer
    (halves up) and range-checked. Output follows SAM: ``(x, y) = (column, row)`` in
    image pixel coordinates (pixel centres at integers), float64.

Clipping policy
    Points: a row/column within half a pixel outside the image (``-0.5 <= v <=
    size - 0.5``, still on a border pixel) is clipped to ``[0, size - 1]``; farther
    out raises :class:`PromptError`. Boxes: the bounding box of the rectangle's
    vertices is clipped to ``[0, W - 1] x [0, H - 1]``; a box entirely outside the
    image, or with zero width or height after clipping, raises :class:`PromptError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import PromptError
from .geometry import (
    Transform,
    _box,
    _clip_points,
    _image_shape,
    _layer_coords,
    _parse_ids,
    _parse_labels,
    _plane_indices,
    _to_image_pixels,
)
from .model import ObjectPrompt, PromptSet

__all__ = ["points_to_prompts", "shapes_to_prompts"]


def points_to_prompts(coords: Any, *, image_shape: Any, labels: Any = None,
                      object_ids: Any = None, points_transform: Transform | None = None,
                      image_transform: Transform | None = None) -> PromptSet:
    """Convert napari Points layer data into point prompts.

    Parameters
    ----------
    coords : array_like, shape (N, ndim_points)
        Points layer data in that layer's data coordinates (napari axis order).
    image_shape : sequence of int
        Image layer data shape ``(*leading, H, W)`` without an RGB channel axis.
    labels : array_like, shape (N,), optional
        bool (True positive), 1/0, or "positive"/"negative" (any case); None: all positive.
    object_ids : int or array_like of int, shape (N,), optional
        Object id (>= 1) per point; None: all object 1.
    points_transform, image_transform : Transform, optional
        Data -> world transforms of the points and image layers; None: identity.

    Returns
    -------
    PromptSet
        Points grouped per plane and object in input order, ``(x, y)`` float64.
    """
    shape = _image_shape(image_shape)
    pts = _layer_coords(coords, "points layer")
    n = len(pts)
    labs = _parse_labels(labels, n)
    ids = _parse_ids(object_ids, n, "point", np.ones(n, dtype=np.int64))
    result = PromptSet()
    if n == 0:
        return result
    pix = _to_image_pixels(pts, shape, points_transform, image_transform, "points")
    planes = _plane_indices(pix, shape, lambda i: f"point {i}")
    yx = _clip_points(pix[:, -2:], shape[-2:])
    groups: dict[tuple[tuple[int, ...], int], list[int]] = {}
    for i in range(n):
        groups.setdefault((tuple(planes[i].tolist()), int(ids[i])), []).append(i)
    for (key, oid), idx in groups.items():
        result.add(key, oid, ObjectPrompt(points=yx[idx][:, ::-1], labels=labs[idx]))
    return result


def shapes_to_prompts(shapes: Any, *, image_shape: Any, shape_types: Any = None,
                      object_ids: Any = None, shapes_transform: Transform | None = None,
                      image_transform: Transform | None = None) -> PromptSet:
    """Convert napari Shapes layer data (rectangles) into box prompts.

    Parameters
    ----------
    shapes : list of array_like, each shape (n_vertices, ndim)
        Shapes layer data in that layer's data coordinates (napari axis order).
    image_shape : sequence of int
        Image layer data shape ``(*leading, H, W)`` without an RGB channel axis.
    shape_types : str or sequence of str, optional
        napari shape types; None: all "rectangle". Only rectangles are accepted; a
        rotated rectangle gives its axis-aligned bounding box.
    object_ids : int or array_like of int, shape (n_shapes,), optional
        Object id (>= 1) per box; None: ``1 .. n_shapes`` in order.
    shapes_transform, image_transform : Transform, optional
        Data -> world transforms of the shapes and image layers; None: identity.

    Returns
    -------
    PromptSet
        One ``(4,)`` float64 XYXY box per object and plane.
    """
    shape = _image_shape(image_shape)
    if isinstance(shapes, np.ndarray) and shapes.ndim == 2:
        raise PromptError("shapes must be a list of (n_vertices, ndim) arrays; wrap one in a list")
    verts = [_layer_coords(s, f"shape {i}") for i, s in enumerate(shapes)]
    n = len(verts)
    types = [shape_types] * n if shape_types is None or isinstance(shape_types, str) \
        else list(shape_types)
    if len(types) != n:
        raise PromptError(f"got {len(types)} shape_types for {n} shapes; pass one type per shape")
    ids = _parse_ids(object_ids, n, "shape", np.arange(1, n + 1, dtype=np.int64))
    result, seen = PromptSet(), {}
    for i, (v, kind) in enumerate(zip(verts, types, strict=True)):
        kind = "rectangle" if kind is None else str(kind)
        if kind.lower() != "rectangle":
            raise PromptError(f"shape {i} is a {kind!r}; only 'rectangle' shapes can be SAM box "
                              "prompts (rotated ones give their bounding box): redraw it.")
        if len(v) == 0:
            raise PromptError(f"shape {i} has no vertices")
        pix = _to_image_pixels(v, shape, shapes_transform, image_transform, "shapes")
        def where(j: int, i: int = i) -> str:
            return f"shape {i}, vertex {j}"

        planes = {tuple(p) for p in _plane_indices(pix, shape, where).tolist()}
        if len(planes) > 1:
            raise PromptError(f"shape {i} spans planes {sorted(planes)}; draw it on one plane")
        key, oid = planes.pop(), int(ids[i])
        if (key, oid) in seen:
            raise PromptError(f"shapes {seen[key, oid]} and {i} are both boxes of object {oid} on "
                              f"plane {key}; SAM takes one box per object: use different ids.")
        seen[key, oid] = i
        result.add(key, oid, ObjectPrompt(box=_box(pix[:, -2:], shape[-2:], i)))
    return result

