"""The on-disk embedding cache, exercised with the real tiny SAM and SAM2 backends."""

from __future__ import annotations

import json
import threading

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_segany.engine import load_model
from napari_segany.intensity import Normalizer
from napari_segany.prompts import ObjectPrompt
from napari_segany.storage import (
    CacheMismatchError,
    EmbeddingCache,
    cache_signature,
    data_fingerprint,
)

Z, H, W = 5, 64, 80


def make_volume(z: int = Z, h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """Bright blobs drifting through a noisy uint16 volume, (z, h, w)."""
    rng = np.random.default_rng(seed)
    vol = rng.integers(100, 400, size=(z, h, w)).astype(np.uint16)
    yy, xx = np.mgrid[:h, :w]
    for i in range(z):
        for cy, cx, r, v in [(20 + i, 25, 12, 3000), (40, 55 - i, 9, 2000)]:
            vol[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = v
    return vol


VOLUME = make_volume()
PROMPTS = [ObjectPrompt(points=[[25.0, 22.0]], labels=[1]),
           ObjectPrompt(points=[[53.0, 40.0], [10.0, 5.0]], labels=[1, 0], box=[40, 28, 68, 52])]


class Spy:
    """A backend proxy counting embed / embed_batch calls (and planes embedded)."""

    def __init__(self, backend):
        self._b = backend
        self.calls = {"embed": 0, "embed_batch": 0, "planes": 0}

    def __getattr__(self, name):
        return getattr(self._b, name)

    def embed(self, image):
        self.calls["embed"] += 1
        self.calls["planes"] += 1
        return self._b.embed(image)

    def embed_batch(self, images):
        self.calls["embed_batch"] += 1
        self.calls["planes"] += len(images)
        return self._b.embed_batch(images)


@pytest.fixture(scope="module")
def backends(sam, sam2):
    return {"sam": sam, "sam2": sam2}


@pytest.fixture(scope="module")
def norm():
    return Normalizer.fit(VOLUME)


def as_kind(arr: np.ndarray, kind: str):
    if kind == "numpy":
        return arr
    if kind == "dask":
        return da.from_array(arr, chunks=(1,) + arr.shape[1:])
    z = zarr.create_array(store={}, shape=arr.shape, chunks=(1,) + arr.shape[1:], dtype=arr.dtype)
    z[...] = arr
    return z


def open_cache(path, backend, norm, data=VOLUME, **kw):
    return EmbeddingCache(path, backend=backend, normalizer=norm, data=data, **kw)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


# ------------------------------------------------------------------------------ reuse from disk
@pytest.mark.parametrize("kind", ["numpy", "zarr", "dask"])
@pytest.mark.parametrize("model", ["sam", "sam2"])
def test_second_access_reads_disk_without_embedding(tmp_path, backends, norm, model, kind):
    spy = Spy(backends[model])
    data = as_kind(VOLUME, kind)
    cache = open_cache(tmp_path / "c", spy, norm, data)
    assert not cache.has(2) and cache.computed_planes() == []
    first = cache.get(2)
    assert spy.calls["planes"] == 1 and cache.stats == {"computed": 1, "loaded": 0}
    assert cache.has(2) and cache.computed_planes() == [(2,)]
    again = cache.get((2,))
    assert spy.calls["planes"] == 1 and cache.stats == {"computed": 1, "loaded": 1}

    spy2 = Spy(backends[model])  # a later session: brand-new object on the same path
    reopened = open_cache(tmp_path / "c", spy2, norm, as_kind(VOLUME, kind))
    later = reopened.get(2)
    assert spy2.calls == {"embed": 0, "embed_batch": 0, "planes": 0}
    assert reopened.stats == {"computed": 0, "loaded": 1}
    assert later.original_size == first.original_size == (H, W)
    assert later.input_size == first.input_size
    for k in first.tensors:  # get() returns the stored precision, every time
        np.testing.assert_array_equal(later.tensors[k].numpy(), first.tensors[k].numpy())
        np.testing.assert_array_equal(again.tensors[k].numpy(), first.tensors[k].numpy())


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("model", ["sam", "sam2"])
def test_cached_predictions_match_fresh(tmp_path, backends, norm, model, dtype):
    backend = backends[model]
    fresh = backend.embed(norm(VOLUME[3]))
    open_cache(tmp_path / "c", backend, norm, dtype=dtype).get(3)
    cache = open_cache(tmp_path / "c", backend, norm, dtype=dtype)
    cached = cache.get(3)
    assert cache.stats["loaded"] == 1
    features = zarr.open_group(str(tmp_path / "c"), mode="r")["features"]
    assert sorted(features.array_keys()) == sorted(fresh.tensors)
    for k, t in fresh.tensors.items():
        arr = features[k]
        assert arr.dtype == np.dtype(dtype) and arr.shape == (Z,) + tuple(t.shape[1:])
        assert arr.chunks == (1,) + tuple(t.shape[1:])
    a = backend.predict(fresh, PROMPTS)
    b = backend.predict(cached, PROMPTS)
    if dtype == "float32":
        np.testing.assert_array_equal(a.masks, b.masks)
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5, rtol=0)
    else:
        for ma, mb in zip(a.masks.reshape(-1, H, W), b.masks.reshape(-1, H, W), strict=True):
            assert iou(ma, mb) > 0.98
        np.testing.assert_allclose(a.scores, b.scores, atol=2e-2, rtol=0)


# ------------------------------------------------------------------------------ precompute
def test_precompute_progress_cancel_and_resume(tmp_path, sam, norm):
    spy = Spy(sam)
    cache = open_cache(tmp_path / "c", spy, norm)
    calls, stop = [], threading.Event()

    def progress(done, total):
        calls.append((done, total))
        if done == 2:
            stop.set()

    assert cache.precompute(progress=progress, cancel=stop) == 2
    assert calls == [(0, 5), (1, 5), (2, 5)]
    assert cache.computed_planes() == [(0,), (1,)] and spy.calls["planes"] == 2

    resumed = Spy(sam)
    again = open_cache(tmp_path / "c", resumed, norm)
    calls.clear()
    assert again.precompute(progress=lambda d, t: calls.append((d, t))) == 3
    assert resumed.calls["planes"] == 3 and again.stats["computed"] == 3
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1] == (3, 3)
    assert again.computed_planes() == [(i,) for i in range(Z)]
    assert again.precompute() == 0 and resumed.calls["planes"] == 3


