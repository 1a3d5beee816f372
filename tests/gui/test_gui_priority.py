"""The model runs at a lower CPU priority than the GUI thread, on threads of its own.

On a CPU the model threads and torch's worker threads take every core; the viewer then
waits for a core at each repaint. The click decoder's thread and the widget's job threads
lower their own priority (Linux nice value) before any model call, and never those of
napari's global thread pool, which other plugins share.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from guihelp import start, wait_idle

from napari_segany._qt._priority import lower_this_thread

linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="per-thread nice values are Linux's")


def _in_thread(fn):
    out = {}

    def run():
        out["value"] = fn()
        out["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out


@linux
def test_lower_this_thread_changes_only_the_calling_thread(monkeypatch):
    monkeypatch.delenv("NAPARI_SEGANY_MODEL_NICE", raising=False)
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    out = _in_thread(lower_this_thread)
    assert out["value"] == out["nice"] == max(10, main_before)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before

    # threads started by a lowered thread (torch's OpenMP team) inherit its priority
    def child_of_lowered():
        lower_this_thread()
        return _in_thread(lambda: None)["nice"]

    assert _in_thread(child_of_lowered)["value"] == max(10, main_before)


@linux
@pytest.mark.parametrize("value, want", [("0", 0), ("15", 15), ("99", 19), ("x", 10)])
def test_the_environment_sets_how_much_lower(monkeypatch, value, want):
    monkeypatch.setenv("NAPARI_SEGANY_MODEL_NICE", value)
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    out = _in_thread(lower_this_thread)
    assert out["nice"] == max(want, main)


@linux
def test_the_decoder_and_jobs_run_lower_but_napari_workers_do_not(viewer_widget, qtbot,
                                                                  rule_model, monkeypatch):
    from napari.qt.threading import create_worker

    monkeypatch.delenv("NAPARI_SEGANY_MODEL_NICE", raising=False)
    viewer, widget = viewer_widget
    img = np.zeros((48, 48), np.uint8)
    img[10:20, 10:20] = 255
    viewer.add_image(img, name="img")
    start(widget, qtbot)  # the model loads in a job
    assert widget.jobs.nice >= 10
    widget.layers.points.add([15, 15])
    wait_idle(widget, qtbot)
    assert widget.preview is not None and widget.preview.mask[15, 15]
    assert widget.executor.nice >= 10

    # a worker of napari's own pool, started after ours, keeps the normal priority
    main = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    got = []
    worker = create_worker(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    worker.returned.connect(got.append)
    worker.start()
    qtbot.waitUntil(lambda: bool(got), timeout=10_000)
    assert got == [main]
