"""Tiles of large planes: geometry, prompt routing, lazy cached tile embeddings, stitching, and
exact tiled segmentation (automatic and from boxes) with the deterministic RuleBackend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.draw import disk

from napari_segany.auto import AutoSettings, segment_everything_tiled
from napari_segany.boxes import segment_boxes
from napari_segany.prompts import ObjectPrompt
from napari_segany.session import Session
from napari_segany.storage import CacheMismatchError, EmbeddingCache
from napari_segany.tiling import TiledEmbeddings, TileGrid, segment_tiled, stitch_tile_labels
from rule_backend import RuleBackend

H, W, TILE, HALO = 300, 400, 128, 16


def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 300x400 uint8 plane with 5 bright objects, most of them across tile-core borders.

    With 128-px tiles and a 16-px halo the cores are rows [0,107) [107,193) [193,300) and
    columns [0,109) [109,200) [200,290) [290,400).
    """
    gt = np.zeros((H, W), np.int32)
    rr, cc = disk((107, 109), 18)
    gt[rr, cc] = 1  # on the corner of four cores
    gt[180:211, 150:261] = 2  # wider than any window along x: split over four tiles
    gt[20:61, 230:381] = 3  # 151 px wide: larger than a window
    rr, cc = disk((250, 50), 10)
    gt[rr, cc] = 4  # inside one core
    gt[120:171, 280:301] = 5  # an L across the column border at 290
    gt[150:171, 280:331] = 5
    return np.where(gt > 0, 220, 20).astype(np.uint8), gt


def box_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def assert_same_objects(labels: np.ndarray, gt: np.ndarray) -> None:
    """Each ground-truth object is exactly one label with exactly its pixels, nothing else."""
    assert len(np.unique(labels)) == len(np.unique(gt))
    for i in np.unique(gt)[1:]:
        ids = np.unique(labels[gt == i])
        assert len(ids) == 1 and ids[0] != 0, f"object {i} got labels {ids}"
        assert np.array_equal(labels == ids[0], gt == i), f"object {i} has the wrong extent"


# ----------------------------------------------------------------------------------- geometry
def test_grid_of_the_test_scene():
    grid = TileGrid((H, W), tile=TILE, halo=HALO)
    assert grid.shape == (3, 4) and len(grid) == 12 and grid.tile_shape == (128, 128)
    assert [t.core[:2] for t in grid.tiles[::4]] == [(0, 107), (107, 193), (193, 300)]
    assert [t.core[2:] for t in grid.tiles[:4]] == [(0, 109), (109, 200), (200, 290), (290, 400)]
    assert grid.tiling == {"scheme": "napari-segany.tiles", "version": 1, "tile": 128, "halo": 16}
    assert grid.tile_at(106, 108).index == (0, 0) and grid.tile_at(107, 109).index == (1, 1)
    assert grid.tile_at(-3, 1e6).index == (0, 3)  # clipped to the plane


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 700), w=st.integers(1, 700), tile=st.integers(16, 300),
       halo_frac=st.floats(0, 0.49))