def test_cancel_callable_and_given_planes(tmp_path, sam, norm):
    cache = open_cache(tmp_path / "c", sam, norm)
    assert cache.precompute(cancel=lambda: True) == 0 and cache.computed_planes() == []
    assert cache.precompute([3, (1,), 3]) == 2
    assert cache.computed_planes() == [(1,), (3,)]
    with pytest.raises(IndexError, match="leading axes"):
        cache.precompute([7])
    with pytest.raises(ValueError, match="batch_size"):
        cache.precompute(batch_size=0)


@pytest.mark.parametrize("model", ["sam", "sam2"])
def test_batch_size_2_matches_batch_1(tmp_path, backends, norm, model):
    spy1, spy2 = Spy(backends[model]), Spy(backends[model])
    one = open_cache(tmp_path / "one", spy1, norm, dtype="float32")
    two = open_cache(tmp_path / "two", spy2, norm, dtype="float32")
    assert one.precompute(batch_size=1) == two.precompute(batch_size=2) == Z
    assert spy1.calls["embed_batch"] == Z and spy2.calls["embed_batch"] == 3
    for z in range(Z):
        a, b = one.get(z), two.get(z)
        assert a.input_size == b.input_size and a.original_size == b.original_size
        for k in a.tensors:
            np.testing.assert_allclose(a.tensors[k].numpy(), b.tensors[k].numpy(),
                                       atol=1e-4, rtol=1e-4)
    assert spy1.calls["planes"] == spy2.calls["planes"] == Z  # the gets were all reads


