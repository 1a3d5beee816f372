"""Simulated prompts: interior points, boxes, correction points (deterministic and seeded)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.evaluation import correction_points, first_prompt, interior_point, object_box
from napari_segany.evaluation.simulate import object_rng


def test_interior_point_is_the_distance_maximum_in_x_y():
    m = np.zeros((40, 60), bool)
    m[10:31, 5:50] = True  # 21 rows x 45 cols: the centre row is 20, columns 15..39 tie
    x, y = interior_point(m)
    assert y == 20 and m[int(y), int(x)]
    assert x == 15  # first maximum in row-major order
    # a concave shape: the point stays inside
    c = np.zeros((50, 50), bool)
    c[5:45, 5:15] = True
    c[35:45, 5:45] = True
    x, y = interior_point(c)
    assert c[int(y), int(x)]
    # the image border counts as border
    edge = np.zeros((20, 20), bool)
    edge[:, :6] = True
    x, y = interior_point(edge)
    assert 2 <= x <= 3


def test_box_goes_through_the_extreme_pixel_centres():
    m = np.zeros((30, 40), bool)
    m[5:12, 7:20] = True
    assert object_box(m).tolist() == [7, 5, 19, 11]
    p = first_prompt(m, "box")
    assert p.box.tolist() == [7, 5, 19, 11] and len(p.points) == 0
    p = first_prompt(m, "point")
    assert p.labels.tolist() == [1] and m[int(p.points[0, 1]), int(p.points[0, 0])]


def test_a_one_pixel_thin_object_gets_a_box_over_its_pixels():
    """A sliver one pixel tall (a nucleus cut by a tile border) got a box of no height,
    which the engine refuses, and stopped a whole box-start evaluation."""
    m = np.zeros((64, 64), bool)
    m[63, 32:40] = True
    assert object_box(m).tolist() == [32, 62.5, 39, 63.5]
    m = np.zeros((64, 64), bool)
    m[3, 7] = True
    assert object_box(m).tolist() == [6.5, 2.5, 7.5, 3.5]


def test_corrections_go_into_the_error_regions():
    truth = np.zeros((40, 40), bool)
    truth[10:30, 10:30] = True
    pred = np.zeros_like(truth)
    pred[10:30, 10:20] = True   # misses the right half
    pred[0:5, 30:40] = True     # and adds a patch
    pts, labels = correction_points(truth, pred)
    assert labels.tolist() == [1, 0]
    (px, py), (nx, ny) = pts
    assert truth[int(py), int(px)] and not pred[int(py), int(px)]
    assert pred[int(ny), int(nx)] and not truth[int(ny), int(nx)]
    # the positive point is farthest from the border of the missed part (rows 10..29,
    # cols 20..29): 5 px from its sides at column 24, rows 14..25 tie, the first wins
    assert (px, py) == (24, 14)


def test_corrections_without_errors_fall_back_like_micro_sam():
    truth = np.zeros((40, 40), bool)
    truth[10:20, 10:20] = True
    pts, labels = correction_points(truth, truth.copy())
    (px, py), (nx, ny) = pts
    assert truth[int(py), int(px)]  # positive: where the mask is already right
    # negative: in the 3-pixel ring around the object inside its grown box
    assert not truth[int(ny), int(nx)] and 7 <= nx <= 22 and 7 <= ny <= 22
    full = np.ones((8, 8), bool)  # nothing outside: two positive points
    _, labels = correction_points(full, full.copy())
    assert labels.tolist() == [1, 1]


def test_random_mode_is_seeded_per_object():
    truth = np.zeros((40, 40), bool)
    truth[5:35, 5:35] = True
    pred = np.zeros_like(truth)
    a = correction_points(truth, pred, "random", object_rng(0, "data", (), 3))[0]
    b = correction_points(truth, pred, "random", object_rng(0, "data", (), 3))[0]
    c = correction_points(truth, pred, "random", object_rng(1, "data", (), 3))[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert truth[int(a[0, 1]), int(a[0, 0])]
    with pytest.raises(ValueError, match="point mode"):
        correction_points(truth, pred, "middle")