def test_cores_partition_the_plane_inside_their_windows(h, w, tile, halo_frac):
    halo = min(int(tile * halo_frac), (tile - 1) // 2)
    grid = TileGrid((h, w), tile=tile, halo=halo)
    cover = np.zeros((h, w), np.int32)
    for t in grid:
        y0, y1, x0, x1 = t.window
        assert t.shape == grid.tile_shape == (min(tile, h), min(tile, w))
        assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
        cy0, cy1, cx0, cx1 = t.core
        cover[cy0:cy1, cx0:cx1] += 1
        # every core pixel lies >= halo inside its window, except at the plane's edges
        assert cy0 == 0 or cy0 - y0 >= halo
        assert cy1 == h or y1 - cy1 >= halo
        assert cx0 == 0 or cx0 - x0 >= halo
        assert cx1 == w or x1 - cx1 >= halo
    assert np.all(cover == 1)


def test_bad_grids_are_refused():
    with pytest.raises(ValueError, match="halo"):
        TileGrid((500, 500), tile=128, halo=64)
    with pytest.raises(ValueError, match="at least 16"):
        TileGrid((500, 500), tile=8, halo=0)
    assert len(TileGrid((100, 90), tile=128, halo=16)) == 1


# ----------------------------------------------------------------------------------- routing
def test_points_go_to_the_tile_whose_core_contains_them():
    grid = TileGrid((H, W), tile=TILE, halo=HALO)
    for y, x in [(5, 5), (106, 108), (107, 109), (299, 399), (150, 295)]:
        [(tile, local, clip)] = grid.route(ObjectPrompt(points=[[x, y]]))
        assert tile is grid.tile_at(y, x) and not clip
        assert np.allclose(local.points, [[x - tile.window[2], y - tile.window[0]]])


def test_boxes_fitting_a_window_go_to_one_tile_and_larger_ones_are_split():
    grid = TileGrid((H, W), tile=TILE, halo=HALO)
    [(tile, local, clip)] = grid.route(ObjectPrompt(box=[95, 100, 125, 120]))
    assert not clip and tile.index == (1, 1)  # the core holding most of the box
    assert np.allclose(local.box, [95 - tile.window[2], 100 - tile.window[0],
                                   125 - tile.window[2], 120 - tile.window[0]])
    pieces = grid.route(ObjectPrompt(box=[230, 20, 380, 60]))
    assert [t.index for t, _, _ in pieces] == [(0, 2), (0, 3)] and all(c for _, _, c in pieces)
    for t, local, _ in pieces:  # clipped to each window
        assert local.box[0] >= 0 and local.box[2] <= t.shape[1] - 1


def test_points_far_apart_are_split_and_logit_masks_refused():
    grid = TileGrid((H, W), tile=TILE, halo=HALO)
    pieces = grid.route(ObjectPrompt(points=[[10, 10], [390, 290]], labels=[1, 1]))
    assert {t.index for t, _, _ in pieces} >= {(0, 0), (2, 3)}
    assert all(len(p.points) == 1 for t, p, _ in pieces if t.index in ((0, 0), (2, 3)))
    with pytest.raises(ValueError, match="bool"):
        grid.route(ObjectPrompt(mask=np.zeros((64, 64), np.float32)))


# ----------------------------------------------------------------------------------- embeddings
def test_tile_embeddings_are_lazy_and_cached_on_disk(tmp_path):
    img, _ = scene()
    backend = RuleBackend()
    tiled = TiledEmbeddings(img, backend, tile=TILE, halo=HALO, cache=tmp_path / "tiles")
    assert backend.embed_calls == 0  # nothing happens before a tile is asked for
    emb = tiled.get(None, (1, 2))
    t = tiled.grid[1, 2]
    assert emb.original_size == (128, 128)
    assert np.array_equal(tiled.tile_rgb((), t)[..., 0], img[t.slices])
    tiled.get((), (1, 2))
    assert backend.embed_calls == 1 and tiled.stats == {"computed": 1, "loaded": 0}
    assert tiled.cache.signature["tiling"] == tiled.tiling
    assert tiled.precompute() == 11 and backend.embed_calls == 12
    again = TiledEmbeddings(img, backend, tile=TILE, halo=HALO, cache=tmp_path / "tiles")
    again.get((), (2, 3))
    assert backend.embed_calls == 12 and again.stats == {"computed": 0, "loaded": 1}
    with pytest.raises(CacheMismatchError, match="tiling"):
        TiledEmbeddings(img, backend, tile=TILE, halo=24, cache=tmp_path / "tiles")
    with pytest.raises(CacheMismatchError):  # a whole-plane cache is not a tile cache
        EmbeddingCache(tmp_path / "tiles", backend=backend, normalizer=tiled.normalizer,
                       data=img)


def test_tiles_of_a_stack_are_cached_per_plane(tmp_path):
    img, _ = scene()
    stack = np.stack([img, img[::-1]])
    tiled = TiledEmbeddings(stack, RuleBackend(), tile=TILE, halo=HALO,
                            cache=tmp_path / "c", max_in_memory=2)
    assert tiled.cache.lead_shape == (2, 3, 4)
    a, b = tiled.get((0,), (0, 0)), tiled.get((1,), (0, 0))
    assert not np.array_equal(a.tensors["image"], b.tensors["image"])
    with pytest.raises(ValueError, match="plane"):
        tiled.get((2,), (0, 0))


# ----------------------------------------------------------------------------------- segmenting
def test_tiled_box_prompts_give_whole_objects():
    img, gt = scene()
    tiled = TiledEmbeddings(img, RuleBackend(), tile=TILE, halo=HALO)
    prompts = {i: ObjectPrompt(box=box_of(gt == i)) for i in range(1, 6)}
    segs = segment_tiled(tiled, prompts)
    for i, seg in segs.items():
        assert np.array_equal(seg.mask, gt == i), f"object {i}"
        assert seg.score == 1.0
    assert len(segs[1].tiles) == 1 and len(segs[3].tiles) == 2 and len(segs[2].tiles) == 4
    # a click on each object, in the tile whose core holds it
    clicks = {i: ObjectPrompt(points=[np.argwhere(gt == i)[0][::-1]]) for i in range(1, 6)}
    for i, seg in segment_tiled(tiled, clicks).items():
        # the window around a click sees the whole object, or the part of it in the window
        assert seg.mask.any() and not (seg.mask & (gt != i)).any()


def test_tiled_automatic_segmentation_yields_each_object_once():
    img, gt = scene()
    backend = RuleBackend()
    tiled = TiledEmbeddings(img, backend, tile=TILE, halo=HALO)
    done = []
    labels = segment_everything_tiled(tiled, settings=AutoSettings(points_per_side=16),
                                      progress=lambda d, t: done.append((d, t)))
    assert labels.dtype == np.uint32 and labels.shape == (H, W)
    assert_same_objects(labels, gt)
    assert done[0] == (0, 48) and done[-1] == (48, 48)  # 12 tiles x 4 batches of 64 points
    assert backend.embed_calls == 12


def test_tiled_boxes_in_a_session_store(tmp_path):
    img, gt = scene()
    backend = RuleBackend()
    session = Session(img, backend, labels=tmp_path / "l.zarr")
    tiled = TiledEmbeddings.from_session(session, tile=TILE, halo=HALO)
    boxes = [box_of(gt == i) for i in range(1, 6)]
    res = segment_boxes(session, boxes, classes=["a", "b", "c", "d", "e"], tiled=tiled,
                        chunk_size=3)
    plane = session.labels.read_plane()
    assert np.array_equal(plane, gt.astype(np.uint32))
    assert res.ids.tolist() == [1, 2, 3, 4, 5] and np.all(res.areas > 0)
    assert max(backend.predict_calls) <= 3
    objects = session.labels.provenance["objects"]
    assert {k: v["class_name"] for k, v in objects.items()} == {
        "1": "a", "2": "b", "3": "c", "4": "d", "5": "e"}
    assert session.labels.provenance["boxes"]["tiling"]["tile"] == TILE


def test_stitching_joins_agreeing_objects_and_completes_missed_ones():
    grid = TileGrid((60, 100), tile=64, halo=8)
    assert grid.shape == (1, 2)
    left, right = grid[0, 0], grid[0, 1]
    truth = np.zeros((60, 100), np.int32)
    truth[10:30, 25:75] = 1  # crosses the core border, inside both windows
    truth[40:50, 30:40] = 2  # only in the left core, seen only by the left tile
    truth[40:50, 45:55] = 3  # across the border, but missed by the right tile
    la = truth[left.slices].copy()
    lb = np.where(truth[right.slices] == 1, 7, 0)  # other ids, object 3 missed
    out = stitch_tile_labels(grid, {(0, 0): la, (0, 1): lb})
    assert_same_objects(out, truth)
    # masks that disagree in the overlap stay apart
    lb2 = np.zeros_like(lb)
    lb2[10:30, 30:40] = 4
    out2 = stitch_tile_labels(grid, {(0, 0): np.zeros_like(la), (0, 1): lb2})
    assert len(np.unique(out2)) == 2