# ------------------------------------------------------------------------------ mismatches
def mismatch(path, backend, norm, data=VOLUME, **kw) -> str:
    with pytest.raises(CacheMismatchError) as info:
        open_cache(path, backend, norm, data, **kw)
    msg = str(info.value)
    assert str(path) in msg and "delete" in msg and "another cache path" in msg
    return msg


def test_mismatch_model(tmp_path, sam, sam2, norm):
    open_cache(tmp_path / "c", sam, norm)
    msg = mismatch(tmp_path / "c", sam2, norm)
    assert "model: " in msg and "family sam vs sam2" in msg
    assert "fingerprint" not in msg and "normalization" not in msg
    seed1 = load_model("sam_tiny", random_weights=True, device="cpu", seed=1)
    msg = mismatch(tmp_path / "c", seed1, norm)
    assert "model: encoder " in msg and "weights random-seed0 vs random-seed1" in msg


def test_mismatch_data_and_normalizer(tmp_path, sam, norm):
    open_cache(tmp_path / "c", sam, norm)
    changed = VOLUME.copy()
    changed[2, 10, 10] += 1
    msg = mismatch(tmp_path / "c", sam, norm, changed)
    assert "fingerprint: sha256" in msg and "shape" not in msg and "model" not in msg
    msg = mismatch(tmp_path / "c", sam, norm, make_volume(z=6))
    assert "shape (5, 64, 80) vs (6, 64, 80)" in msg
    other = Normalizer.fit(VOLUME, mode="window", window=(0, 1000))
    msg = mismatch(tmp_path / "c", sam, other)
    assert "normalization: " in msg and "mode percentile vs window" in msg
    assert "fingerprint" not in msg
    msg = mismatch(tmp_path / "c", sam, norm, tiling={"tile": 512})
    assert "tiling: None vs {'tile': 512}" in msg
    assert open_cache(tmp_path / "c", sam, norm, as_kind(VOLUME, "dask")).lead_shape == (Z,)


def test_not_a_cache_and_missing(tmp_path, sam, norm):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    with pytest.raises(CacheMismatchError, match="not an embedding cache"):
        open_cache(tmp_path / "junk", sam, norm)
    zarr.open_group(str(tmp_path / "grp"), mode="w")
    with pytest.raises(CacheMismatchError, match="not a napari-segany embedding cache"):
        open_cache(tmp_path / "grp", sam, norm)
    with pytest.raises(FileNotFoundError, match="create=True"):
        open_cache(tmp_path / "none", sam, norm, create=False)
    with pytest.raises(ValueError, match="float16"):
        open_cache(tmp_path / "bad", sam, norm, dtype="int8")
    with pytest.raises(ValueError, match="not a non-empty"):
        open_cache(tmp_path / "c", sam, norm, np.zeros((5,), np.uint16))
    cache = open_cache(tmp_path / "c", sam, norm)
    with pytest.raises(IndexError, match="sizes \\(5,\\)"):
        cache.get(5)


# ------------------------------------------------------------------------------ fingerprint
class CountingArray:
    """Wraps an array and counts the elements every __getitem__ returns."""

    def __init__(self, arr):
        self.arr, self.read = arr, 0
        self.shape, self.dtype = arr.shape, arr.dtype

    def __getitem__(self, idx):
        out = np.asarray(self.arr[idx])
        self.read += out.size
        return out


def test_fingerprint_reads_a_bounded_sample():
    big = np.random.default_rng(1).integers(0, 60000, size=(40, 256, 256)).astype(np.uint16)
    z = as_kind(big, "zarr")
    counting = CountingArray(z)
    fp = data_fingerprint(counting, max_planes=4, max_bytes=64 << 10)
    assert counting.read * 2 <= 64 << 10 and counting.read < big.size / 50
    assert fp["planes"] == 4 and fp["shape"] == [40, 256, 256] and fp["dtype"] == "uint16"
    assert json.loads(json.dumps(fp)) == fp
    assert data_fingerprint(big, max_planes=4, max_bytes=64 << 10) == fp
    assert data_fingerprint(as_kind(big, "dask"), max_planes=4, max_bytes=64 << 10) == fp
    for z_changed, differs in [(0, True), (39, True)]:  # first and last planes are sampled
        changed = big.copy()
        changed[z_changed, 0, 0] += 1
        assert (data_fingerprint(changed, max_planes=4, max_bytes=64 << 10) != fp) is differs
    assert data_fingerprint(VOLUME) != data_fingerprint(VOLUME.astype(np.int32))


