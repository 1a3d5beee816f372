"""Slice-wise propagation (napari_segany.propagate) with a rule backend and tiny real models."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blobs import GT1, GT2, VOL, H, W, Z, bbox, blob1, blob2, center, disc, iou, make_volume  # noqa: F401
from napari_segany.intensity import Normalizer
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.propagate import PlaneResult, SliceSettings, propagate_slicewise
from rule_backend import rule_backend_fixture  # noqa: F401  (the rule_backend fixture)


class Embedder:
    """``get_embedding`` closure: Normalizer fitted once, records each requested key."""

    def __init__(self, data, backend):
        self.data, self.backend = data, backend
        self.normalizer = Normalizer.fit(data)
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, key):
        self.calls.append(key)
        return self.backend.embed(self.normalizer(np.asarray(self.data[key])))


def run(vol, backend, prompts, **kw) -> tuple[dict, Embedder]:
    """Propagate; results keyed by (plane, obj), asserting each is yielded once."""
    emb = Embedder(vol, backend)
    out: dict = {}
    for r in propagate_slicewise(emb, backend, prompts, lead_shape=vol.shape[:-2], **kw):
        assert isinstance(r, PlaneResult)
        assert (r.plane, r.obj_id) not in out, f"{r.plane} object {r.obj_id} yielded twice"
        assert r.mask.shape == vol.shape[-2:] and r.mask.dtype == bool
        out[r.plane, r.obj_id] = r
    return out, emb


def prompt_set(*items) -> PromptSet:
    ps = PromptSet()
    for key, oid, prompt in items:
        ps.add(key, oid, prompt)
    return ps


def passes(calls: list) -> list[list]:
    """Split the embedding requests into monotonic runs (forward, backward passes)."""
    runs, cur = [], [calls[0]]
    for a, b in zip(calls, calls[1:], strict=False):
        if (b > a) == (cur[-1] >= cur[0]) or len(cur) == 1:
            cur.append(b)
        else:
            runs.append(cur)
            cur = [b]
    return runs + [cur]


# ------------------------------------------------------------------------------- recovery
@pytest.mark.parametrize("mode", ["box", "box+point", "box+mask", "points"])
@pytest.mark.parametrize("kind", ["point", "box"])
def test_recovers_blob_from_one_plane(rule_backend, mode, kind):
    p = ObjectPrompt(points=center(GT1[14])) if kind == "point" else ObjectPrompt(box=bbox(GT1[14]))
    res, emb = run(VOL, rule_backend, prompt_set(((14,), 1, p)),
                   settings=SliceSettings(prompt=mode))
    assert {k[0][0] for k in res} == set(range(5, 25))  # nothing outside the blob's planes
    for z in range(5, 25):
        r = res[(z,), 1]
        assert iou(r.mask, GT1[z]) >= 0.9, z
        assert (r.source, r.direction) == (("annotated", 0) if z == 14 else
                                           ("propagated", 1 if z > 14 else -1))
        assert r.score == 1.0
    # one plane, one embedding: 14 and the walks, plus the two stopping planes (4 and 25)
    assert sorted(emb.calls) == [(z,) for z in range(4, 26)]
    assert len(rule_backend.predict_calls) == len(emb.calls)


def test_two_objects_batched(rule_backend):
    ps = prompt_set(((14,), 1, ObjectPrompt(points=center(GT1[14]))),
                    ((12,), 2, ObjectPrompt(box=bbox(GT2[12]))))
    res, emb = run(VOL, rule_backend, ps)
    assert {k[0][0] for k in res if k[1] == 1} == set(range(5, 25))
    assert {k[0][0] for k in res if k[1] == 2} == set(range(8, 21))
    for (plane, oid), r in res.items():
        assert iou(r.mask, (GT1 if oid == 1 else GT2)[plane]) >= 0.9
    # one predict call per visited plane, with both objects where both are active
    assert len(rule_backend.predict_calls) == len(emb.calls)
    assert max(rule_backend.predict_calls) == 2
    runs = passes(emb.calls)
    assert len(runs) == 2
    assert runs[0] == sorted(set(runs[0])) and runs[1] == sorted(set(runs[1]), reverse=True)


def test_session_embedding_as_source(rule_backend):
    from napari_segany.session import Session

    session = Session(VOL, rule_backend)
    ps = prompt_set(((14,), 1, ObjectPrompt(points=center(GT1[14]))))
    res = list(propagate_slicewise(session.embedding, rule_backend, ps,
                                   lead_shape=session.plane_keys_shape))
    assert sorted(r.plane[0] for r in res) == list(range(5, 25))
    assert rule_backend.embed_calls == 22


def test_multimask_keeps_best_candidate(rule_backend):
    ps = prompt_set(((14,), 1, ObjectPrompt(box=bbox(GT1[14]))))
    res, _ = run(VOL, rule_backend, ps, settings=SliceSettings(multimask=True))
    assert {k[0][0] for k in res} == set(range(5, 25))
    assert all(iou(r.mask, GT1[r.plane]) == 1.0 for r in res.values())


def test_rule_backend_contract(rule_backend):
    from napari_segany.engine import Backend

    assert isinstance(rule_backend, Backend)
    emb = rule_backend.embed(np.repeat(VOL[14][..., None], 3, axis=-1))
    again = rule_backend.embedding_from_numpy(emb.to_numpy(), original_size=emb.original_size,
                                              input_size=emb.input_size)
    assert emb.nbytes == H * W * 4 and again.model_id == rule_backend.model_id
    logits = rule_backend.mask_to_logits(GT1[14], again)
    pred = rule_backend.predict(again, [ObjectPrompt(mask=logits),
                                        ObjectPrompt(points=[[2.0, 2.0]])], multimask=False)
    assert pred.masks.shape == (2, 1, H, W) and pred.scores.tolist() == [[1.0], [0.0]]
    assert iou(pred.masks[0, 0], GT1[14]) == 1.0 and rule_backend.predict_calls == [2]


# ---------------------------------------------------------------------- annotated planes
def test_annotated_plane_not_overwritten_and_midpoint_rule(rule_backend):
    # object 1: blob 1 on plane 10, but (on purpose) blob 2 on plane 18
    ps = prompt_set(((10,), 1, ObjectPrompt(box=bbox(GT1[10]))),
                    ((18,), 1, ObjectPrompt(points=center(GT2[18]))))
    res, _ = run(VOL, rule_backend, ps)
    r18 = res[(18,), 1]
    assert r18.source == "annotated" and iou(r18.mask, GT2[18]) == 1.0
    for z in range(5, 15):  # nearer plane 10 (14 is the midpoint: ties go forward)
        assert iou(res[(z,), 1].mask, GT1[z]) == 1.0
        assert res[(z,), 1].direction == (0 if z == 10 else 1 if z > 10 else -1)
    for z in range(15, 21):  # nearer plane 18: blob 2, until it ends
        assert iou(res[(z,), 1].mask, GT2[z]) == 1.0
        assert res[(z,), 1].direction == (0 if z == 18 else 1 if z > 18 else -1)
    assert {k[0][0] for k in res} == set(range(5, 21))


def test_empty_annotation_carries_the_user_prompt(rule_backend):
    # a point on plane 4, where blob 1 does not exist yet: the point prompts plane 5
    ps = prompt_set(((4,), 1, ObjectPrompt(points=center(GT1[5]))))
    res, _ = run(VOL, rule_backend, ps)
    assert not res[(4,), 1].mask.any() and res[(4,), 1].source == "annotated"
    assert {k[0][0] for k in res} == set(range(4, 25))
    assert all(iou(res[(z,), 1].mask, GT1[z]) == 1.0 for z in range(5, 25))


def test_forward_only_runs_up_to_next_annotation(rule_backend):
    ps = prompt_set(((10,), 1, ObjectPrompt(box=bbox(GT1[10]))),
                    ((18,), 1, ObjectPrompt(points=center(GT2[18]))))
    res, _ = run(VOL, rule_backend, ps, direction="forward")
    assert {k[0][0] for k in res} == set(range(10, 21))
    for z in range(11, 18):
        assert res[(z,), 1].direction == 1 and iou(res[(z,), 1].mask, GT1[z]) == 1.0
    assert res[(18,), 1].source == "annotated"


def test_backward_walk_fills_where_forward_walk_stopped(rule_backend):
    truth = np.stack([blob1(z, 0, 19) if z != 5 else np.zeros((H, W), bool) for z in range(Z)])
    vol = make_volume(truth)
    ps = prompt_set(((2,), 1, ObjectPrompt(points=center(truth[2]))),
                    ((12,), 1, ObjectPrompt(points=center(truth[12]))))
    res, _ = run(vol, rule_backend, ps)
    assert {k[0][0] for k in res} == set(range(20)) - {5}
    direction = {k[0][0]: r.direction for k, r in res.items()}
    assert [direction[z] for z in (0, 1, 2, 3, 4)] == [-1, -1, 0, 1, 1]
    assert all(direction[z] == -1 for z in range(6, 12))  # 6, 7 lie past the midpoint 7
    assert all(direction[z] == 1 for z in range(13, 20))


# ------------------------------------------------------------------- direction and range
@pytest.mark.parametrize("direction, planes, expected", [
    ("forward", None, range(14, 25)),
    ("backward", None, range(5, 15)),
    ("both", (10, 20), range(10, 20)),
    ("both", range(12, 30), range(12, 25)),
    ("forward", (0, 17), range(14, 17)),
    ("both", (15, 30), range(0)),  # the annotation lies outside the range: ignored
])
def test_direction_and_range(rule_backend, direction, planes, expected):
    ps = prompt_set(((14,), 1, ObjectPrompt(points=center(GT1[14]))))
    res, emb = run(VOL, rule_backend, ps, direction=direction, planes=planes)
    assert sorted(k[0][0] for k in res) == list(expected)
    lo, hi = planes or (0, Z) if not isinstance(planes, range) else (planes.start, planes.stop)
    assert all(lo <= key[0] < hi for key in emb.calls)


def test_4d_lead_shape_axis_1(rule_backend):
    truth = np.stack([GT1, np.stack([blob1(z, 7, 26) for z in range(Z)])])
    vol = make_volume(truth)
    ps = prompt_set(((0, 14), 1, ObjectPrompt(points=center(truth[0, 14]))),
                    ((1, 16), 3, ObjectPrompt(box=bbox(truth[1, 16]))))
    for axis in (1, -1):
        res, emb = run(vol, rule_backend, ps, axis=axis)
        assert set(res) == ({((0, z), 1) for z in range(5, 25)}
                            | {((1, z), 3) for z in range(7, 27)})
        for (plane, _), r in res.items():
            assert iou(r.mask, truth[plane]) >= 0.9
        assert len(emb.calls) == len(set(emb.calls))
    # along axis 0 only the two t planes of each z line are visited
    res, _ = run(vol, rule_backend, ps, axis=0, settings=SliceSettings(min_area=0))
    assert set(res) == {((0, 14), 1), ((1, 14), 1), ((1, 16), 3), ((0, 16), 3)}


# ------------------------------------------------------------------------ cancel, stops
def test_cancel_between_planes(rule_backend):
    ps = prompt_set(((14,), 1, ObjectPrompt(points=center(GT1[14]))))
    emb, got = Embedder(VOL, rule_backend), []
    gen = propagate_slicewise(emb, rule_backend, ps, lead_shape=(Z,), cancel=lambda: len(got) >= 5)
    for r in gen:
        got.append(r)
    assert [r.plane[0] for r in got] == [14, 15, 16, 17, 18]
    assert len(emb.calls) == 5


def test_stopping_iteration_cancels(rule_backend):
    ps = prompt_set(((14,), 1, ObjectPrompt(points=center(GT1[14]))))
    emb = Embedder(VOL, rule_backend)
    gen = propagate_slicewise(emb, rule_backend, ps, lead_shape=(Z,))
    first = [next(gen) for _ in range(3)]
    gen.close()
    assert [r.plane[0] for r in first] == [14, 15, 16] and len(emb.calls) == 3


def _step_volume(changed: np.ndarray) -> np.ndarray:
    """Planes 0..19: a disc of radius 8 at (32, 32), replaced by `changed` on plane 10."""
    truth = np.zeros((20, H, W), bool)
    truth[:] = disc(32, 32, 8)
    truth[10] = changed
    return truth


@pytest.mark.parametrize("changed, stopping, passing", [
    (disc(32, 32, 1), SliceSettings(), SliceSettings(min_area=0)),  # object ends
    (disc(32, 32, 20), SliceSettings(), SliceSettings(max_area_ratio=math.inf)),  # explosion
    (disc(32, 32, 3), SliceSettings(min_area_ratio=0.4), SliceSettings()),  # collapse
    (disc(32, 42, 8), SliceSettings(min_overlap=0.5), SliceSettings()),  # jump
])
def test_stop_rules(rule_backend, changed, stopping, passing):
    truth = _step_volume(changed)
    vol = make_volume(truth)
    ps = prompt_set(((5,), 1, ObjectPrompt(points=[[32.0, 32.0]])))
    res, _ = run(vol, rule_backend, ps, settings=stopping, direction="forward")
    assert sorted(k[0][0] for k in res) == list(range(5, 10))  # plane 10 is not yielded
    res, _ = run(vol, rule_backend, ps, settings=passing, direction="forward")
    assert (10,) in {k[0] for k in res} and iou(res[(10,), 1].mask, truth[10]) == 1.0


def test_min_score_stops_every_walk(rule_backend):
    ps = prompt_set(((14,), 1, ObjectPrompt(points=center(GT1[14]))))
    res, _ = run(VOL, rule_backend, ps, settings=SliceSettings(min_score=1.5))
    assert list(res) == [((14,), 1)]  # the annotated plane itself is never thresholded


# ------------------------------------------------------------------------- inputs, errors
def test_numpy_zarr_dask_agree(rule_backend):
    import dask.array as da
    import zarr

    vol = make_volume(GT1, GT2, dtype=np.uint16)
    zvol = zarr.create_array(store=zarr.storage.MemoryStore(), shape=vol.shape,
                             dtype=vol.dtype, chunks=(1, H, W))
    zvol[:] = vol
    ps = prompt_set(((14,), 1, ObjectPrompt(points=center(GT1[14]))),
                    ((12,), 2, ObjectPrompt(box=bbox(GT2[12]))))
    results = [run(data, rule_backend, ps)[0]
               for data in (vol, zvol, da.from_array(vol, chunks=(1, H, W)))]
    assert set(results[0]) == {((z,), 1) for z in range(5, 25)} | {((z,), 2) for z in range(8, 21)}
    for other in results[1:]:
        assert set(other) == set(results[0])
        for k, r in results[0].items():
            np.testing.assert_array_equal(other[k].mask, r.mask)


def test_bad_arguments_raise_at_call(rule_backend):
    ps = prompt_set(((14,), 1, ObjectPrompt(points=[[5.0, 5.0]])))
    emb = Embedder(VOL, rule_backend)
    bad = [
        dict(lead_shape=()),
        dict(lead_shape=(Z,), axis=1),
        dict(lead_shape=(Z,), planes=(20, 10)),
        dict(lead_shape=(Z,), planes=(0, Z + 1)),
        dict(lead_shape=(Z,), direction="sideways"),
        dict(lead_shape=(10,)),  # plane 14 does not exist
        dict(lead_shape=(2, Z)),  # keys of the wrong length
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            propagate_slicewise(emb, rule_backend, ps, **kw)
    with pytest.raises(TypeError):
        propagate_slicewise(emb, rule_backend, {}, lead_shape=(Z,))
    assert emb.calls == []
    for kw in [dict(prompt="mask"), dict(min_area=-1), dict(max_area_ratio=0.5),
               dict(min_overlap=2.0), dict(box_margin=-0.1), dict(min_score=math.nan)]:
        with pytest.raises(ValueError):
            SliceSettings(**kw)


def test_empty_prompt_set_yields_nothing(rule_backend):
    assert list(propagate_slicewise(Embedder(VOL, rule_backend), rule_backend, PromptSet(),
                                    lead_shape=(Z,))) == []


# ------------------------------------------------------------------------- tiny real models
NEVER_STOP = dict(min_score=-math.inf, min_area=0, max_area_ratio=math.inf)


@pytest.fixture(scope="module", params=["sam_tiny", "sam2_tiny"])
def tiny(request):
    from napari_segany.engine import load_model

    backend = load_model(request.param, random_weights=True, device="cpu")
    small = np.stack([disc(32, 26 + 2 * z, 10)[:64, :64] for z in range(6)])
    vol = make_volume(small, seed=1)
    cache: dict = {}
    norm = Normalizer.fit(vol)

    def get_embedding(key):
        if key not in cache:
            cache[key] = backend.embed(norm(vol[key]))
        return cache[key]

    return backend, vol, small, get_embedding


@pytest.mark.parametrize("mode", ["box", "box+point", "box+mask"])
def test_tiny_models_propagate(tiny, mode):
    backend, vol, small, get_embedding = tiny
    ps = prompt_set(((2,), 1, ObjectPrompt(box=bbox(small[2]))),
                    ((3,), 2, ObjectPrompt(points=center(small[3]))))
    res = {}
    for r in propagate_slicewise(get_embedding, backend, ps, lead_shape=(6,),
                                 settings=SliceSettings(prompt=mode, **NEVER_STOP)):
        assert (r.plane, r.obj_id) not in res
        res[r.plane, r.obj_id] = r
    assert set(res) == {((z,), o) for z in range(6) for o in (1, 2)}
    for r in res.values():
        assert r.mask.shape == (64, 64) and r.mask.dtype == bool
        assert math.isfinite(r.score)
        assert r.logits.shape == (backend.low_res_size,) * 2
