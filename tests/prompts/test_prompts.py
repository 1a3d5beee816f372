"""Tests for napari_segany.prompts: napari layer data -> SAM prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from napari_segany.prompts import (
    ObjectPrompt,
    PromptError,
    PromptSet,
    Transform,
    merge_prompts,
    points_to_prompts,
    shapes_to_prompts,
)

# Image layer: 3D stack (5 planes of 20 x 30), anisotropic scale and a translate.
IMG_TF = Transform(scale=(2.0, 0.5, 0.5), translate=(10.0, 3.0, -4.0))
IMG_SHAPE = (5, 20, 30)
# Points layer with its own (different) scale/translate.
PTS_TF = Transform(scale=(1.0, 0.25, 0.25), translate=(0.0, 1.0, -2.0))


def rect(y0, x0, y1, x1, *lead):
    """napari rectangle vertices (4, ndim) in data coordinates."""
    corners = [(y0, x0), (y0, x1), (y1, x1), (y1, x0)]
    return np.array([[*lead, y, x] for y, x in corners], dtype=float)


# --------------------------------------------------------------------------- Transform
def test_transform_scale_translate_exact_values():
    world = IMG_TF.to_world([[3, 4, 7]])
    np.testing.assert_array_equal(world, [[16.0, 5.0, -0.5]])
    np.testing.assert_array_equal(IMG_TF.to_data(world), [[3, 4, 7]])
    assert world.dtype == np.float64


def test_transform_trailing_axis_alignment():
    # 2D coordinates use the trailing two axes of a 3D transform
    np.testing.assert_array_equal(IMG_TF.to_world([[4, 7]]), [[5.0, -0.5]])
    # 4D coordinates: the extra leading axis is left unchanged
    np.testing.assert_array_equal(IMG_TF.to_world([[9, 3, 4, 7]]), [[9, 16.0, 5.0, -0.5]])


def test_transform_affine_applied_after_scale_translate():
    rot = np.array([[0.0, -1.0, 5.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 2D rotation + shift
    tf = Transform(scale=(2.0, 3.0), translate=(1.0, 1.0), affine=rot)
    # data (1, 1) -> (3, 4) -> rotate: (-4 + 5, 3)
    np.testing.assert_allclose(tf.to_world([1.0, 1.0]), [1.0, 3.0])
    np.testing.assert_allclose(tf.to_data([1.0, 3.0]), [1.0, 1.0])


def test_transform_from_layer_duck_typed():
    class Affine:
        affine_matrix = np.eye(4)

    class Layer:
        scale = np.array([2.0, 0.5, 0.5])
        translate = np.array([10.0, 3.0, -4.0])
        affine = Affine()

    tf = Transform.from_layer(Layer())
    assert tf.scale == (2.0, 0.5, 0.5) and tf.translate == (10.0, 3.0, -4.0)
    assert tf.affine is None  # identity affine dropped
    Layer.affine.affine_matrix = np.diag([1.0, 1.0, 2.0, 1.0])
    np.testing.assert_allclose(Transform.from_layer(Layer()).to_world([0, 0, 1]), [10, 3, -7])


@pytest.mark.parametrize(
    "kwargs", [{"scale": (1.0, 0.0)}, {"translate": (np.nan, 1)}, {"affine": np.ones((3, 3))}]
)
def test_transform_rejects_bad_values(kwargs):
    with pytest.raises(PromptError):
        Transform(**kwargs)


# --------------------------------------------------------------------------- points
def test_points_anisotropic_both_layers_exact_pixels():
    # Image pixel (plane 3, row 4, col 7) is world (16, 5, -0.5) -> points data (16, 16, 6);
    # image pixel (plane 0, row 19, col 0) is world (10, 12.5, -4) -> points data (10, 46, -8).
    coords = np.array([[16.0, 16.0, 6.0], [10.0, 46.0, -8.0]])
    ps = points_to_prompts(coords, image_shape=IMG_SHAPE, labels=[1, 0],
                           points_transform=PTS_TF, image_transform=IMG_TF)
    assert ps.planes() == [(0,), (3,)]
    p3 = ps.for_plane((3,))[1]
    np.testing.assert_array_equal(p3.points, [[7.0, 4.0]])  # (x, y) = (col, row)
    np.testing.assert_array_equal(p3.labels, [1])
    p0 = ps.for_plane((0,))[1]
    np.testing.assert_array_equal(p0.points, [[0.0, 19.0]])
    np.testing.assert_array_equal(p0.labels, [0])
    assert p0.points.dtype == np.float64 and p0.labels.dtype == np.int32
    assert p0.box is None and p0.mask is None


def test_points_2d_image_plane_key_empty_tuple():
    ps = points_to_prompts([[2.0, 3.0], [4.5, 1.25]], image_shape=(10, 12))
    assert ps.planes() == [()]
    np.testing.assert_array_equal(ps.for_plane(())[1].points, [[3.0, 2.0], [1.25, 4.5]])


def test_points_4d_image_plane_keys_and_rounding():
    coords = [[1, 2.4, 5, 6], [0, 0.6, 1, 1], [1, 2.0, 3, 3]]
    ps = points_to_prompts(coords, image_shape=(2, 4, 8, 9), object_ids=[1, 1, 2])
    assert ps.planes() == [(0, 1), (1, 2)]
    assert sorted(ps.for_plane((1, 2))) == [1, 2]
    np.testing.assert_array_equal(ps.for_plane((1, 2))[1].points, [[6.0, 5.0]])
    np.testing.assert_array_equal(ps.for_plane((1, 2))[2].points, [[3.0, 3.0]])
    assert ps.object_ids() == [1, 2]


def test_points_with_more_dims_than_image_drop_leading_world_axes():
    # points layer is 3D (time, y, x); image is 2D: time axis is dropped
    ps = points_to_prompts([[7.0, 2.0, 3.0]], image_shape=(10, 10))
    np.testing.assert_array_equal(ps.for_plane(())[1].points, [[3.0, 2.0]])


def test_points_with_fewer_dims_than_image_error():
    with pytest.raises(PromptError, match="trailing axes"):
        points_to_prompts([[2.0, 3.0]], image_shape=(4, 10, 10))


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (None, [1, 1, 1]),
        (np.array([True, False, True]), [1, 0, 1]),
        ([1, 0, 0], [1, 0, 0]),
        (["Positive", "NEGATIVE", " positive "], [1, 0, 1]),
        (np.array(["negative", "positive", "negative"], dtype=object), [0, 1, 0]),
    ],
)
def test_label_forms(labels, expected):
    ps = points_to_prompts([[1, 1], [2, 2], [3, 3]], image_shape=(5, 5), labels=labels)
    np.testing.assert_array_equal(ps.for_plane(())[1].labels, expected)


def test_negative_points_grouped_with_their_object():
    ps = points_to_prompts([[1, 1], [2, 2], [3, 3]], image_shape=(5, 5),
                           labels=["positive", "negative", "positive"], object_ids=[2, 2, 5])
    objs = ps.for_plane(())
    np.testing.assert_array_equal(objs[2].labels, [1, 0])
    np.testing.assert_array_equal(objs[2].points, [[1, 1], [2, 2]])
    np.testing.assert_array_equal(objs[5].labels, [1])


@pytest.mark.parametrize(
    ("labels", "match"),
    [([1, 0], "2 labels for 3 points"), ([1, -1, 0], "point 1.*-1 is not supported"),
     ([1, 0, "maybe"], "point 2"), ([1, 0, 2], "point 2")],
)
def test_label_errors(labels, match):
    with pytest.raises(PromptError, match=match):
        points_to_prompts([[1, 1], [2, 2], [3, 3]], image_shape=(5, 5), labels=labels)


@pytest.mark.parametrize("ids", [[0, 1], [1, 1.5], [True, 1], [1]])
def test_object_id_errors(ids):
    with pytest.raises(PromptError, match="object id"):
        points_to_prompts([[1, 1], [2, 2]], image_shape=(5, 5), object_ids=ids)


def test_points_clipped_within_half_pixel():
    coords = [[-0.5, 0.0], [3.0, 10.4], [9.5, -0.2]]
    ps = points_to_prompts(coords, image_shape=(10, 11))
    np.testing.assert_array_equal(ps.for_plane(())[1].points, [[0.0, 0.0], [10.0, 3.0], [0.0, 9.0]])


def test_point_outside_image_error_names_index_xy_and_size():
    with pytest.raises(PromptError, match=r"point 2 at \(x=11\.6, y=3\).*width 11 x height 10"):
        points_to_prompts([[1, 1], [2, 2], [3.0, 11.6]], image_shape=(10, 11))
    with pytest.raises(PromptError, match=r"point 0 at \(x=1, y=-0\.51\)"):
        points_to_prompts([[-0.51, 1.0]], image_shape=(10, 11))


def test_point_on_wrong_plane_error():
    # world z = 10 + 2 * 5 -> image plane 5, but the stack has planes 0..4
    with pytest.raises(PromptError, match=r"point 1: .*axis 0 rounds to plane 5.*0\.\.4"):
        points_to_prompts([[10, 5, 5], [20, 5, 5]], image_shape=IMG_SHAPE,
                          image_transform=IMG_TF)


def test_empty_points_layer_gives_empty_set():
    ps = points_to_prompts(np.zeros((0, 3)), image_shape=IMG_SHAPE)
    assert len(ps) == 0 and ps.planes() == [] and ps.object_ids() == []


def test_non_finite_point_error():
    with pytest.raises(PromptError, match="row 1"):
        points_to_prompts([[1, 1], [np.nan, 2]], image_shape=(5, 5))


# --------------------------------------------------------------------------- shapes
def test_boxes_on_several_planes_with_transforms():
    # image pixel box rows 2..6, cols 3..9 on plane 1 -> world y 4..6, x -2.5..0.5
    shapes_tf = Transform(scale=(2.0, 0.5, 0.5), translate=(10.0, 3.0, -4.0))
    shapes = [rect(2, 3, 6, 9, 1), rect(0, 0, 19, 29, 4), rect(5, 5, 8, 8, 1)]
    ps = shapes_to_prompts(shapes, image_shape=IMG_SHAPE, shapes_transform=shapes_tf,
                           image_transform=IMG_TF)
    assert ps.planes() == [(1,), (4,)]
    assert ps.object_ids() == [1, 2, 3]
    np.testing.assert_array_equal(ps.for_plane((1,))[1].box, [3, 2, 9, 6])
    np.testing.assert_array_equal(ps.for_plane((1,))[3].box, [5, 5, 8, 8])
    np.testing.assert_array_equal(ps.for_plane((4,))[2].box, [0, 0, 29, 19])
    assert ps.for_plane((4,))[2].box.dtype == np.float64
    assert len(ps.for_plane((4,))[2].points) == 0


def test_box_world_alignment_between_different_layer_transforms():
    # shapes layer with identity transform drawn in world coords over image pixels
    world_box = IMG_TF.to_world(rect(2, 3, 6, 9, 2))
    ps = shapes_to_prompts([world_box], image_shape=IMG_SHAPE, image_transform=IMG_TF)
    np.testing.assert_allclose(ps.for_plane((2,))[1].box, [3, 2, 9, 6])


def test_rotated_rectangle_gives_bounding_box():
    diamond = np.array([[5.0, 2.0], [2.0, 5.0], [5.0, 8.0], [8.0, 5.0]])  # 45 degrees
    ps = shapes_to_prompts([diamond], image_shape=(20, 20))
    np.testing.assert_array_equal(ps.for_plane(())[1].box, [2, 2, 8, 8])


def test_box_clipped_to_image():
    ps = shapes_to_prompts([rect(-0.5, -3, 9.5, 12.7)], image_shape=(10, 12))
    np.testing.assert_array_equal(ps.for_plane(())[1].box, [0, 0, 11, 9])


def test_explicit_box_ids_and_duplicate_error():
    shapes = [rect(1, 1, 3, 3, 0), rect(1, 1, 3, 3, 1), rect(4, 4, 6, 6, 0)]
    ps = shapes_to_prompts(shapes, image_shape=(2, 10, 10), object_ids=[7, 7, 8])
    assert ps.planes() == [(0,), (1,)] and ps.object_ids() == [7, 8]
    with pytest.raises(PromptError, match="shapes 0 and 2.*object 7 on plane \\(0,\\)"):
        shapes_to_prompts(shapes, image_shape=(2, 10, 10), object_ids=[7, 8, 7])


@pytest.mark.parametrize(
    ("shape", "match"),
    [(rect(3, 3, 3, 8), "shape 1 is empty: 5 x 0 pixels"),
     (rect(3, -1e-12, 6, -1e-12), "shape 1 is empty: 0 x 3 pixels"),  # on the border, fp noise
     (rect(20, 20, 30, 30), "shape 1 .*size 10 x 10 pixels.*entirely outside"),
     (rect(-5, 2, -1, 6), "shape 1 .*entirely outside")],
)
def test_empty_or_outside_box_errors(shape, match):
    with pytest.raises(PromptError, match=match):
        shapes_to_prompts([rect(1, 1, 4, 4), shape], image_shape=(10, 10))


def test_non_rectangle_error_names_index_and_type():
    with pytest.raises(PromptError, match="shape 1 is a 'ellipse'"):
        shapes_to_prompts([rect(1, 1, 4, 4), rect(2, 2, 5, 5)], image_shape=(10, 10),
                          shape_types=["rectangle", "ellipse"])
    with pytest.raises(PromptError, match="shape 0 is a 'polygon'"):
        shapes_to_prompts([rect(1, 1, 4, 4)], image_shape=(10, 10), shape_types="polygon")


def test_box_spanning_planes_error():
    verts = rect(1, 1, 4, 4, 0)
    verts[2, 0] = 1.0
    with pytest.raises(PromptError, match=r"shape 0 spans planes \[\(0,\), \(1,\)\]"):
        shapes_to_prompts([verts], image_shape=(3, 10, 10))


def test_box_vertex_on_missing_plane_error():
    with pytest.raises(PromptError, match="shape 0, vertex 0: .*plane 3"):
        shapes_to_prompts([rect(1, 1, 4, 4, 3)], image_shape=(3, 10, 10))


def test_shape_types_length_mismatch():
    with pytest.raises(PromptError, match="2 shape_types for 1 shapes"):
        shapes_to_prompts([rect(1, 1, 4, 4)], image_shape=(10, 10),
                          shape_types=["rectangle", "rectangle"])


# --------------------------------------------------------------------------- PromptSet
def test_for_plane_lists_available_planes():
    ps = points_to_prompts([[0, 1, 1], [2, 1, 1]], image_shape=(3, 5, 5))
    with pytest.raises(PromptError, match=r"plane \(1,\).*\[\(0,\), \(2,\)\]"):
        ps.for_plane((1,))
    with pytest.raises(PromptError, match="empty"):
        PromptSet().for_plane(())
    assert (0,) in ps and [2] in ps and (1,) not in ps and "x" not in ps
    assert list(ps) == [(0,), (2,)] and len(ps) == 2
    assert [k for k, _ in ps.items()] == [(0,), (2,)]


def test_merge_points_and_boxes():
    pts = points_to_prompts([[0, 2, 2], [0, 3, 3], [1, 4, 4]], image_shape=(2, 10, 10),
                            labels=[1, 0, 1])
    boxes = shapes_to_prompts([rect(1, 1, 5, 5, 0)], image_shape=(2, 10, 10))
    more = points_to_prompts([[0, 6, 6]], image_shape=(2, 10, 10))
    merged = merge_prompts(pts, boxes, more)
    obj = merged.for_plane((0,))[1]
    np.testing.assert_array_equal(obj.points, [[2, 2], [3, 3], [6, 6]])
    np.testing.assert_array_equal(obj.labels, [1, 0, 1])
    np.testing.assert_array_equal(obj.box, [1, 1, 5, 5])
    assert merged.planes() == [(0,), (1,)]
    assert merged.for_plane((1,))[1].box is None
    # inputs are not modified
    assert len(pts.for_plane((0,))[1].points) == 2 and pts.for_plane((0,))[1].box is None
    assert merge_prompts() == PromptSet()


def test_merge_conflicting_boxes_error():
    a = shapes_to_prompts([rect(1, 1, 5, 5)], image_shape=(10, 10))
    b = shapes_to_prompts([rect(2, 2, 6, 6)], image_shape=(10, 10))
    with pytest.raises(PromptError, match=r"object 1 on plane \(\) .*two different boxes"):
        merge_prompts(a, b)
    assert merge_prompts(a, a).for_plane(())[1] == a.for_plane(())[1]  # same box: fine
    with pytest.raises(PromptError, match="argument 1"):
        merge_prompts(a, {})


def test_add_rejects_mixed_plane_key_lengths_and_bad_ids():
    ps = PromptSet()
    ps.add((0,), 1, ObjectPrompt(points=[[1, 2]]))
    with pytest.raises(PromptError, match="cannot be mixed"):
        ps.add((0, 1), 1, ObjectPrompt(points=[[1, 2]]))
    with pytest.raises(PromptError, match="object id"):
        ps.add((0,), 0, ObjectPrompt(points=[[1, 2]]))
    with pytest.raises(PromptError, match="plane key"):
        ps.add((-1,), 1, ObjectPrompt(points=[[1, 2]]))


def test_object_prompt_validation_and_is_empty():
    assert ObjectPrompt().is_empty()
    assert not ObjectPrompt(box=[1, 2, 3, 4]).is_empty()
    assert not ObjectPrompt(mask=np.zeros((4, 4), bool)).is_empty()
    assert ObjectPrompt(mask=np.zeros((4, 4))).mask.dtype == np.float32
    with pytest.raises(PromptError, match="box"):
        ObjectPrompt(box=[5, 2, 3, 4])
    with pytest.raises(PromptError, match="2 labels for 1 points"):
        ObjectPrompt(points=[[1, 2]], labels=[1, 0])


def test_to_dict_from_dict_round_trip_through_json():
    ps = merge_prompts(
        points_to_prompts([[0, 2.25, 2.5], [1, 4, 4]], image_shape=(2, 10, 10), labels=[1, 0]),
        shapes_to_prompts([rect(1, 1, 5, 5.5, 0)], image_shape=(2, 10, 10), object_ids=[3]),
    )
    ps.add((1,), 4, ObjectPrompt(mask=np.array([[0.5, -1.25], [3.0, 0.1]], np.float32)))
    ps.add((1,), 5, ObjectPrompt(mask=np.array([[True, False]])))
    text = json.dumps(ps.to_dict())
    back = PromptSet.from_dict(json.loads(text))
    assert back == ps
    assert back.for_plane((1,))[4].mask.dtype == np.float32
    assert back.for_plane((1,))[5].mask.dtype == bool
    no_masks = PromptSet.from_dict(ps.to_dict(include_masks=False))
    assert no_masks.for_plane((1,))[4].is_empty()
    with pytest.raises(PromptError, match="PromptSet.to_dict"):
        PromptSet.from_dict({"planes": []})


# --------------------------------------------------------------------------- property test
_scales = st.floats(0.05, 20.0).flatmap(lambda s: st.sampled_from([s, -s]))
_shifts = st.floats(-1e3, 1e3)


@settings(max_examples=150, deadline=None)
@given(
    image_shape=st.tuples(st.integers(1, 6), st.integers(1, 60), st.integers(1, 60)),
    img_scale=st.tuples(_scales, _scales, _scales),
    img_shift=st.tuples(_shifts, _shifts, _shifts),
    pts_scale=st.tuples(_scales, _scales, _scales),
    pts_shift=st.tuples(_shifts, _shifts, _shifts),
    fractions=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
                       min_size=1, max_size=8),
)
def test_property_round_trip_and_conversion(image_shape, img_scale, img_shift, pts_scale,
                                            pts_shift, fractions):
    img_tf = Transform(scale=img_scale, translate=img_shift)
    pts_tf = Transform(scale=pts_scale, translate=pts_shift)
    depth, h, w = image_shape
    frac = np.array(fractions)
    # integer plane, sub-pixel spatial position inside [0, size-1]
    pix = np.column_stack([np.floor(frac[:, 0] * (depth - 1) + 0.5),
                           frac[:, 1] * (h - 1), frac[:, 2] * (w - 1)])
    world = img_tf.to_world(pix)
    np.testing.assert_allclose(img_tf.to_data(world), pix, rtol=0, atol=1e-9)
    pts_data = pts_tf.to_data(world)
    np.testing.assert_allclose(pts_tf.to_world(pts_data), world, rtol=0, atol=1e-9)

    ps = points_to_prompts(pts_data, image_shape=image_shape, points_transform=pts_tf,
                           image_transform=img_tf)
    assert ps.planes() == sorted({(int(z),) for z in pix[:, 0]})
    for key in ps.planes():  # points keep their input order within an object
        expect = pix[pix[:, 0] == key[0]][:, [2, 1]]
        np.testing.assert_allclose(ps.for_plane(key)[1].points, expect, rtol=0, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    angle=st.floats(-np.pi, np.pi),
    scale=st.tuples(_scales, _scales),
    shift=st.tuples(_shifts, _shifts),
    corners=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
    hw=st.tuples(st.integers(2, 80), st.integers(2, 80)),
)
def test_property_affine_image_boxes(angle, scale, shift, corners, hw):
    c, s = np.cos(angle), np.sin(angle)
    affine = np.array([[c, -s, 3.0], [s, c, -7.0], [0.0, 0.0, 1.0]])
    img_tf = Transform(scale=scale, translate=shift, affine=affine)
    h, w = hw
    ys = sorted([corners[0] * (h - 1), corners[1] * (h - 1)])
    xs = sorted([corners[2] * (w - 1), corners[3] * (w - 1)])
    pix = rect(ys[0], xs[0], ys[1], xs[1])
    world = img_tf.to_world(pix)
    np.testing.assert_allclose(img_tf.to_data(world), pix, rtol=0, atol=1e-9)
    assume(xs[1] - xs[0] > 1e-3 and ys[1] - ys[0] > 1e-3)  # degenerate boxes: unit tests
    box = shapes_to_prompts([world], image_shape=hw, image_transform=img_tf).for_plane(())[1].box
    np.testing.assert_allclose(box, [xs[0], ys[0], xs[1], ys[1]], rtol=0, atol=1e-9)
