"""Automatic segmentation: the overlap rule, the generic and the SAM/SAM2 generators, linking
objects across planes, and sessions writing stacks plane by plane."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from skimage.draw import disk

from napari_segany.auto import (
    AutoSettings,
    Cancelled,
    MaskRecord,
    PlaneLinker,
    auto_plane,
    auto_segment,
    count_batches,
    generate_masks,
    match_labels,
    resolve_overlaps,
    segment_everything,
)
from napari_segany.engine import load_model
from napari_segany.session import Session
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend
from testdata import DATA

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: random weights give junk scores: keep every candidate mask in the smoke tests
KEEP_ALL = dict(pred_iou_thresh=-1e9, stability_score_thresh=-1e9, box_nms_thresh=0.7)


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.uint8)


def box(shape, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


# ----------------------------------------------------------------------------------- overlaps
def test_better_masks_win_overlaps_and_ids_are_consecutive():
    s = (40, 60)
    a, b = box(s, 0, 20, 0, 30), box(s, 10, 30, 20, 50)  # overlap 10 x 10
    labels = resolve_overlaps([a, b], [0.5, 0.9])
    assert labels.dtype == np.uint32 and labels.shape == s
    assert np.all(labels[b] == 1)  # b is better: painted first, keeps the overlap
    assert np.array_equal(labels == 2, a & ~b)
    same = resolve_overlaps([a, b], [0.7, 0.7])  # ties keep the input order
    assert np.all(same[a] == 1)


def test_masks_losing_too_much_are_dropped():
    s = (40, 40)
    big, small = box(s, 0, 30, 0, 30), box(s, 10, 20, 10, 20)
    # the whole wins: the part would lose 100% of its area, it is dropped
    assert np.unique(resolve_overlaps([big, small], [0.9, 0.8])).tolist() == [0, 1]
    # the part wins: the whole loses 1/9 of its area and stays, as a ring
    ring = resolve_overlaps([big, small], [0.8, 0.9])
    assert np.unique(ring).tolist() == [0, 1, 2] and np.all(ring[small] == 1)
    half = box(s, 0, 30, 12, 40)  # would lose 18/28 of its area to big
    assert resolve_overlaps([big, half], max_overlap=0.5).max() == 1
    assert resolve_overlaps([small, half], max_overlap=0.5).max() == 2
    assert resolve_overlaps([half, box(s, 0, 40, 0, 20)], max_overlap=0.1).max() == 1


def test_small_fragments_are_removed_after_resolving():
    s = (30, 60)
    wall = box(s, 0, 30, 20, 23)  # a thin better mask (90 px) cuts a wide one in two
    wide = box(s, 5, 25, 17, 50)  # left piece 20 x 3 = 60 px, right piece 20 x 27
    labels = resolve_overlaps([wall, wide], [0.9, 0.8], min_area=61)
    assert np.unique(labels).tolist() == [0, 1, 2]
    assert np.array_equal(labels == 1, wall)
    assert np.array_equal(labels == 2, box(s, 5, 25, 23, 50))
    # an object smaller than min_area disappears and ids stay consecutive
    labels = resolve_overlaps([box(s, 0, 3, 0, 3), wide], min_area=10)
    assert np.unique(labels).tolist() == [0, 1] and np.all(labels[wide] == 1)


def test_records_and_arrays_resolve_alike():
    rng = np.random.default_rng(3)
    s = (50, 50)
    masks = []
    for _ in range(12):
        y, x = rng.integers(5, 45, 2)
        rr, cc = disk((y, x), rng.integers(3, 12), shape=s)
        m = np.zeros(s, bool)
        m[rr, cc] = True
        masks.append(m)
    scores = rng.random(12)
    recs = [MaskRecord.from_mask(m, sc) for m, sc in zip(masks, scores, strict=True)]
    a = resolve_overlaps(masks, scores, min_area=5)
    b = resolve_overlaps(recs, shape=s, min_area=5)
    assert np.array_equal(a, b)
    ids = np.unique(a)
    assert ids.tolist() == list(range(len(ids)))
    with pytest.raises(ValueError, match="shape"):
        resolve_overlaps(recs)
    assert resolve_overlaps([], shape=s).max() == 0
    assert MaskRecord.from_mask(np.zeros(s, bool)) is None


# ----------------------------------------------------------------------------------- generators
def blobs() -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((96, 128), np.int32)
    for i, (y, x, r) in enumerate([(20, 20, 9), (30, 80, 14), (70, 40, 12), (75, 105, 8)], 1):
        rr, cc = disk((y, x), r)
        gt[rr, cc] = i
    return np.where(gt > 0, 200, 30).astype(np.uint8), gt


def test_grid_generator_finds_every_object_once():
    img, gt = blobs()
    backend = RuleBackend()
    recs = generate_masks(backend, rgb(img), settings=AutoSettings(points_per_side=12))
    assert len(recs) == 4  # duplicates from many points on one object are suppressed
    labels = segment_everything(backend, rgb(img), settings=AutoSettings(points_per_side=12))
    for i in range(1, 5):
        ids = np.unique(labels[gt == i])
        assert len(ids) == 1 and np.array_equal(labels == ids[0], gt == i)


def test_progress_is_per_batch_and_cancel_stops():
    img, _ = blobs()
    backend = RuleBackend()
    s = AutoSettings(points_per_side=10, points_per_batch=32)  # 100 points: 4 batches
    assert count_batches(backend, s) == 4
    seen = []
    segment_everything(backend, rgb(img), settings=s, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    stop = threading.Event()
    calls = []

    def progress(done, total):
        calls.append(done)
        if done == 1:
            stop.set()

    with pytest.raises(Cancelled):
        segment_everything(backend, rgb(img), settings=s, progress=progress, cancel=stop)
    assert calls == [0, 1] and backend.predict_calls[-1] == 32


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_overlap"):
        AutoSettings(max_overlap=1.5)
    with pytest.raises(ValueError, match="generator"):
        AutoSettings(generator="magic")
    with pytest.raises(ValueError, match="of its own"):
        generate_masks(RuleBackend(), rgb(blobs()[0]), settings=AutoSettings(generator="model"))
    with pytest.raises(ValueError, match="crop layers"):
        generate_masks(RuleBackend(), rgb(blobs()[0]), settings=AutoSettings(crop_n_layers=1))


@pytest.mark.parametrize("name", ["sam", "sam2"])
def test_model_generators_run_end_to_end(request, name):
    backend = request.getfixturevalue(name)
    img = rgb(np.random.default_rng(0).integers(0, 255, (96, 144)))
    s = AutoSettings(points_per_side=4, min_area=0, **KEEP_ALL)
    seen = []
    labels = segment_everything(backend, img, settings=s, progress=lambda d, t: seen.append(d))
    assert labels.dtype == np.uint32 and labels.shape == (96, 144)
    ids = np.unique(labels)
    assert ids.tolist() == list(range(len(ids)))
    assert seen == [0, 1]  # 16 points, one batch
    # a precomputed (e.g. cached) embedding gives the same masks without embedding again
    emb = backend.embed(img)
    recs = generate_masks(backend, img, embedding=emb, settings=s)
    again = generate_masks(backend, img, settings=s)
    assert len(recs) == len(again) > 0
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(recs, again, strict=True))
    assert all(np.isfinite(r.score) and r.bbox[1] <= 96 for r in recs)
    with pytest.raises(Cancelled):
        generate_masks(backend, img, embedding=emb, settings=s, cancel=lambda: True)


def test_sam_generator_under_bfloat16_autocast():
    """SAM's generator keeps its results in the autocast dtype; bfloat16 must not break it."""
    backend = load_model("sam_tiny", random_weights=True, device="cpu", precision="bf16")
    img = rgb(np.random.default_rng(2).integers(0, 255, (64, 96)))
    labels = segment_everything(backend, img, embedding=backend.embed(img),
                                settings=AutoSettings(points_per_side=3, min_area=0, **KEEP_ALL))
    assert labels.dtype == np.uint32 and labels.shape == (64, 96)


