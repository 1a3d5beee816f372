"""Channel axes moved last as a lazy view (napari_segany.io.channels_last), as the API, the
command line and the widget use them."""

from __future__ import annotations

import numpy as np
import pytest

import napari_segany as sa
from napari_segany.io import ChannelsLast, channels_last
from rule_backend import RuleBackend


def _czyx() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(2, 5, 24, 32), dtype=np.uint16)


def test_view_equals_moveaxis_plane_by_plane():
    data = _czyx()
    view = channels_last(data, 0)
    assert isinstance(view, ChannelsLast) and view.shape == (5, 24, 32, 2)
    want = np.moveaxis(data, 0, -1)
    np.testing.assert_array_equal(view[3], want[3])
    np.testing.assert_array_equal(view[1:3, 4], want[1:3, 4])
    np.testing.assert_array_equal(np.asarray(view), want)
    assert channels_last(data, -1) is data and channels_last(data, None) is data


@pytest.mark.parametrize("axis", [4, -5, True, 1.0])
def test_a_missing_channel_axis_is_refused(axis):
    with pytest.raises(ValueError, match="does not exist"):
        channels_last(_czyx(), axis)


def test_segmenter_takes_a_channel_axis(tmp_path):
    """Segmenter(czyx, channel_axis=0) used to fail with 'expected a 3D plane'."""
    data = _czyx()
    data[:, :, 8:16, 10:20] = 3900  # a bright square in both channels
    seg = sa.Segmenter(data, model=RuleBackend(), channel_axis=0,
                       labels=tmp_path / "labels.zarr")
    assert seg.shape == (5, 24, 32) and seg.rgb
    assert seg.plane_rgb(2).shape == (24, 32, 3)
    mask = seg.segment(points=[[14, 12]], plane=2)
    assert mask.shape == (24, 32) and mask[12, 14] and not mask[2, 2]
    assert seg.commit() == 1
    assert seg.labels.read_plane(2)[12, 14] == 1
    with pytest.raises(ValueError, match="not both"):
        sa.Segmenter(np.zeros((5, 24, 32, 3), np.uint8), model=RuleBackend(), rgb=True,
                     channel_axis=0, labels=tmp_path / "other.zarr")


def test_segmenter_refuses_what_is_not_an_array():
    with pytest.raises(TypeError, match="must be an array"):
        sa.Segmenter([[1, 2], [3, 4]], model=RuleBackend())
