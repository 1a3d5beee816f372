"""Model work runs at a lower CPU priority than the GUI thread.

The model threads (the click decoder, propagation, automatic jobs) and torch's own
worker threads use every core; the GUI thread then waits for a core whenever it has a
repaint or a key press to handle, and the viewer stutters. On Linux a thread has its
own nice value, inherited by the threads it starts (torch's OpenMP team for that
thread is started by it), so a model thread that lowers its own priority before any
model call keeps the viewer responsive while costing nothing when the GUI is idle.
Elsewhere this does nothing. ``NAPARI_SEGANY_MODEL_NICE`` (0-19, default 10) sets how
much lower; 0 turns it off.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["lower_this_thread"]

_DEFAULT_NICE = 10


def _wanted() -> int:
    try:
        return max(0, min(19, int(os.environ.get("NAPARI_SEGANY_MODEL_NICE", _DEFAULT_NICE))))
    except ValueError:
        return _DEFAULT_NICE


def lower_this_thread() -> int:
    """Lower the calling thread's CPU priority (Linux); returns its nice value, or 0."""
    if not sys.platform.startswith("linux"):
        return 0
    want = _wanted()
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        if now < want:
            os.setpriority(os.PRIO_PROCESS, tid, want)
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:  # not permitted here: run at the priority we have
        return 0