def test_sam2_generator_with_a_crop_layer(sam2):
    img = rgb(np.random.default_rng(1).integers(0, 255, (64, 80)))
    s = AutoSettings(points_per_side=2, crop_n_layers=1, min_region_area=4, **KEEP_ALL)
    assert count_batches(sam2, s) == 5
    ticks = []
    recs = generate_masks(sam2, img, settings=s, progress=lambda d, t: ticks.append((d, t)))
    assert ticks == [(k, 5) for k in range(6)] and all(r.mask.dtype == bool for r in recs)


# ----------------------------------------------------------------------------------- linking
def moving_stack() -> np.ndarray:
    """(6, 40, 80) labels: A moves right 4 px per plane, B appears on plane 2, C vanishes after
    plane 2, D appears on plane 4; per-plane ids are arbitrary (as automatic ones are)."""
    planes = []
    for z in range(6):
        lab = np.zeros((40, 80), np.int32)
        lab[5:15, 5 + 4 * z:17 + 4 * z] = 3  # A
        if z >= 2:
            lab[25:35, 50:60] = 1  # B
        if z <= 2:
            lab[25:35, 5:15] = 2  # C
        if z >= 4:
            lab[25:35, 20:30] = 7 + z  # D, with a different raw id on every plane
        planes.append(lab)
    return np.stack(planes)


