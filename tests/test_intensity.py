"""Tests for napari_segany.intensity (numpy only core; zarr/dask optional)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_segany.intensity import CT_WINDOWS, IntensityError, Normalizer


def _check_out(out, h, w):
    assert out.shape == (h, w, 3)
    assert out.dtype == np.uint8
    assert out.flags["C_CONTIGUOUS"]


class CountingArray:
    """Array-like that records every read and refuses to be loaded whole."""

    def __init__(self, arr):
        self._arr = arr
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim
        self.calls = 0
        self.elements = 0

    def __getitem__(self, idx):
        out = np.asarray(self._arr[idx])
        self.calls += 1
        self.elements += out.size
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array must never be materialised")


def test_uint8_identity_exact():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    norm = Normalizer.fit(img)
    assert norm.mode == "identity"
    out = norm(img)
    _check_out(out, 16, 16)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], img)


def test_bool_identity():
    img = np.zeros((4, 5), dtype=bool)
    img[1, 2] = True
    out = Normalizer.fit(img)(img)
    assert out[1, 2].tolist() == [255, 255, 255]
    assert out.sum() == 3 * 255


def test_uint16_percentile_maps_percentiles_to_0_and_255():
    rng = np.random.default_rng(0)
    img = rng.integers(100, 60000, size=(200, 300)).astype(np.uint16)
    norm = Normalizer.fit(img)
    assert norm.mode == "percentile"
    lo, hi = np.percentile(img, [1.0, 99.8])  # sample is the whole image here
    assert norm.low == pytest.approx((lo,)) and norm.high == pytest.approx((hi,))
    out = norm(img)
    _check_out(out, 200, 300)
    assert np.all(out[img <= lo] == 0)
    assert np.all(out[img >= hi] == 255)
    assert 0 < out.mean() < 255
    probe = np.array([[np.floor(lo), np.ceil(hi)]], dtype=np.uint16)
    assert norm(probe)[0, :, 0].tolist() == [0, 255]


def test_ct_soft_tissue_window_exact_values():
    hu = np.array([[-1000, -160, 40, 240, 3000, 0]], dtype=np.int16)
    norm = Normalizer.fit(hu, mode="window", window="ct_soft_tissue")
    assert (norm.low, norm.high) == ((-160.0,), (240.0,))
    out = norm(hu)[0, :, 0]
    # 40 HU -> 0.5 * 255 = 127.5, rounded half up -> 128; 0 HU -> 102.0 exactly
    assert out.tolist() == [0, 0, 128, 255, 255, 102]


def test_window_tuple_and_errors():
    norm = Normalizer.fit(np.zeros((3, 3), np.float32), mode="window", window=(0.0, 10.0))
    assert norm(np.full((3, 3), 5.0))[0, 0, 0] == 128
    with pytest.raises(IntensityError, match="ct_lung"):
        Normalizer.fit(np.zeros((3, 3)), mode="window", window="ct_spleen")
    with pytest.raises(IntensityError, match="window"):
        Normalizer.fit(np.zeros((3, 3)), mode="window")
    with pytest.raises(IntensityError, match="low must be < high"):
        Normalizer.fit(np.zeros((3, 3)), mode="window", window=(5.0, 5.0))
    with pytest.raises(IntensityError, match="mode"):
        Normalizer.fit(np.zeros((3, 3)), mode="minmax")
    assert set(CT_WINDOWS) == {"ct_soft_tissue", "ct_lung", "ct_bone", "ct_brain", "ct_liver"}


def test_float_nan_inf_ignored_and_mapped_to_zero():
    img = np.linspace(0.0, 1.0, 100, dtype=np.float32).reshape(10, 10)
    img[0, 0] = np.nan
    img[0, 1] = np.inf
    img[0, 2] = -np.inf
    norm = Normalizer.fit(img, percentiles=(0.0, 100.0))
    finite = img[np.isfinite(img)]
    assert norm.low == (pytest.approx(float(finite.min())),)
    assert norm.high == (pytest.approx(float(finite.max())),)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = norm(img)
    assert out[0, 0:3, 0].tolist() == [0, 0, 0]
    assert out[9, 9, 0] == 255


def test_constant_image_no_warnings():
    img = np.full((8, 8), 7.0, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        norm = Normalizer.fit(img)
        out = norm(img)
        assert norm.low == norm.high == (7.0,)
        assert np.all(out == 0)
        probe = np.array([[6.0, 7.0, 8.0]], dtype=np.float32)
        assert norm(probe)[0, :, 0].tolist() == [0, 0, 255]


def test_all_nan_and_zero_size_errors():
    with pytest.raises(IntensityError, match="NaN or infinite"):
        Normalizer.fit(np.full((4, 4), np.nan, dtype=np.float32))
    with pytest.raises(IntensityError, match="empty"):
        Normalizer.fit(np.zeros((0, 5, 5), dtype=np.uint16))


@pytest.mark.parametrize("dtype", [np.complex64, object])
def test_bad_dtypes(dtype):
    with pytest.raises(IntensityError, match="dtype"):
        Normalizer.fit(np.zeros((4, 4), dtype=dtype))


def test_rgb_passthrough_and_rgba_drops_alpha():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    norm = Normalizer.fit(rgb, rgb=True)
    assert norm.channel_axis == -1 and norm.channels == (0, 1, 2)
    out = norm(rgb)
    _check_out(out, 6, 7)
    np.testing.assert_array_equal(out, rgb)
    rgba = np.concatenate([rgb, np.full((6, 7, 1), 17, np.uint8)], axis=-1)
    np.testing.assert_array_equal(Normalizer.fit(rgba, rgb=True)(rgba), rgb)
    with pytest.raises(IntensityError, match="3 or 4"):
        Normalizer.fit(np.zeros((6, 7, 5), np.uint8), rgb=True)


def test_multichannel_channel_axis_and_selection():
    c0 = np.full((5, 6), 10, np.uint8)
    c1 = np.full((5, 6), 20, np.uint8)
    c2 = np.full((5, 6), 30, np.uint8)
    chw = np.stack([c0, c1, c2, c0])
    norm = Normalizer.fit(chw, channel_axis=0, channels=(2, 0))
    assert norm.channel_axis == -3 and norm.channels == (2, 0)
    out = norm(chw)
    _check_out(out, 5, 6)
    assert out[0, 0].tolist() == [30, 10, 0]  # two channels -> R, G; B = 0
    single = Normalizer.fit(chw, channel_axis=0, channels=(1,))(chw)
    assert single[0, 0].tolist() == [20, 20, 20]


def test_channel_axis_between_leading_and_spatial():
    rng = np.random.default_rng(2)
    zcyx = rng.integers(0, 4000, size=(4, 2, 9, 11)).astype(np.uint16)
    norm = Normalizer.fit(zcyx, channel_axis=-3)
    assert norm.channel_axis == -3 and norm.channels == (0, 1)
    out = norm(zcyx[2])
    _check_out(out, 9, 11)
    assert np.all(out[..., 2] == 0)
    with pytest.raises(IntensityError, match="expected a 3D plane"):
        norm(zcyx[2, 0])


def test_channel_errors():
    data = np.zeros((5, 8, 8), np.uint16)
    with pytest.raises(IntensityError, match="channels="):
        Normalizer.fit(data, channel_axis=0)
    with pytest.raises(IntensityError, match="out of range"):
        Normalizer.fit(data, channel_axis=0, channels=(0, 5))
    with pytest.raises(IntensityError, match="1 to 3"):
        Normalizer.fit(data, channel_axis=0, channels=(0, 1, 2, 3))
    with pytest.raises(IntensityError, match="out of range"):
        Normalizer.fit(data, channel_axis=3)


def test_wrong_plane_ndim_names_shapes():
    norm = Normalizer.fit(np.zeros((3, 4, 5), np.uint16) + np.arange(5, dtype=np.uint16))
    with pytest.raises(IntensityError, match=r"\(3, 4, 5\)"):
        norm(np.zeros((3, 4, 5), np.uint16))
    with pytest.raises(IntensityError, match="dtype"):
        norm(np.zeros((4, 5), np.complex64))


def test_volume_fit_is_consistent_across_planes():
    rng = np.random.default_rng(3)
    dim = rng.uniform(100, 200, size=(10, 10)).astype(np.float32)
    bright = rng.uniform(1000, 2000, size=(10, 10)).astype(np.float32)
    vol = np.stack([dim, bright])
    norm = Normalizer.fit(vol)
    lo, hi = np.percentile(vol, [1.0, 99.8])
    expected = np.floor(np.clip((vol - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)
    for z in range(2):
        np.testing.assert_array_equal(norm(vol[z])[..., 0], expected[z])
    assert norm(vol[0]).mean() < 40 < 150 < norm(vol[1]).mean()
    # per-plane fitting would erase the brightness difference
    per_plane = [Normalizer.fit(p)(p).mean() for p in vol]
    assert abs(per_plane[0] - per_plane[1]) < 20


def test_large_zarr_fit_reads_bounded_sample():
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(store={}, shape=(300, 256, 256), chunks=(1, 256, 256), dtype="uint16")
    z[...] = np.arange(300, dtype=np.uint16)[:, None, None] * 10 + 5
    counted = CountingArray(z)
    norm = Normalizer.fit(counted, max_planes=8, max_pixels=20_000)
    assert counted.calls <= 8
    assert counted.elements <= 20_000
    assert norm.low[0] < 200 and norm.high[0] > 2800  # spans first..last planes
    _check_out(norm(z[150]), 256, 256)


def test_sampling_with_many_channels_is_bounded():
    data = CountingArray(np.ones((20, 10, 64, 64), np.float32))
    Normalizer.fit(data, channel_axis=1, channels=(0, 9), max_planes=4, max_pixels=1000)
    assert data.calls <= 4 * 2 and data.elements <= 1000


def test_to_dict_from_dict_round_trip():
    data = np.random.default_rng(4).normal(size=(3, 16, 16, 3)).astype(np.float32)
    for norm in (
        Normalizer.fit(data, rgb=True),
        Normalizer.fit(data[..., 0]),
        Normalizer.fit(data[..., 0], mode="window", window="ct_bone"),
    ):
        d = json.loads(json.dumps(norm.to_dict()))
        again = Normalizer.from_dict(d)
        assert again == norm
        np.testing.assert_array_equal(again(data[1] if norm.channels else data[1, ..., 0]),
                                      norm(data[1] if norm.channels else data[1, ..., 0]))
    with pytest.raises(IntensityError, match="missing"):
        Normalizer.from_dict({"mode": "window"})


def test_dask_array_input():
    da = pytest.importorskip("dask.array")
    arr = np.random.default_rng(5).normal(100, 30, size=(6, 32, 40)).astype(np.float32)
    darr = da.from_array(arr, chunks=(1, 16, 16))
    norm_d = Normalizer.fit(darr)
    norm_n = Normalizer.fit(arr)
    assert norm_d == norm_n
    np.testing.assert_array_equal(norm_d(darr[3]), norm_n(arr[3]))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(-32768, 32767), min_size=2, max_size=64),
    st.sampled_from(["percentile", "window"]),
)
def test_output_is_monotone_uint8(values, mode):
    row = np.array([values], dtype=np.int16)
    norm = Normalizer.fit(row, mode=mode, window="ct_bone" if mode == "window" else None)
    out = norm(row)
    _check_out(out, 1, len(values))
    order = np.argsort(row[0], kind="stable")
    assert np.all(np.diff(out[0, order, 0].astype(int)) >= 0)
