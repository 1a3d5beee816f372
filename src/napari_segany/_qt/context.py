"""What the widget's parts share: the viewer, the controls, the job runner, the model
executor and the current session.

One :class:`Context` is made by the dock widget and handed to each part
(:class:`~._prompting.Prompting`, :class:`~._long_jobs.LongJobs`,
:class:`~._auto.AutoJobs`, :class:`~._review.Review`, :class:`~._objects.ObjectsPanel`);
the parts read and set the session through it, never through one another's attributes.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from ..session import Segmentation, Session
from ..storage.array import StoreArray
from ._messages import short_error
from .executor import ModelExecutor
from .jobs import JobRunner
from .layers import LayerSet
from .panels import Controls

__all__ = ["Context"]


class Context:
    """The state of one dock widget: what Start made, and how to tell the user.

    Attributes
    ----------
    session : Session or None
        The core session, set by Start.
    layers : LayerSet or None
        The prompt, preview, review and output layers of the session's image.
    preview : Segmentation or None
        The mask shown in the preview layer (what Commit writes).
    generation : int
        Counts sessions: a job's result for an ended session is not shown.
    """

    def __init__(self, viewer: Any, ui: Controls, jobs: JobRunner,
                 executor: ModelExecutor) -> None:
        self.viewer, self.ui, self.jobs, self.executor = viewer, ui, jobs, executor
        self.session: Session | None = None
        self.layers: LayerSet | None = None
        self.preview: Segmentation | None = None
        self.generation = 0
        #: The output layer's data: the store as an array whose writes are operations.
        self.labels_view: StoreArray | None = None
        #: Called (no arguments) after anything changed the labels store or the review.
        self.store_listeners: list[Callable[[], None]] = []

    def end_stroke(self) -> None:
        """Close an open napari edit of the labels layer (before another operation)."""
        if self.labels_view is not None:
            self.labels_view.end_stroke()

    def store_changed(self) -> None:
        """The labels store or the review area changed: redraw and update the lists."""
        if self.layers is not None:
            self.layers.refresh_output()
        for listener in list(self.store_listeners):
            listener()

    def status(self, text: str, details: str | None = None) -> None:
        self.ui.set_status(text, details)

    def warn(self, text: str, details: str | None = None) -> None:
        from napari.utils.notifications import show_warning

        self.status(text, details)
        show_warning(text)

    def error(self, text: str, details: str | None = None) -> None:
        """A short line in the status and a notification; the full text under the status's
        Details (the notification's "Details" button opens it)."""
        from napari.utils.notifications import (
            Notification,
            NotificationSeverity,
            notification_manager,
        )

        self.status(text, details)
        ui = self.ui
        actions = [("Details", lambda _n: ui.details_btn.setChecked(True))] if details else []
        notification_manager.dispatch(Notification(text, NotificationSeverity.ERROR,
                                                   actions=actions))

    def fail(self, exc: BaseException, doing: str) -> None:
        """Report an exception: one short line, the whole message and traceback as details."""
        inner = getattr(exc, "exc", exc)  # a StartError: its original
        details = f"{inner}\n\n" + "".join(traceback.format_exception(
            type(inner), inner, inner.__traceback__))
        self.error(short_error(exc, doing), details)

    def ready(self, what: str) -> bool:
        """Whether ``what`` can run now (a session, no job running); warns when not."""
        if self.session is None or self.layers is None:
            self.warn(f"Press Start first: {what} needs a loaded model and an output store.")
            return False
        if self.jobs.busy:
            self.warn(f"{self.jobs.title} is running; wait for it or press Cancel.")
            return False
        self.end_stroke()  # a napari edit in progress ends before another operation
        return True

