"""The metrics against hand-made label images and independent implementations.

* segmentation accuracy / mSA: identical, disjoint and a partial overlap computed by hand
  (and python-elf's ``mean_segmentation_accuracy`` where it is installed);
* surface Dice: MONAI's ``compute_surface_dice`` (same definition: equal to 1e-6) and
  DeepMind's ``surface-distance`` (surfel areas: close, not equal);
* DAVIS J and F: hand-derived values on squares (``seg2bmap`` boundaries, disk tolerance).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.evaluation import (
    boundary_map,
    davis_f,
    davis_j,
    dice,
    instance_scores,
    iou,
    match_instances,
    segmentation_accuracy,
    surface_dice,
)


def _three_objects() -> np.ndarray:
    lab = np.zeros((60, 60), np.uint16)
    lab[2:12, 2:12] = 1
    lab[20:30, 5:15] = 2
    lab[40:55, 30:50] = 7
    return lab


def test_iou_and_dice_by_hand():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:4] = True  # 16 px
    b[2:6, 0:4] = True  # 16 px, 8 shared
    assert iou(a, b) == pytest.approx(8 / 24)
    assert dice(a, b) == pytest.approx(16 / 32)
    assert iou(np.zeros(4, bool), np.zeros(4, bool)) == 1.0  # both empty (DAVIS)


def test_msa_identical_is_one_and_disjoint_is_zero():
    lab = _three_objects()
    sc = instance_scores(lab, lab)
    assert sc["msa"] == 1.0 and sc["sa50"] == 1.0 and sc["f1"] == 1.0
    relabelled = np.where(lab > 0, 10 - lab.astype(int), 0)  # other ids, same objects
    assert segmentation_accuracy(lab, relabelled, 0.95) == 1.0
    disjoint = np.zeros_like(lab)
    disjoint[0:10, 40:58] = 1
    disjoint[30:38, 0:10] = 2
    sc = instance_scores(lab, disjoint)
    assert sc["msa"] == 0.0 and sc["precision"] == 0.0 and sc["recall"] == 0.0
    assert sc["n_true"] == 3 and sc["n_pred"] == 2


def test_msa_partial_overlap_computed_by_hand():
    truth = np.zeros((50, 50), np.uint8)
    truth[0:10, 0:10] = 1      # A: 100 px
    truth[20:30, 0:10] = 2     # B: 100 px
    pred = np.zeros_like(truth)
    pred[0:10, 0:10] = 1
    pred[9, 0:10] = 0          # 90 px left ...
    pred[8, 0:3] = 0           # ... 87 px inside A: IoU 0.87
    pred[20:30, 5:15] = 2      # 50 px shared with B: IoU 50 / 150
    pred[40:45, 40:45] = 3     # a false positive
    sc = instance_scores(truth, pred)
    # t <= 0.85: TP 1 (A), FP 2, FN 1 -> 1/4; t = 0.9, 0.95: TP 0 -> 0
    assert sc["sa"][0.85] == pytest.approx(0.25)
    assert sc["sa"][0.9] == 0.0
    assert sc["msa"] == pytest.approx(8 * 0.25 / 10)
    assert sc["sa50"] == pytest.approx(0.25) and sc["sa75"] == pytest.approx(0.25)
    assert sc["precision"] == pytest.approx(1 / 3) and sc["recall"] == pytest.approx(1 / 2)
    assert sc["f1"] == pytest.approx(0.4)
    assert sc["matched_iou"] == {1: pytest.approx(0.87), 2: pytest.approx(1 / 3)}


def test_matching_is_optimal_not_greedy():
    # greedy by best IoU pairs true 0 with pred 0 and leaves true 1 alone; the optimal
    # matching at threshold 0.3 pairs (0, 1) and (1, 0)
    ious = np.array([[0.45, 0.35], [0.40, 0.0]])
    rows, cols = match_instances(ious, 0.3)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=False)) == [(0, 1), (1, 0)]


def test_msa_matches_python_elf():
    elf = pytest.importorskip("elf.evaluation")
    rng = np.random.default_rng(3)
    truth = _three_objects()
    for _ in range(5):
        pred = np.zeros_like(truth)
        for oid, (y, x, h, w) in enumerate(rng.integers(0, 45, (4, 4)), start=1):
            pred[y:y + 5 + h % 12, x:x + 5 + w % 12] = oid
        want = elf.mean_segmentation_accuracy(pred, truth)
        assert instance_scores(truth, pred)["msa"] == pytest.approx(want, abs=1e-9)


# ----------------------------------------------------------------------- surface Dice
def _ball(shape, centre, radii) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=False)) <= 1


CASES = [
    ((20, 40, 40), (10, 20, 20), (6, 12, 12), (10, 22, 19), (5, 11, 13), (3.0, 0.8, 0.8)),
    ((16, 30, 30), (8, 15, 15), (5, 9, 9), (8, 15, 15), (5, 9, 9), (1.0, 1.0, 1.0)),
    ((12, 32, 32), (6, 10, 10), (4, 6, 6), (6, 20, 21), (4, 6, 6), (2.0, 0.5, 0.7)),
    ((10, 24, 24), (0, 12, 12), (5, 8, 8), (1, 12, 13), (5, 8, 8), (5.0, 0.79, 0.79)),
]


@pytest.mark.parametrize("tolerance", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_surface_dice_equals_monai(case, tolerance):
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")
    shape, c1, r1, c2, r2, spacing = CASES[case]
    gt, pred = _ball(shape, c1, r1), _ball(shape, c2, r2)
    ref = monai_metrics.compute_surface_dice(
        torch.from_numpy(pred[None, None].astype(np.float32)),
        torch.from_numpy(gt[None, None].astype(np.float32)),
        class_thresholds=[tolerance], include_background=True, spacing=list(spacing))
    ours = surface_dice(gt, pred, tolerance=tolerance, spacing=spacing)
    assert ours == pytest.approx(float(ref[0, 0]), abs=1e-6)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_surface_dice_close_to_deepmind(case):
    """DeepMind measures surfels (voxel faces at half-voxel offsets, weighted by area), MONAI
    and we boundary voxels: equal on isotropic grids, apart by up to ~0.16 here when the
    tolerance is near an anisotropic slice thickness (never above DeepMind's value)."""
    sd = pytest.importorskip("surface_distance")
    shape, c1, r1, c2, r2, spacing = CASES[case]
    gt, pred = _ball(shape, c1, r1), _ball(shape, c2, r2)
    dists = sd.compute_surface_distances(gt, pred, spacing_mm=spacing)
    for tol in (1.0, 2.0, 4.0, 6.0):
        ref = sd.compute_surface_dice_at_tolerance(dists, tol)
        ours = surface_dice(gt, pred, tolerance=tol, spacing=spacing)
        assert ours <= ref + 1e-9
        assert ours == pytest.approx(ref, abs=0.01 if len(set(spacing)) == 1 else 0.17)


def test_surface_dice_edge_cases():
    m = _ball((8, 20, 20), (4, 10, 10), (3, 5, 5))
    assert surface_dice(m, m, tolerance=0) == 1.0
    assert surface_dice(m, np.zeros_like(m), tolerance=5) == 0.0
    assert np.isnan(surface_dice(np.zeros_like(m), np.zeros_like(m), tolerance=1))
    far = np.roll(m, 9, axis=2)
    assert surface_dice(m, far, tolerance=0.5) < 0.2
    # spacing scales distances: 9 px apart is within 10 mm at 1 mm, not at 2 mm
    assert surface_dice(m, far, tolerance=10, spacing=(1, 1, 1)) == 1.0
    assert surface_dice(m, far, tolerance=10, spacing=(1, 1, 2)) < 1.0
    with pytest.raises(ValueError, match="spacing"):
        surface_dice(m, m, tolerance=1, spacing=(1, 1))


# ----------------------------------------------------------------------- DAVIS J and F
def _square(shift_rows: int = 0, size: int = 100) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[20 + shift_rows:40 + shift_rows, 20:40] = True
    return m


def test_boundary_map_of_a_square_is_the_ring_offset_towards_the_origin():
    b = boundary_map(_square())
    ring = np.zeros_like(b)
    ring[19:40, 19:40] = True
    ring[20:39, 20:39] = False  # the perimeter of rows/cols 19..39: 4 * 21 - 4 pixels
    assert np.array_equal(b, ring) and b.sum() == 80


def test_davis_j_and_f_by_hand():
    a = _square()
    assert davis_j(a, a) == 1.0 and davis_f(a, a) == 1.0
    empty = np.zeros_like(a)
    assert davis_j(empty, empty) == 1.0 and davis_f(empty, empty) == 1.0
    assert davis_f(a, empty) == 0.0 and davis_f(empty, a) == 0.0
    # 100 x 100: tolerance ceil(0.008 * 141.4) = 2 px. Shifted by 1 row every boundary
    # pixel is within 1 px of the other boundary
    assert davis_f(a, _square(1)) == 1.0
    # shifted by 10 rows: 30 of the 80 boundary pixels of each lie within the disk of
    # radius 2 of the other boundary (6 on the crossing row, 12 + 12 on the sides)
    b = _square(10)
    assert davis_j(a, b) == pytest.approx(200 / 600)
    assert davis_f(a, b) == pytest.approx(0.375)
    # an absolute tolerance of 10 px covers the shift
    assert davis_f(a, b, bound_th=10) == 1.0
