"""SAM2 memory propagation from arrays (tiny random-weight SAM2 built by sam2's builder)."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_segany.engine import load_model
from napari_segany.engine.sam2_video import _LazyFeatures
from napari_segany.intensity import Normalizer
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.propagate import Sam2Propagator, propagate_sam2
from napari_segany.samples import blob_volume
from napari_segany.session import Session
from napari_segany.storage import LabelsStore


@pytest.fixture(scope="module")
def volume():
    return blob_volume(depth=10)


def _getter(backend, data, calls=None):
    norm = Normalizer.fit(data)

    def get(key):
        if calls is not None:
            calls.append(tuple(key))
        return backend.embed(norm(np.asarray(data[key])))

    return get


def _prompts(sample, plane=None):
    ps = PromptSet()
    ps.add(plane or sample.point_plane, 1, ObjectPrompt(points=[sample.point], labels=[1]))
    return ps


def test_lazy_features_match_sam2_backbone(sam2, volume):
    """Features rebuilt from the image-predictor embedding equal SAM2's own forward_image."""
    import torch

    rgb = Normalizer.fit(volume.image)(volume.image[3])
    lazy = _LazyFeatures(sam2.model, lambda i: sam2.embed(rgb))
    _, ours = lazy.get(0)
    with torch.inference_mode():
        x = sam2.predictor._transforms(rgb)[None]
        ref = sam2.model.forward_image(x)
    for a, b in zip(ours["backbone_fpn"], ref["backbone_fpn"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for a, b in zip(ours["vision_pos_enc"], ref["vision_pos_enc"], strict=True):
        torch.testing.assert_close(a, b)
    # asking again for the same frame does not recompute
    lazy.get(0)
    assert lazy.computed == 1
    # another frame shares the (shape-only) position encodings instead of copying them
    _, other = lazy.get(1)
    assert lazy.computed == 2
    assert all(a is b for a, b in zip(other["vision_pos_enc"], ours["vision_pos_enc"],
                                          strict=True))


def test_every_plane_once_per_object(sam2, volume):
    ps = _prompts(volume)
    ps.add((2,), 2, ObjectPrompt(box=[10, 10, 60, 60]))
    calls: list = []
    res = list(propagate_sam2(_getter(sam2, volume.image, calls), sam2, ps,
                              lead_shape=(10,), plane_shape=(128, 128)))
    keys = [(r.plane, r.obj_id) for r in res]
    assert len(keys) == len(set(keys)) == 20
    assert {r.plane for r in res} == {(z,) for z in range(10)}
    sources = {(r.plane, r.obj_id): r.source for r in res}
    assert sources[(volume.point_plane, 1)] == "annotated"
    assert sources[((2,), 2)] == "annotated"
    assert sources[((0,), 1)] == "propagated"
    assert all(r.mask.shape == (128, 128) and r.mask.dtype == bool for r in res)
    # frames are embedded on demand, a few times at most (never the whole stack up front)
    assert len(set(calls)) == 10 and len(calls) <= 10 + 4


def test_direction_and_range(sam2, volume):
    ps = _prompts(volume, plane=(5,))
    fwd = list(propagate_sam2(_getter(sam2, volume.image), sam2, ps, lead_shape=(10,),
                              plane_shape=(128, 128), direction="forward"))
    assert [r.plane[0] for r in fwd] == [5, 6, 7, 8, 9]
    bwd = list(propagate_sam2(_getter(sam2, volume.image), sam2, ps, lead_shape=(10,),
                              plane_shape=(128, 128), direction="backward"))
    assert [r.plane[0] for r in bwd] == [5, 4, 3, 2, 1, 0]
    rng = list(propagate_sam2(_getter(sam2, volume.image), sam2, ps, lead_shape=(10,),
                              plane_shape=(128, 128), planes=(3, 8)))
    assert sorted(r.plane[0] for r in rng) == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="no prompts"):
        list(propagate_sam2(_getter(sam2, volume.image), sam2, ps, lead_shape=(10,),
                            plane_shape=(128, 128), planes=(6, 9)))


def test_4d_propagates_along_chosen_axis(sam2, volume):
    data = np.stack([volume.image[:6], volume.image[2:8]])  # (t=2, z=6, y, x)
    ps = PromptSet()
    ps.add((1, 3), 1, ObjectPrompt(points=[volume.point], labels=[1]))
    res = list(propagate_sam2(_getter(sam2, data), sam2, ps, lead_shape=(2, 6),
                              plane_shape=(128, 128), axis=1))
    assert sorted(r.plane for r in res) == [(1, z) for z in range(6)]


def test_state_stays_bounded_and_corrections_repropagate(sam2):
    sample = blob_volume(depth=40)
    get = _getter(sam2, sample.image)
    prop = Sam2Propagator(sam2, n_frames=40, frame_size=(128, 128),
                          get_embedding=lambda i: get((i,)))
    prop.add_prompt(0, 1, ObjectPrompt(points=[[60.0, 60.0]], labels=[1]))
    held = []
    for _frame, masks in prop.propagate():
        held.append(prop.held_frames())
        assert set(masks) == {1}
    assert len(held) == 40
    # SAM2 keeps per-frame memory for every tracked frame; here at most its window is held
    assert max(held) <= prop.window + 2
    assert held[-1] == held[-10]  # flat, not growing with the number of frames

    corrected = prop.add_prompt(20, 1, ObjectPrompt(points=[[10.0, 10.0]], labels=[0],
                                                   box=[5, 5, 40, 40]))
    again = list(prop.propagate(start=20, direction="forward"))
    assert [f for f, _ in again] == list(range(20, 40))
    np.testing.assert_array_equal(again[0][1][1], corrected)


@pytest.mark.parametrize("kind", ["numpy", "zarr", "dask"])
def test_session_sam2_writes_every_plane(sam2, volume, tmp_path, kind):
    data = volume.image
    if kind == "zarr":
        z = zarr.create_array(store=str(tmp_path / "img.zarr"), shape=data.shape,
                              chunks=(1, 128, 128), dtype=data.dtype)
        z[:] = data
        data = z
    elif kind == "dask":
        da = pytest.importorskip("dask.array")
        data = da.from_array(data, chunks=(1, 128, 128))
    session = Session(data, sam2, labels=tmp_path / "labels.zarr")
    seen = []
    written = session.propagate(_prompts(volume), method="sam2",
                                progress=lambda d, t: seen.append((d, t)))
    assert sorted(written[1]) == [(z,) for z in range(10)]
    store = LabelsStore.open(tmp_path / "labels.zarr")
    assert sorted(tuple(p) for p in store.provenance["planes"]) == [(z,) for z in range(10)]
    assert store.provenance["propagation"]["method"] == "sam2"
    assert seen[-1] == (10, 10)
    assert not list(tmp_path.rglob("*.jpg"))  # frames are never written out as JPEG


def test_cancel_leaves_consistent_store(sam2, volume, tmp_path):
    session = Session(volume.image, sam2, labels=tmp_path / "labels.zarr")
    count = {"n": 0}

    def cancel():
        count["n"] += 1
        return count["n"] > 3

    written = session.propagate(_prompts(volume), method="sam2", cancel=cancel)
    assert sum(len(v) for v in written.values()) == 3
    store = LabelsStore.open(tmp_path / "labels.zarr")
    assert len(store.provenance["planes"]) == 3
    for z in range(10):  # every plane reads back whole
        assert store.read_plane((z,)).shape == (128, 128)


def test_sam_backend_refused(volume):
    sam = load_model("sam_tiny", random_weights=True, device="cpu")
    with pytest.raises(ValueError, match="SAM2 model"):
        list(propagate_sam2(_getter(sam, volume.image), sam, _prompts(volume),
                            lead_shape=(10,), plane_shape=(128, 128)))
