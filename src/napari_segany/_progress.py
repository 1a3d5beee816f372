"""The progress and cancel protocol of every long operation.

* ``progress(done, total)``: a callable, called with 0 first and then as work is done
  (planes, batches of prompts or boxes, depending on the operation).
* ``cancel``: a :class:`threading.Event` (set to cancel) or a callable returning True
  to cancel; checked between units of work. :func:`is_cancelled` reads either.

Only the napari widget wraps these in Qt workers; the core calls them directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import Cancelled

__all__ = ["Progress", "Cancel", "Cancelled", "is_cancelled", "check_cancel", "counter"]

#: ``progress(done, total)``, or None.
Progress = Callable[[int, int], Any] | None
#: A ``threading.Event``, a callable returning True to cancel, or None.
Cancel = Any


def is_cancelled(cancel: Cancel) -> bool:
    """Whether ``cancel`` (an Event, a callable or None) asks to stop."""
    if cancel is None:
        return False
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())


def check_cancel(cancel: Cancel) -> None:
    """Raise :class:`Cancelled` when ``cancel`` asks to stop."""
    if is_cancelled(cancel):
        raise Cancelled()


def counter(progress: Progress, total: int) -> Callable[[], None] | None:
    """A tick function reporting ``progress(done, total)`` once per call (None: no-op)."""
    if progress is None:
        return None
    progress(0, total)
    done = [0]

    def tick() -> None:
        done[0] += 1
        progress(min(done[0], total), total)

    return tick