def test_linker_follows_moving_objects_and_never_reuses_ids():
    stack = moving_stack()
    linker = PlaneLinker(min_iou=0.3, next_id=1)
    out = [linker(p) for p in stack]
    a = {int(np.unique(o[5:15, 5 + 4 * z:17 + 4 * z])[0]) for z, o in enumerate(out)}
    assert len(a) == 1  # A keeps its id while it moves
    b = {int(o[30, 55]) for o in out[2:]}
    c = {int(o[30, 10]) for o in out[:3]}
    d = {int(o[30, 25]) for o in out[4:]}
    assert len(b) == len(c) == len(d) == 1
    assert len(a | b | c | d) == 4  # D does not take C's freed id
    assert d.pop() == 4 and linker.next_id == 5
    assert all(o.dtype == np.uint32 for o in out)


def test_match_labels_uses_iou_and_a_threshold():
    prev, cur = np.zeros((10, 100), int), np.zeros((10, 100), int)
    prev[:, 0:40], prev[:, 50:90] = 1, 2
    cur[:, 10:50], cur[:, 60:65] = 5, 6  # 5 overlaps 1 by 30/50; 6 overlaps 2 by 5/40
    assert match_labels(prev, cur, min_iou=0.3) == {5: 1}
    assert match_labels(prev, cur, min_iou=0.1) == {5: 1, 6: 2}
    assert match_labels(prev, np.zeros_like(cur)) == {}
    with pytest.raises(ValueError, match="shapes"):
        match_labels(prev, cur[:5])
    # the assignment is optimal, not greedy: greedy would pair 9 with 1 (IoU 0.46) and leave
    # 8 unmatched; the Hungarian method pairs 8-1 (0.40) and 9-2 (0.30)
    prev, cur = np.zeros((1, 200), int), np.zeros((1, 200), int)
    prev[0, 0:100], prev[0, 100:140] = 1, 2
    cur[0, 0:40], cur[0, 40:130] = 8, 9
    assert match_labels(prev, cur, min_iou=0.25) == {8: 1, 9: 2}


# ----------------------------------------------------------------------------------- sessions
def bright_stack() -> np.ndarray:
    vol = np.full((5, 48, 64), 20, np.uint8)
    for z in range(5):
        vol[z, 8:20, 4 + 5 * z:16 + 5 * z] = 220  # moving
        if z >= 2:
            vol[z, 30:42, 40:52] = 220  # appears
    return vol


def test_auto_segment_links_a_stack_into_the_store(tmp_path):
    vol = bright_stack()
    session = Session(vol, RuleBackend(), labels=tmp_path / "auto.zarr")
    seen = []
    s = AutoSettings(points_per_side=8)
    res = auto_segment(session, settings=s, progress=lambda d, t: seen.append((d, t)))
    assert res.planes == [(z,) for z in range(5)] and not res.cancelled
    assert res.object_ids == [1, 2]
    store = LabelsStore.open(tmp_path / "auto.zarr")
    moving = {int(store.read_plane(z)[14, 10 + 5 * z]) for z in range(5)}
    assert moving == {1}
    assert {int(store.read_plane(z)[35, 45]) for z in range(2, 5)} == {2}
    assert store.read_plane(0)[35, 45] == 0
    prov = store.provenance
    assert prov["objects"] == {"1": {"source": "auto"}, "2": {"source": "auto"}}
    assert prov["auto"]["settings"]["points_per_side"] == 8 and prov["auto"]["link"]
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    # a second run into the same store keeps what is there and gives new ids
    res2 = auto_segment(session, planes=(4, 5), settings=s, link=False)
    assert res2.object_ids == [] and np.array_equal(store.read_plane(4),
                                                    LabelsStore.open(store.path).read_plane(4))


