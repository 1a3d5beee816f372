"""What the widget's parts share: the viewer, the controls, the job runner, the current session.

One :class:`Context` is made by the dock widget and handed to each part
(:class:`~._prompting.Prompting`, :class:`~._long_jobs.LongJobs`,
:class:`~._auto.AutoJobs`); the parts read and set the session through it, never through
one another's attributes.
"""

from __future__ import annotations

from typing import Any

from ..session import Segmentation, Session
from ..storage.array import StoreArray
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
        The prompt, preview and output layers of the session's image.
    preview : Segmentation or None
        The mask shown in the preview layer (what Commit writes).
    """

    def __init__(self, viewer: Any, ui: Controls, jobs: JobRunner) -> None:
        self.viewer, self.ui, self.jobs = viewer, ui, jobs
        self.session: Session | None = None
        self.layers: LayerSet | None = None
        self.preview: Segmentation | None = None
        #: The output layer's data: the store as an array whose writes are operations.
        self.labels_view: StoreArray | None = None

    def end_stroke(self) -> None:
        """Close an open napari edit of the labels layer (before another operation)."""
        if self.labels_view is not None:
            self.labels_view.end_stroke()

    def status(self, text: str) -> None:
        self.ui.status_label.setText(text)

    def warn(self, text: str) -> None:
        from napari.utils.notifications import show_warning

        self.status(text)
        show_warning(text)

    def error(self, text: str) -> None:
        from napari.utils.notifications import show_error

        show_error(text)

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
