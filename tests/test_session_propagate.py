"""Session.propagate: results land in the zarr labels store plane by plane."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from blobs import GT1, GT2, VOL, center, iou
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.session import Session
from napari_segany.storage import LabelsStore
from rule_backend import rule_backend_fixture  # noqa: F401  (the rule_backend fixture)


def _prompts(obj=1, gt=GT1, z=14):
    ps = PromptSet()
    ps.add((z,), obj, ObjectPrompt(points=center(gt[z]), labels=[1]))
    return ps


@pytest.mark.parametrize("kind", ["numpy", "zarr", "dask"])
def test_propagated_planes_in_store_match_truth(rule_backend, tmp_path, kind):
    data = VOL
    if kind == "zarr":
        z = zarr.create_array(store=str(tmp_path / "vol.zarr"), shape=VOL.shape,
                              chunks=(1,) + VOL.shape[1:], dtype=VOL.dtype)
        z[:] = VOL
        data = z
    elif kind == "dask":
        da = pytest.importorskip("dask.array")
        data = da.from_array(VOL, chunks=(1,) + VOL.shape[1:])
    session = Session(data, rule_backend, labels=tmp_path / "labels.zarr")
    written = session.propagate(_prompts())
    assert sorted(written[1]) == [(z,) for z in range(5, 25)]
    store = LabelsStore.open(tmp_path / "labels.zarr")
    for z in range(VOL.shape[0]):
        plane = store.read_plane((z,))
        if 5 <= z <= 24:
            assert iou(plane == 1, GT1[z]) >= 0.9, z
        else:
            assert not plane.any(), z
    prov = store.provenance
    assert prov["propagation"]["method"] == "slice"
    assert prov["propagation"]["settings"]["min_score"] == 0.5
    assert "1" in prov["objects"] and prov["model"]["family"] == "rule"
    assert list(prov["prompts"]["planes"]) or prov["prompts"]  # prompts recorded


def test_committed_objects_survive_propagation(rule_backend, tmp_path):
    session = Session(VOL, rule_backend, labels=tmp_path / "labels.zarr")
    # commit object 7 as a region overlapping blob 1 on plane 10
    seg = session.segment({7: ObjectPrompt(points=center(GT1[10]), labels=[1])}, (10,))[7]
    session.commit(seg)
    before = session.labels.read_plane((10,)).copy()
    session.propagate(_prompts())
    after = session.labels.read_plane((10,))
    assert np.array_equal(after == 7, before == 7)  # never overwritten
    assert not np.any(after == 1)  # object 1 had only pixels already taken there


def test_two_objects_and_time_axis(rule_backend, tmp_path):
    stack = np.stack([VOL, VOL])  # (t, z, y, x): propagate along z within t=1
    session = Session(stack, rule_backend, labels=tmp_path / "labels.zarr")
    ps = PromptSet()
    ps.add((1, 14), 1, ObjectPrompt(points=center(GT1[14]), labels=[1]))
    ps.add((1, 12), 2, ObjectPrompt(points=center(GT2[12]), labels=[1]))
    written = session.propagate(ps, axis=1)
    assert {p[0] for p in written[1] + written[2]} == {1}
    assert sorted(p[1] for p in written[2]) == list(range(8, 21))
    plane = session.labels.read_plane((1, 15))
    assert iou(plane == 2, GT2[15]) >= 0.9 and iou(plane == 1, GT1[15]) >= 0.9
    assert not session.labels.read_plane((0, 15)).any()


def test_cancel_then_resume(rule_backend, tmp_path):
    path = tmp_path / "labels.zarr"
    session = Session(VOL, rule_backend, labels=path)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 6

    written = session.propagate(_prompts(), cancel=cancel)
    partial = sorted(written[1])
    assert 0 < len(partial) < 20
    store = LabelsStore.open(path)
    for z in range(VOL.shape[0]):  # every plane is whole: written ones match truth
        plane = store.read_plane((z,))
        assert (iou(plane == 1, GT1[z]) >= 0.9) if (z,) in partial else not plane.any()
    # a new session on the same store continues; earlier planes stay as they were
    again = Session(VOL, rule_backend, labels=path)
    again.propagate(_prompts())
    for z in range(5, 25):
        assert iou(again.labels.read_plane((z,)) == 1, GT1[z]) >= 0.9


def test_bad_requests(rule_backend, tmp_path):
    session = Session(VOL, rule_backend, labels=tmp_path / "labels.zarr")
    with pytest.raises(ValueError, match="method"):
        session.propagate(_prompts(), method="magic")
    with pytest.raises(ValueError, match="SAM2"):
        session.propagate(_prompts(), method="sam2")
    flat = Session(VOL[0], rule_backend, labels=tmp_path / "flat.zarr")
    with pytest.raises(ValueError, match="2D"):
        flat.propagate(PromptSet())
    assert not session.labels.provenance["planes"]  # nothing written by refused requests
