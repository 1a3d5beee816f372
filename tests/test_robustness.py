"""Robustness: property-based round trips, and bad input at every entry point.

Every bad input must raise a clear error naming the problem, and must leave what is
already on disk (labels store, embedding cache) byte-identical. No network, no GPU:
the tiny random-weight SAM and the rule backend only.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from napari_segany import Session, load_model
from napari_segany.api import Segmenter
from napari_segany.cli import main
from napari_segany.engine.weights import CheckpointError
from napari_segany.exports import export_rle, read_rle_csv
from napari_segany.intensity import IntensityError, Normalizer
from napari_segany.prompts import (
    ObjectPrompt,
    PromptError,
    PromptSet,
    Transform,
    points_to_prompts,
    shapes_to_prompts,
)
from napari_segany.session import Segmentation
from napari_segany.storage import CacheMismatchError, EmbeddingCache, LabelsStore, LabelsStoreError
from rule_backend import RuleBackend

TINY = ["--model", "sam_tiny", "--random-weights", "--device", "cpu"]


def snapshot(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in Path(root).rglob("*")
            if p.is_file()}


def volume(shape=(3, 40, 50), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.integers(100, 400, size=shape).astype(np.uint16)
    vol[..., 10:30, 15:35] += 2500
    return vol


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    monkeypatch.setenv("NAPARI_SEGANY_CACHE_DIR", str(tmp_path / "model-cache"))


@pytest.fixture
def on_disk(tmp_path, sam):
    """A session with one committed object in its labels store and one cached plane."""
    vol = volume()
    s = Session(vol, sam, labels=tmp_path / "labels.zarr", cache=tmp_path / "cache.zarr")
    s.commit(s.segment(ObjectPrompt(box=[15, 10, 35, 30]), 1)[1], obj_id=1)
    return s, vol, tmp_path


# =============================================================== property-based round trips
_scales = st.floats(0.1, 10.0).flatmap(lambda s: st.sampled_from([s, -s]))
_shifts = st.floats(-500, 500)
_coord_dtypes = st.sampled_from(["float16", "float32", "float64", "int16", "int32", "int64",
                                 "uint16"])


@settings(max_examples=120, deadline=None)
@given(lead=st.lists(st.integers(1, 4), min_size=0, max_size=2),
       hw=st.tuples(st.integers(1, 40), st.integers(1, 40)),
       dtype=_coord_dtypes, data=st.data())
def test_points_any_ndim_and_coordinate_dtype_convert_exactly(lead, hw, dtype, data):
    """Integer pixel positions in any coordinate dtype land exactly, in 2D, 3D and 4D."""
    shape = (*lead, *hw)
    n = data.draw(st.integers(1, 6))
    pix = np.column_stack([data.draw(st.lists(st.integers(0, s - 1), min_size=n, max_size=n))
                           for s in shape]) if shape else None
    ids = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    labels = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    ps = points_to_prompts(pix.astype(dtype), image_shape=shape, labels=labels, object_ids=ids)
    seen = 0
    for key in ps.planes():
        assert len(key) == len(lead)
        for oid, prompt in ps.for_plane(key).items():
            rows = [i for i in range(n)
                    if tuple(pix[i, :len(lead)]) == key and ids[i] == oid]
            np.testing.assert_array_equal(prompt.points, pix[rows][:, [-1, -2]])
            np.testing.assert_array_equal(prompt.labels, np.array(labels)[rows].astype(int))
            assert prompt.points.dtype == np.float64
            seen += len(rows)
    assert seen == n


@settings(max_examples=100, deadline=None)
@given(depth=st.integers(1, 5), hw=st.tuples(st.integers(2, 60), st.integers(2, 60)),
       scale=st.tuples(_scales, _scales, _scales), shift=st.tuples(_shifts, _shifts, _shifts),
       layer_scale=st.tuples(_scales, _scales, _scales),
       corners=st.tuples(*[st.floats(0, 1)] * 4), z=st.floats(0, 1))
def test_boxes_on_planes_with_scale_and_translate_convert_exactly(depth, hw, scale, shift,
                                                                  layer_scale, corners, z):
    """A rectangle drawn on plane z of a scaled/translated volume gives its pixel box."""
    h, w = hw
    img_tf, shp_tf = Transform(scale=scale, translate=shift), Transform(scale=layer_scale)
    plane = int(round(z * (depth - 1)))
    ys = sorted([corners[0] * (h - 1), corners[1] * (h - 1)])
    xs = sorted([corners[2] * (w - 1), corners[3] * (w - 1)])
    assume(ys[1] - ys[0] > 1e-3 and xs[1] - xs[0] > 1e-3)
    rect = np.array([[plane, ys[0], xs[0]], [plane, ys[0], xs[1]], [plane, ys[1], xs[1]],
                     [plane, ys[1], xs[0]]], float)
    data = shp_tf.to_data(img_tf.to_world(rect))
    ps = shapes_to_prompts([data], image_shape=(depth, h, w), shape_types=["rectangle"],
                           image_transform=img_tf, shapes_transform=shp_tf)
    assert ps.planes() == [(plane,)]
    np.testing.assert_allclose(ps.for_plane((plane,))[1].box, [xs[0], ys[0], xs[1], ys[1]],
                               rtol=0, atol=1e-7)


_prompt = st.builds(
    lambda pts, labs, box, use_box: (pts, labs[: len(pts)], box if use_box else None),
    st.lists(st.tuples(st.floats(-0.5, 99.5), st.floats(-0.5, 99.5)), min_size=0, max_size=4),
    st.lists(st.sampled_from([0, 1]), min_size=4, max_size=4),
    st.tuples(st.floats(0, 40), st.floats(0, 40), st.floats(41, 99), st.floats(41, 99)),
    st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(entries=st.lists(st.tuples(st.tuples(st.integers(0, 9), st.integers(0, 3)),
                                  st.integers(1, 50), _prompt), min_size=1, max_size=6))
def test_prompt_set_round_trips_through_json(entries):
    ps = PromptSet()
    for key, oid, (pts, labs, box) in entries:
        if not pts and box is None:
            continue
        if key in ps and oid in ps.for_plane(key):
            continue
        ps.add(key, oid, ObjectPrompt(points=np.array(pts).reshape(-1, 2), labels=labs,
                                      box=box))
    assume(len(ps))
    back = PromptSet.from_dict(json.loads(json.dumps(ps.to_dict())))
    assert back == ps
    assert back.planes() == ps.planes() and back.object_ids() == ps.object_ids()


_label_dtypes = st.sampled_from([np.uint8, np.uint16, np.uint32, np.int32, np.int64])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
       hw=st.tuples(st.integers(1, 12), st.integers(1, 12)), dtype=_label_dtypes,
       seed=st.integers(0, 2**31), density=st.floats(0, 1), big=st.booleans())
def test_labels_round_trip_through_rle_csv_exactly(lead, hw, dtype, seed, density, big):
    """export_rle -> read_rle_csv is exact for any labels (any dtype, ids up to 2**32-1)."""
    shape = (*lead, *hw)
    rng = np.random.default_rng(seed)
    top = int(min(np.iinfo(dtype).max, 2**32 - 1 if big else 9))
    lab = rng.integers(1, top, size=shape, endpoint=True).astype(dtype)
    lab[rng.random(shape) >= density] = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = export_rle(lab, Path(tmp) / "l.csv")
        back = read_rle_csv(path, shape)
    assert back.dtype == np.uint32 and back.shape == shape
    np.testing.assert_array_equal(back.astype(np.int64), lab.astype(np.int64))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), n_obj=st.integers(1, 5))
def test_session_commit_then_store_and_rle_agree(seed, n_obj):
    """Masks committed through a Session read back exactly from the store and from RLE."""
    rng = np.random.default_rng(seed)
    vol = volume((2, 24, 30), seed % 7)
    with tempfile.TemporaryDirectory() as tmp:
        s = Session(vol, RuleBackend(), labels=Path(tmp) / "l.zarr")
        expected = np.zeros(vol.shape, np.uint32)
        for oid in range(1, n_obj + 1):
            z = int(rng.integers(0, 2))
            mask = rng.random((24, 30)) < 0.3
            s.commit(Segmentation((z,), oid, mask, 1.0, None), overlap="replace")
            expected[z][expected[z] == oid] = 0
            expected[z][mask] = oid
        np.testing.assert_array_equal(np.asarray(s.labels.array[...]), expected)
        back = read_rle_csv(export_rle(s.labels, Path(tmp) / "l.csv"), vol.shape)
        np.testing.assert_array_equal(back, expected)


# ======================================================================== bad input: API
@pytest.mark.parametrize("image, match", [
    (np.zeros(10), "2 or more non-empty axes"),
    (np.zeros((0, 10, 10)), r"\(0, 10, 10\)"),
    (np.zeros((3, 10, 0)), r"\(3, 10, 0\)"),
    (np.zeros((0,)), "2 or more"),
    ("image.tif", "must be an array.*Segmenter"),
    (np.zeros((3, 8, 8), complex), "complex"),
    (np.full((2, 16, 16), np.nan), "NaN"),
])
def test_session_refuses_bad_images(sam, image, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Session(image, sam)


def test_nan_and_inf_pixels_are_tolerated(sam):
    vol = volume().astype(np.float32)
    vol[0, :5] = np.nan
    vol[1, 3, 3] = np.inf
    s = Session(vol, sam)
    assert np.isfinite(s.plane_rgb(0)).all()
    seg = s.segment(ObjectPrompt(points=[[20, 20]]), 0)[1]
    assert seg.mask.shape == (40, 50) and np.isfinite(seg.score)


@pytest.mark.parametrize("prompt, plane, match", [
    (ObjectPrompt(points=[[500, 5]]), 1, r"x=500.*outside the 50x40"),
    (ObjectPrompt(points=[[5, -3]]), 1, r"y=-3.*outside"),
    (ObjectPrompt(box=[5, 5, 5, 5]), 1, "box .* is empty"),
    (ObjectPrompt(box=[100, 100, 200, 200]), 1, "box .* outside the 50x40"),
    (ObjectPrompt(), 1, "empty: give points, a box or a mask"),
    (ObjectPrompt(mask=np.ones((3, 3), bool)), 1, r"mask input of shape \(3, 3\)"),
    (ObjectPrompt(points=[[5, 5]]), 7, r"plane \(7,\) does not exist"),
    (ObjectPrompt(points=[[5, 5]]), -1, r"plane \(-1,\) does not exist"),
    (ObjectPrompt(points=[[5, 5]]), None, r"plane \(\) does not exist"),
    (ObjectPrompt(points=[[5, 5]]), (1, 0), r"plane \(1, 0\) does not exist"),
    ({}, 1, r"no prompts for plane \(1,\)"),
])
def test_segment_bad_prompts_are_named_and_change_nothing(on_disk, prompt, plane, match):
    s, _, root = on_disk
    before = snapshot(root)
    with pytest.raises(ValueError, match=match):
        s.segment(prompt, plane)
    assert snapshot(root) == before


def test_prompt_objects_refuse_malformed_values():
    with pytest.raises(PromptError, match="finite"):
        ObjectPrompt(points=[[np.nan, 5]])
    with pytest.raises(PromptError, match="x0<=x1"):
        ObjectPrompt(box=[20, 20, 5, 5])
    with pytest.raises(PromptError, match="outside"):
        points_to_prompts([[0, 100, 5]], image_shape=(3, 40, 50))
    with pytest.raises(PromptError):
        points_to_prompts([[9, 5, 5]], image_shape=(3, 40, 50))


def _prompts(key, oid, prompt) -> PromptSet:
    ps = PromptSet()
    ps.add(key, oid, prompt)
    return ps


@pytest.mark.parametrize("prompts, kw, match", [
    (_prompts((9,), 2, ObjectPrompt(points=[[5, 5]])), {}, r"plane \(9,\) does not exist"),
    (_prompts((1,), 2, ObjectPrompt(points=[[500, 5]])), {}, r"object 2 on plane \(1,\).*x=500"),
    (_prompts((1,), 2, ObjectPrompt(box=[60, 50, 90, 80])), {}, "outside the 50x40"),
    (_prompts((1,), 2, ObjectPrompt(points=[[5, 5]])), {"method": "nope"}, "'slice' or 'sam2'"),
    (_prompts((1,), 2, ObjectPrompt(points=[[5, 5]])), {"axis": 3}, "axis 3"),
    (_prompts((1,), 2, ObjectPrompt(points=[[5, 5]])), {"planes": (2, 9)}, "planes"),
    (_prompts((1,), 2, ObjectPrompt(points=[[5, 5]])), {"direction": "up"}, "direction"),
    (_prompts((1,), 2, ObjectPrompt(points=[[5, 5]])), {"method": "sam2"}, "SAM2"),
])
def test_propagate_bad_input_is_named_and_changes_nothing(on_disk, prompts, kw, match):
    s, _, root = on_disk
    before = snapshot(root)
    with pytest.raises((ValueError, TypeError), match=match):
        s.propagate(prompts, **kw)
    assert snapshot(root) == before


def test_propagate_on_2d_and_commit_of_wrong_shape(tmp_path, sam):
    s = Session(volume((40, 50)), sam, labels=tmp_path / "l.zarr")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="2D"):
        s.propagate(_prompts((), 1, ObjectPrompt(points=[[5, 5]])))
    with pytest.raises(LabelsStoreError, match=r"mask of shape \(3, 3\)"):
        s.commit(Segmentation((), 1, np.ones((3, 3), bool), 1.0, None))
    with pytest.raises(LabelsStoreError, match="object ids are integers from 1"):
        s.commit(Segmentation((), 1, np.ones((40, 50), bool), 1.0, None), obj_id=0)
    assert snapshot(tmp_path) == before


def test_labels_store_of_another_shape_is_refused_unchanged(on_disk, sam):
    _, vol, root = on_disk
    before = snapshot(root)
    with pytest.raises(LabelsStoreError, match=r"\(3, 40, 50\).*\(3, 20, 50\)"):
        Session(vol[:, :20], sam, labels=root / "labels.zarr")
    with pytest.raises(ValueError, match="do not fit"):
        Session(vol[:, :20], sam, labels=LabelsStore.open(root / "labels.zarr"))
    # a cache created for the refused session is removed again, nothing else is touched
    with pytest.raises(LabelsStoreError):
        Session(vol[:, :20], sam, labels=root / "labels.zarr", cache=root / "new-cache.zarr")
    assert not (root / "new-cache.zarr").exists()
    assert snapshot(root) == before


def test_cache_of_another_model_is_refused_and_nothing_changes(on_disk):
    _, vol, root = on_disk
    before = snapshot(root)
    other = load_model("sam_tiny", random_weights=True, device="cpu", seed=1)
    with pytest.raises(CacheMismatchError, match="random-seed0 vs random-seed1"):
        Session(vol, other, labels=root / "labels.zarr", cache=root / "cache.zarr")
    with pytest.raises(CacheMismatchError, match="made for other inputs"):
        EmbeddingCache(root / "cache.zarr", backend=RuleBackend(),
                       normalizer=Normalizer.fit(vol), data=vol)
    with pytest.raises(CacheMismatchError, match="fingerprint"):  # other data, same model
        Session(vol + 1, load_model("sam_tiny", random_weights=True, device="cpu"),
                cache=root / "cache.zarr")
    assert snapshot(root) == before  # the labels store's provenance was not touched either


def test_directory_that_is_not_a_cache_is_refused(tmp_path, sam):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(CacheMismatchError, match="not an embedding cache"):
        Session(volume(), sam, cache=tmp_path / "notes")
    assert snapshot(tmp_path) == before


# -- checkpoints ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    model = load_model("sam_tiny", random_weights=True, device="cpu", seed=3).model
    torch.save(model.state_dict(), path)
    return path


def test_truncated_checkpoint_is_named_and_changes_nothing(on_disk, checkpoint, tmp_path):
    _, vol, root = on_disk
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    before = snapshot(root)
    with pytest.raises(CheckpointError, match=r"truncated\.pth.*truncated or not a PyTorch"):
        load_model("sam_tiny", checkpoint=bad, device="cpu")
    with pytest.raises(CheckpointError, match="truncated.pth"):
        Segmenter(vol, model="sam_tiny", checkpoint=bad, labels=root / "labels.zarr",
                  cache=root / "cache.zarr", device="cpu")
    assert snapshot(root) == before


def test_tampered_checkpoint_cannot_reuse_the_cache_of_the_original(tmp_path, checkpoint):
    """Encoder weights changed inside a valid file: the encoder's hash differs, so the cache
    is refused (a change in the decoder alone keeps it: the embeddings are the same)."""
    vol = volume()
    good = Session(vol, load_model("sam_tiny", checkpoint=checkpoint, device="cpu"),
                   labels=tmp_path / "l.zarr", cache=tmp_path / "c.zarr")
    good.embedding(0)
    sd = torch.load(checkpoint, weights_only=True)
    name = next(iter(sd))
    assert name.startswith("image_encoder.")
    sd[name] = sd[name] + 1e-3
    tampered = tmp_path / "tampered.pth"
    torch.save(sd, tampered)
    before = snapshot(tmp_path / "c.zarr"), snapshot(tmp_path / "l.zarr")
    with pytest.raises(CacheMismatchError, match="model: encoder .*, weights sha256"):
        Session(vol, load_model("sam_tiny", checkpoint=tampered, device="cpu"),
                labels=tmp_path / "l.zarr", cache=tmp_path / "c.zarr")
    assert (snapshot(tmp_path / "c.zarr"), snapshot(tmp_path / "l.zarr")) == before
    dec = {k: (v + 1e-3 if k.startswith("mask_decoder.") else v)
           for k, v in torch.load(checkpoint, weights_only=True).items()}
    torch.save(dec, tmp_path / "decoder.pth")
    reuse = Session(vol, load_model("sam_tiny", checkpoint=tmp_path / "decoder.pth",
                                    device="cpu"), cache=tmp_path / "c.zarr")
    reuse.embedding(0)
    assert reuse.cache.stats["computed"] == 0
    # a tensor of the wrong shape is named with the architecture
    sd[name] = torch.zeros(3)
    torch.save(sd, tampered)
    with pytest.raises(CheckpointError, match="does not fit architecture 'tiny'"):
        load_model("sam_tiny", checkpoint=tampered, device="cpu")


# ======================================================================== bad input: CLI
def _cli_error(capsys, argv, *needles) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert err.startswith("napari-segany:"), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def cli_disk(tmp_path, capsys):
    """A TIFF volume, a labels store written by propagate, and an embedding cache."""
    tif = tmp_path / "vol.tif"
    tifffile.imwrite(tif, volume((4, 40, 50)), photometric="minisblack")
    out, cache = tmp_path / "out.zarr", tmp_path / "cache"
    assert main(["embed", str(tif), "--cache", str(cache), "-q", *TINY]) == 0
    assert main(["propagate", str(tif), "--box", "15,10,35,30", "--plane", "1", "--cache",
                 str(cache), "--out", str(out), "--min-score", "-1e9", "--min-area", "0",
                 "--max-area-ratio", "inf", "-q", *TINY]) == 0
    capsys.readouterr()
    return tif, out, cache


@pytest.mark.parametrize("extra, needles", [
    (["--points", "500,5", "--plane", "1"], ["500", "outside"]),
    (["--box", "60,50,90,80", "--plane", "1"], ["outside"]),
    (["--box", "5,5,5,5", "--plane", "1"], ["empty"]),
    (["--box", "5,5,20,20", "--plane", "9"], ["9"]),
    (["--box", "5,5,20,20", "--plane", "1", "--range", "3:1"], ["--range"]),
])
def test_cli_propagate_bad_input_leaves_store_and_cache_unchanged(cli_disk, capsys, extra,
                                                                  needles):
    tif, out, cache = cli_disk
    before = snapshot(out), snapshot(cache)
    _cli_error(capsys, ["propagate", str(tif), *extra, "--cache", str(cache), "--out",
                        str(out), "-q", *TINY], *needles)
    assert (snapshot(out), snapshot(cache)) == before


def test_cli_cache_of_another_model_and_bad_checkpoints(cli_disk, capsys, tmp_path, checkpoint):
    tif, out, cache = cli_disk
    before = snapshot(out), snapshot(cache)
    _cli_error(capsys, ["embed", str(tif), "--cache", str(cache), "-q", "--model", "sam2_tiny",
                        "--random-weights", "--device", "cpu"], "made for other inputs")
    _cli_error(capsys, ["propagate", str(tif), "--box", "15,10,35,30", "--plane", "1",
                        "--cache", str(cache), "--out", str(out), "-q", "--model", "sam2_tiny",
                        "--random-weights", "--device", "cpu"], "made for other inputs")
    bad = tmp_path / "cut.pth"
    bad.write_bytes(checkpoint.read_bytes()[:1000])
    _cli_error(capsys, ["propagate", str(tif), "--box", "15,10,35,30", "--plane", "1",
                        "--out", str(out), "-q", "--model", "sam_tiny", "--checkpoint",
                        str(bad), "--device", "cpu"], "cut.pth")
    _cli_error(capsys, ["segment", str(tif), "--box", "15,10,35,30", "--plane", "1",
                        "--out", str(tmp_path / "seg"), "--model", "sam_tiny", "--checkpoint",
                        str(tmp_path / "missing.pth"), "--device", "cpu"], "missing.pth")
    assert (snapshot(out), snapshot(cache)) == before
    assert not (tmp_path / "seg").exists()


def test_cli_nan_and_empty_images(tmp_path, capsys):
    nan = tmp_path / "nan.tif"
    tifffile.imwrite(nan, np.full((3, 20, 20), np.nan, np.float32), photometric="minisblack")
    _cli_error(capsys, ["segment", str(nan), "--points", "5,5", "--plane", "1", "--out",
                        str(tmp_path / "o"), *TINY], "NaN")
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 20, 20), np.uint8))
    err = _cli_error(capsys, ["segment", str(empty), "--points", "5,5", "--out",
                              str(tmp_path / "o"), *TINY])
    assert "empty.npy" in err
    assert not (tmp_path / "o").exists()


def test_segmenter_bad_paths_and_options(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        Segmenter(tmp_path / "nope.tif", model=RuleBackend())
    with pytest.raises(IntensityError, match="rgb=True"):
        Segmenter(volume(), model=RuleBackend(), rgb=True, labels=tmp_path / "l.zarr")
    assert not (tmp_path / "l.zarr").exists()