def test_signature_parts(sam, norm):
    sig = cache_signature(backend=sam, normalizer=norm, data=VOLUME)
    assert set(sig) == {"fingerprint", "model", "normalization", "tiling", "format"}
    assert sig["model"] == {**sam.signature(), "encoder": sam.encoder_weights_id}
    assert sig["normalization"] == norm.to_dict()
    assert sig["tiling"] is None and sig["format"] == 1


# ------------------------------------------------------------------------------ robustness
class CrashOnDone:
    """Stands in for the ``done`` array and fails when the plane would be marked complete."""

    def __init__(self, arr):
        self.arr = arr

    def __getitem__(self, idx):
        return self.arr[idx]

    def __setitem__(self, idx, value):
        raise RuntimeError("simulated crash before the plane was marked done")


@pytest.mark.parametrize("model", ["sam", "sam2"])
def test_crash_mid_plane_is_recomputed(tmp_path, backends, norm, model):
    cache = open_cache(tmp_path / "c", backends[model], norm)
    cache.get(0)
    cache._done = CrashOnDone(cache._done)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cache.get(2)
    group = zarr.open_group(str(tmp_path / "c"), mode="r")
    assert np.any(group["features/image_embed"][2] != 0)  # the features did reach the disk
    assert list(group["done"][...]) == [1, 0, 0, 0, 0]

    spy = Spy(backends[model])
    reopened = open_cache(tmp_path / "c", spy, norm)
    assert not reopened.has(2) and reopened.computed_planes() == [(0,)]
    reopened.get(2)
    assert spy.calls["planes"] == 1 and reopened.has(2)
    assert reopened.precompute() == 3 and spy.calls["planes"] == 4


def test_rgb_volume(tmp_path, sam2):
    rgb = np.stack([make_volume(3, seed=s) // 12 for s in range(3)], axis=-1).astype(np.uint8)
    norm = Normalizer.fit(rgb, rgb=True)
    cache = open_cache(tmp_path / "c", sam2, norm, rgb, rgb=True)
    assert cache.lead_shape == (3,)
    assert cache.precompute(batch_size=2) == 3
    emb = cache.get(1)
    assert emb.original_size == (H, W)
    fresh = sam2.embed(norm(rgb[1]))
    for ma, mb in zip(sam2.predict(fresh, PROMPTS).masks.reshape(-1, H, W),
                      sam2.predict(emb, PROMPTS).masks.reshape(-1, H, W), strict=True):
        assert iou(ma, mb) > 0.98
    spy = Spy(sam2)
    assert open_cache(tmp_path / "c", spy, norm, rgb, rgb=True).get(2) is not None
    assert spy.calls["planes"] == 0
    msg = mismatch(tmp_path / "c", sam2, norm, rgb)
    assert "fingerprint: " in msg and "rgb True vs False" in msg


def test_2d_image(tmp_path, sam, norm):
    spy = Spy(sam)
    cache = open_cache(tmp_path / "c", spy, norm, VOLUME[0])
    assert cache.lead_shape == () and cache.computed_planes() == []
    assert cache.get().original_size == (H, W)
    assert cache.has(()) and cache.computed_planes() == [()]
    assert cache.precompute() == 0 and spy.calls["planes"] == 1
    assert open_cache(tmp_path / "c", spy, norm, VOLUME[0]).get(None).input_size
    assert spy.calls["planes"] == 1
    assert "planes=1/1 float16" in repr(cache)
