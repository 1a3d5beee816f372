"""Plane keys (napari_segany._planes) and the progress/cancel protocol (_progress)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_segany._planes import (
    along_axis,
    check_axis,
    check_plane,
    check_range,
    iter_keys,
    plane_key,
    plane_order,
)
from napari_segany._progress import check_cancel, counter, is_cancelled
from napari_segany.errors import Cancelled, LabelsStoreError


@pytest.mark.parametrize("plane, key", [
    (None, ()), ((), ()), (3, (3,)), (np.int64(3), (3,)), ((1, 2), (1, 2)), ([1, 2], (1, 2)),
    (np.array([4, 5]), (4, 5)), (2.0, (2,)), (-1, (-1,)),
])
def test_plane_key_normalises(plane, key):
    assert plane_key(plane) == key
    assert all(type(k) is int for k in plane_key(plane))


@pytest.mark.parametrize("plane", [True, np.bool_(False), 1.5, "3", (1, 2.5), (True,), object()])
def test_plane_key_refuses_what_is_not_an_index(plane):
    with pytest.raises(ValueError, match="integer"):
        plane_key(plane)


def test_check_plane_names_the_axes_and_uses_the_error_class():
    assert check_plane((2, 3), (4, 5)) == (2, 3)
    assert check_plane(None, ()) == ()
    with pytest.raises(ValueError, match=r"plane \(4,\) does not exist.*sizes \(4,\).*out of "
                                         "range"):
        check_plane(4, (4,))
    with pytest.raises(LabelsStoreError, match="one index per leading axis"):
        check_plane((1,), (4, 5), error=LabelsStoreError)
    with pytest.raises(IndexError, match=r"\(\) for a 2D image"):
        check_plane(0, (), error=IndexError)
    with pytest.raises(ValueError, match="out of range"):
        check_plane(-1, (4,))  # negative indices are not planes


def test_axes_and_ranges():
    assert check_axis(-1, (3, 4)) == 1
    with pytest.raises(ValueError, match="axis 2 does not exist"):
        check_axis(2, (3, 4))
    with pytest.raises(ValueError, match="a 2D image has none"):
        check_axis(0, ())
    assert check_range(None, 7) == (0, 7)
    assert check_range(range(2, 5), 7) == (2, 5)
    assert check_range((2, 5), 7) == (2, 5)
    for bad in ((5, 2), (0, 8), range(0, 6, 2), (1.5, 3), "ab"):
        with pytest.raises(ValueError):
            check_range(bad, 7)


def test_plane_order_walks_along_the_axis_for_each_other_index():
    assert plane_order(()) == [()]
    with pytest.raises(ValueError, match="2D"):
        plane_order((), planes=(0, 1))
    assert plane_order((3,), planes=(1, 3)) == [(1,), (2,)]
    assert plane_order((2, 3), axis=1) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert plane_order((2, 3), axis=0) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    assert along_axis((7,), 0, 2) == (2, 7) and along_axis((7,), 1, 2) == (7, 2)
    assert list(iter_keys((2, 2))) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert list(iter_keys(())) == [()]


def test_cancel_protocol_reads_events_and_callables():
    event = threading.Event()
    assert not is_cancelled(None) and not is_cancelled(event) and not is_cancelled(lambda: 0)
    event.set()
    assert is_cancelled(event) and is_cancelled(lambda: True)
    with pytest.raises(Cancelled):
        check_cancel(event)
    check_cancel(None)


def test_counter_reports_zero_first_and_never_past_the_total():
    calls = []
    tick = counter(lambda d, t: calls.append((d, t)), 2)
    for _ in range(3):
        tick()
    assert calls == [(0, 2), (1, 2), (2, 2), (2, 2)]
    assert counter(None, 5) is None
