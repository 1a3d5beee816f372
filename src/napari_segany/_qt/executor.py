"""The model executor: one thread that runs the click decoder and plane embeddings off the
GUI thread, in which the latest request wins.

Every click asks for a new preview. Decoding takes tens to hundreds of milliseconds on a
CPU and a first embedding many seconds, so the GUI thread must never run the model: it
hands :meth:`ModelExecutor.submit` a function and gets the result back through a Qt
signal. At most one request waits: a newer one replaces it (the clicks in between are
never decoded), and the result of a request overtaken while it ran is dropped, so the
preview always shows the latest prompts. The functions call
:class:`~napari_segany.session.Session` methods, which hold the session's model lock:
the decoder never runs the backend at the same time as a propagation or an automatic job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

from ._priority import lower_this_thread

__all__ = ["ModelExecutor"]


class _Request:
    def __init__(self, token: int, fn: Callable[[], Any], on_done: Callable[[Any], None],
                 on_error: Callable[[BaseException], None] | None, what: str) -> None:
        self.token, self.fn, self.on_done, self.on_error, self.what = (token, fn, on_done,
                                                                        on_error, what)


class ModelExecutor(QObject):
    """One worker thread with a one-slot queue (the latest request wins).

    Signals
    -------
    state_changed(str)
        What runs now ("" when idle), e.g. "embedding plane (12,)".
    """

    state_changed = Signal(str)
    _finished = Signal(object, object, bool)  # request, result or exception, failed

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cv = threading.Condition()
        self._pending: _Request | None = None
        self._running: _Request | None = None
        self._token = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self.started_at = 0.0
        self.nice = 0  # the worker thread's CPU priority (nice value) once it runs
        self._finished.connect(self._deliver)
        if parent is not None:
            parent.destroyed.connect(self.close)

    @property
    def busy(self) -> bool:
        """A request runs or waits."""
        with self._cv:
            return self._running is not None or self._pending is not None

    @property
    def running(self) -> str:
        """What runs now ("" when nothing)."""
        with self._cv:
            return self._running.what if self._running is not None else ""

    def submit(self, fn: Callable[[], Any], *, on_done: Callable[[Any], None],
               on_error: Callable[[BaseException], None] | None = None,
               what: str = "decoding") -> int:
        """Run ``fn()`` in the worker; ``on_done(result)`` (or ``on_error(exc)``) on the GUI
        thread, unless a newer request came meanwhile. Returns the request's token."""
        with self._cv:
            if self._closed:
                return self._token
            self._token += 1
            self._pending = _Request(self._token, fn, on_done, on_error, what)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="segany-model",
                                                daemon=True)
                self._thread.start()
            self._cv.notify()
            return self._token

    def cancel(self) -> None:
        """Drop the waiting request and the result of the running one (a model call cannot
        be interrupted: it finishes in the background, its result unused)."""
        with self._cv:
            self._token += 1
            self._pending = None

    def close(self, *_: Any) -> None:
        """Stop the worker after what it runs now (the widget is going away)."""
        with self._cv:
            self._closed = True
            self._pending = None
            self._token += 1
            self._cv.notify()

    def wait(self, timeout: float = 30.0) -> bool:
        """Process events until idle (for scripts and tests)."""
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self.busy and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.002)
        QApplication.processEvents()
        return not self.busy

    def _loop(self) -> None:
        self.nice = lower_this_thread()  # the viewer comes first (see ._priority)
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                req, self._pending = self._pending, None
                self._running = req
            self.started_at = time.monotonic()
            self.state_changed.emit(req.what)
            try:
                result, failed = req.fn(), False
            except Exception as exc:  # delivered to on_error on the GUI thread
                result, failed = exc, True
            self._finished.emit(req, result, failed)

    def _deliver(self, req: _Request, result: Any, failed: bool) -> None:
        with self._cv:
            if self._running is req:
                self._running = None
            current = req.token == self._token
            idle = self._running is None and self._pending is None
        if idle:
            self.state_changed.emit("")
        if not current:
            return  # overtaken by a newer request, or cancelled
        if failed:
            if req.on_error is not None:
                req.on_error(result)
        else:
            req.on_done(result)