def test_auto_segment_cancel_leaves_whole_planes(tmp_path):
    vol = bright_stack()
    session = Session(vol, RuleBackend(), labels=tmp_path / "c.zarr")
    stop = threading.Event()

    def progress(done, total):  # one batch per plane: stop once two planes are done
        if done == 2:
            stop.set()

    res = auto_segment(session, settings=AutoSettings(points_per_side=8), cancel=stop,
                       progress=progress)
    assert res.cancelled and res.planes == [(0,), (1,)]
    store = session.labels
    assert store.read_plane(1).any() and not store.read_plane(2).any()
    assert store.provenance["planes"] == [[0], [1]]


def test_auto_plane_preview_and_2d_session(tmp_path, sam):
    img, gt = blobs()
    session = Session(img, RuleBackend(), labels=tmp_path / "2d.zarr")
    preview = auto_plane(session, settings=AutoSettings(points_per_side=12))
    assert preview.max() == 4 and not session.labels.read_plane().any()
    res = auto_segment(session, settings=AutoSettings(points_per_side=12))
    assert res.planes == [()] and np.array_equal(session.labels.read_plane(), preview)
    with pytest.raises(ValueError, match="2D"):
        auto_segment(session, planes=(0, 1))
    # a tiny SAM through a session with an on-disk embedding cache
    s2 = Session(bright_stack()[:2], sam, labels=tmp_path / "sam.zarr", cache=tmp_path / "emb")
    res = auto_segment(s2, settings=AutoSettings(points_per_side=3, min_area=0, **KEEP_ALL))
    assert res.planes == [(0,), (1,)] and s2.cache.computed_planes() == [(0,), (1,)]
    assert s2.labels.read_plane(0).dtype == np.uint32


def test_one_plane_of_a_stack_keeps_committed_objects(tmp_path):
    """The widget's "current plane" scope: Session.auto_segment(plane=...), ids above all."""
    vol = bright_stack()
    session = Session(vol, RuleBackend(), labels=tmp_path / "one.zarr")
    store = session.labels
    mine = np.zeros(vol.shape[1:], bool)
    mine[:4, :4] = True
    store.paint((2,), mine, 7)
    store.set_object(7, class_name="mine")
    bad = AutoSettings(generator="model")  # the rule backend has no generator of its own
    before = store.provenance
    with pytest.raises(ValueError, match="generator"):
        session.auto_segment(plane=2, settings=bad)
    assert store.provenance == before  # refused before anything was written
    res = session.auto_segment(plane=(2,), link=False, settings=AutoSettings(points_per_side=8))
    assert res.planes == [(2,)] and res.object_ids and min(res.object_ids) == 8
    plane = store.read_plane(2)
    assert (plane[mine] == 7).all() and set(np.unique(plane)) == {0, 7, *res.object_ids}
    assert not store.read_plane(1).any() and not store.read_plane(3).any()
    objects = store.provenance["objects"]
    assert objects["7"] == {"class_name": "mine"}
    assert all(objects[str(i)] == {"source": "auto"} for i in res.object_ids)
    with pytest.raises(ValueError, match="not both"):
        session.auto_segment(plane=2, planes=(0, 1))


# ----------------------------------------------------------------------------------- real data
@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")
def test_real_nuclei_with_a_tiny_model(tmp_path, sam2):
    from napari_segany.io import read_image
    from napari_segany.tiling import TiledEmbeddings

    img = read_image(DATA / "stardist" / "img2d.tif")
    assert img.data.shape == (512, 512) and img.data.dtype == np.uint16
    session = Session(img.data, sam2, labels=tmp_path / "nuclei.zarr")
    tiled = TiledEmbeddings.from_session(session, tile=256, halo=32)
    assert tiled.grid.shape == (3, 3)
    res = auto_segment(session, tiled=tiled,
                       settings=AutoSettings(points_per_side=3, min_area=4, **KEEP_ALL))
    assert res.planes == [()]
    labels = LabelsStore.open(tmp_path / "nuclei.zarr").read_plane()
    assert labels.shape == (512, 512) and labels.dtype == np.uint32
    ids = np.unique(labels)
    assert ids.tolist() == list(range(len(ids)))
