"""Long work (loading a model, embedding, precompute, propagation) in napari thread workers.

One job runs at a time. A job is a plain function ``fn(cancel, progress)`` run in a
:func:`napari.qt.threading.create_worker` worker, on threads of the widget's own that run
at a lower CPU priority than the GUI thread (:mod:`._priority`): ``cancel()`` says whether
the user pressed Cancel (the core checks it between planes), ``progress(done, total)``
moves the widget's progress bar (``total=None``: busy indicator). Results and errors come back on
the GUI thread; an error becomes a napari notification that names the job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

from ._priority import lower_this_thread

__all__ = ["JobRunner"]


class _Failed:
    """A job's exception, returned (not raised) so that napari shows it only once."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _CancelState:
    """Plain Python: survives its Qt owner, so a dying widget can still cancel its job."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def cancel(self, *_: Any) -> None:
        self.event.set()


_POOL: Any = None


def _pool() -> Any:
    """The threads that run the widget's jobs, apart from napari's global pool: a job lowers
    its thread's CPU priority for good (raising it again needs privileges), which must not
    reach other plugins' workers."""
    global _POOL
    if _POOL is None:
        from qtpy.QtCore import QThreadPool
        from qtpy.QtWidgets import QApplication

        _POOL = QThreadPool(QApplication.instance())
        _POOL.setMaxThreadCount(4)
    return _POOL


class JobRunner(QObject):
    """Runs one job at a time in a napari thread worker.

    Signals
    -------
    progressed(done, total)
        From the worker thread, delivered on the GUI thread; ``total`` -1 means unknown.
    busy_changed(busy)
        A job started (True) or ended (False).
    """

    progressed = Signal(int, int)
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: Any = None
        self.title = ""
        self.cancellable = False
        self._state = _CancelState()
        self._on_done: Callable[[Any], None] | None = None
        self._on_error: Callable[[BaseException], None] | None = None
        self.started_at = 0.0
        self.nice = 0  # the CPU priority (nice value) the last job ran at
        if parent is not None:
            parent.destroyed.connect(self._state.cancel)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    @property
    def cancel_requested(self) -> bool:
        return self._state.event.is_set()

    def start(self, fn: Callable[[Callable[[], bool], Callable[..., None]], Any], *,
              title: str, on_done: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              cancellable: bool = True) -> Any:
        """Run ``fn(cancel, progress)`` in a thread worker; refuse when a job is running."""
        from napari.qt.threading import create_worker

        if self.busy:
            raise RuntimeError(f"{self.title} is still running; wait for it or cancel it")
        self._state = _CancelState()
        state = self._state
        emit = self.progressed.emit

        def progress(done: int, total: int | None = None) -> None:
            emit(int(done), -1 if total is None else int(total))

        def run() -> Any:
            worker = self.worker

            def cancel() -> bool:
                return state.event.is_set() or bool(getattr(worker, "abort_requested", False))

            self.nice = lower_this_thread()
            try:
                return fn(cancel, progress)
            except Exception as exc:  # reported on the GUI thread by _returned
                return _Failed(exc)

        worker = create_worker(run, _start_thread=False, _ignore_errors=True)
        self.worker, self.title, self.cancellable = worker, title, cancellable
        self._on_done, self._on_error = on_done, on_error
        self.started_at = time.monotonic()
        worker.returned.connect(self._returned)
        worker.finished.connect(self._finished)
        self.busy_changed.emit(True)
        _pool().start(worker)  # our own threads: they run at a lower priority (._priority)
        return worker

    def cancel(self) -> None:
        """Ask the running job to stop at its next check (between planes)."""
        if self.busy:
            self._state.event.set()

    def wait(self, timeout: float = 30.0) -> bool:
        """Process events until the job has ended (for scripts and tests)."""
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self.busy and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.005)
        return not self.busy

    def _end(self) -> tuple[Any, Any]:
        done, error = self._on_done, self._on_error
        self.worker, self._on_done, self._on_error = None, None, None
        self.busy_changed.emit(False)
        return done, error

    def _returned(self, result: Any) -> None:
        if self.worker is None:
            return
        on_done, on_error = self._end()
        if isinstance(result, _Failed):
            if on_error is not None:
                on_error(result.exc)
            else:
                from napari.utils.notifications import show_error

                show_error(f"{self.title} failed: {result.exc}")
        elif on_done is not None:
            on_done(result)

    def _finished(self) -> None:
        # a worker stopped through napari's own task manager (worker.quit()) never returns
        if self.worker is not None and self.worker.abort_requested:
            self._end()
