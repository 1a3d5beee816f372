"""A "Tracking" panel: track cells through time, mark divisions, correct tracks, export.

Self-contained (a :class:`QGroupBox` over a napari viewer and a session): every button is
one call of :mod:`napari_segany.tracking` (or of :func:`~napari_segany.exports.export_movie`),
run as a job of a :class:`~.jobs.JobRunner` (the dock widget's, so that one job runs at a
time, or the panel's own) with a progress bar and Cancel; the session's labels store is
written (one undoable operation per run) and the Labels layer refreshed.

* **Track from this frame**: every object labelled on the current frame is followed
  forward (its mask is the prompt); splits that last K frames become divisions.
* **Mark division**: put two points (one per daughter) on the current frame in the
  panel's "tracking points" layer, set *track id* to the parent, press the button: the
  parent ends on the frame before and the daughters are tracked from here.
* **Correct from this frame**: points on the current frame for track *track id* (it
  follows the label picked in the Labels layer); the track is re-segmented there and
  re-tracked forward (its later descendants are replaced).
* **Show tracks**: a napari Tracks layer with the lineage graph; **Export CTC...** (Cell
  Tracking Challenge folder) and **Export movie...** (an overlay MP4).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..exports import export_movie
from ..prompts import ObjectPrompt, PromptSet
from ..tracking import (
    TrackSettings,
    correct_track,
    export_ctc,
    mark_division,
    mask_prompt,
    track,
    tracks_layer_data,
)
from .jobs import JobRunner

__all__ = ["TrackingPanel", "POINTS_LAYER", "TRACKS_LAYER"]

POINTS_LAYER = "tracking points"
TRACKS_LAYER = "tracks"


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _getter(value: Any) -> Callable[[], Any]:
    return value if callable(value) and not hasattr(value, "events") else (lambda: value)


class TrackingPanel(QGroupBox):
    """Tracking controls for ``viewer`` and a session.

    Parameters
    ----------
    viewer : napari.Viewer
    session : Session or callable, optional
        The session to track in (its image ``(t, y, x)`` or a video ``(t, y, x, 3)``, its
        labels store), or a callable returning the current one (the dock widget's
        ``lambda: widget.session``).
    image_layer, labels_layer : napari layer or callable, optional
        The image the session segments (points are converted into its pixels; the
        points and tracks layers take its scale and translate) and the Labels layer that
        shows the store (refreshed after each run; the label picked in it becomes *track
        id*). Callables return the current layer.
    jobs : JobRunner, optional
        The runner to run jobs on (the dock widget's ``widget.jobs``: its other jobs and
        tracking then never run at once, and its progress bar and Cancel follow tracking
        too); default: the panel's own.

    Signals
    -------
    tracked(object)
        A tracking job ended (on the GUI thread) with its
        :class:`~napari_segany.tracking.TrackResult`; the store has changed.
    exported(str)
        A CTC folder or a movie was written (its path).
    """

    tracked = Signal(object)
    exported = Signal(str)

    def __init__(self, viewer: Any, session: Any = None, *, image_layer: Any = None,
                 labels_layer: Any = None, jobs: JobRunner | None = None) -> None:
        super().__init__("Tracking")
        self.viewer = viewer
        self._session = _getter(session)
        self._image_layer = _getter(image_layer)
        self._labels_layer = _getter(labels_layer)
        self.jobs = jobs if jobs is not None else JobRunner(self)
        self.last_result: Any = None
        self._watched: Any = None  # the Labels layer whose selected label we follow
        self.method = QComboBox()
        self.method.addItems(["slice", "sam2"])
        self.method.setToolTip("slice: slice-wise propagation (any model); sam2: SAM2 memory")
        self.k = _spin(1, 1000, 3, "a split lasting this many frames is a division")
        self.min_area = _spin(1, 10**7, 16, "smaller parts are fragments, not daughters; a "
                                            "smaller mask ends the track")
        self.track_id = _spin(1, 2**31 - 1, 1, "the parent (division) or the track to "
                                               "correct; follows the label picked in the "
                                               "Labels layer")
        form = QFormLayout()
        form.addRow("method", self.method)
        form.addRow("division frames K", self.k)
        form.addRow("min area (px)", self.min_area)
        form.addRow("track id", self.track_id)
        self.track_button = QPushButton("Track from this frame")
        self.division_button = QPushButton("Mark division (2 points)")
        self.correct_button = QPushButton("Correct from this frame")
        self.show_button = QPushButton("Show tracks")
        self.export_button = QPushButton("Export CTC...")
        self.movie_button = QPushButton("Export movie...")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.buttons = [self.track_button, self.division_button, self.correct_button,
                        self.export_button, self.movie_button]
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for group in ((self.track_button, self.show_button),
                      (self.division_button, self.correct_button),
                      (self.export_button, self.movie_button, self.cancel_button)):
            row = QHBoxLayout()
            for b in group:
                row.addWidget(b)
            layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.track_button.clicked.connect(self.track_frame)
        self.division_button.clicked.connect(self.mark_division)
        self.correct_button.clicked.connect(self.correct)
        self.show_button.clicked.connect(self.show_tracks)
        self.export_button.clicked.connect(self._export_dialog)
        self.movie_button.clicked.connect(self._movie_dialog)
        self.cancel_button.clicked.connect(self.jobs.cancel)
        self.jobs.busy_changed.connect(self._busy)
        self.jobs.progressed.connect(self._progressed)
        self._follow_labels()

    # -- state ----------------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        return self._session()

    @property
    def image_layer(self) -> Any:
        return self._image_layer()

    @property
    def labels_layer(self) -> Any:
        return self._labels_layer()

    @property
    def busy(self) -> bool:
        return self.jobs.busy

    def settings(self) -> TrackSettings:
        return TrackSettings(method=self.method.currentText(), division_frames=self.k.value(),
                             min_area=self.min_area.value())

    def frame(self) -> int:
        return int(self.viewer.dims.current_step[0])

    def _follow_labels(self) -> None:
        """*track id* follows the label picked in the Labels layer."""
        layer = self.labels_layer
        if layer is None or layer is self._watched:
            return
        if self._watched is not None:
            self._watched.events.selected_label.disconnect(self._on_selected_label)
        layer.events.selected_label.connect(self._on_selected_label)
        self._watched = layer

    def _on_selected_label(self, event: Any = None) -> None:
        layer = self._watched
        if layer is not None and int(layer.selected_label) > 0:
            self.track_id.setValue(int(layer.selected_label))

    def _layer_kwargs(self) -> dict[str, Any]:
        layer = self.image_layer
        if layer is None:
            return {}
        return {"scale": tuple(layer.scale[:3]), "translate": tuple(layer.translate[:3])}

    def points_layer(self) -> Any:
        """The panel's Points layer (created on first use)."""
        if POINTS_LAYER in self.viewer.layers:
            return self.viewer.layers[POINTS_LAYER]
        return self.viewer.add_points(np.zeros((0, 3)), name=POINTS_LAYER, size=6,
                                      face_color="yellow", ndim=3, **self._layer_kwargs())

    def frame_points(self) -> np.ndarray:
        """``(N, 2)`` (x, y) pixels of the tracking points on the current frame."""
        layer = self.points_layer()
        image = self.image_layer
        out = []
        for pt in np.asarray(layer.data, float).reshape(-1, layer.ndim):
            world = layer.data_to_world(pt)
            data = image.world_to_data(world) if image is not None else world
            if int(round(float(data[0]))) == self.frame():
                out.append((float(data[-1]), float(data[-2])))
        return np.array(out, float).reshape(-1, 2)

    def _ready(self, what: str) -> Any:
        """The session, when ``what`` can run now (else None, with a status line)."""
        session = self.session
        if session is None or getattr(session, "labels", None) is None:
            self._say(f"{what} needs a session with a labels store: press Start first")
            return None
        if self.jobs.busy:
            self._say(f"{self.jobs.title} is running; wait for it or press Cancel")
            return None
        self._follow_labels()
        return session

    # -- actions --------------------------------------------------------------------------------
    def track_frame(self) -> None:
        """Track every object labelled on the current frame forward."""
        s = self._ready("tracking")
        if s is None:
            return
        f = self.frame()
        plane = s.labels.read_plane((f,))
        prompts = PromptSet()
        for oid in np.unique(plane):
            if oid:
                prompts.add((f,), int(oid), mask_prompt(plane == oid, self.method.currentText()))
        if not len(prompts):
            self._say(f"no objects are labelled on frame {f}: segment them first")
            return
        self._track(f"Tracking from frame {f}", track, s, prompts, settings=self.settings())

    def mark_division(self) -> None:
        """Two tracking points on this frame: the daughters of track ``track id``."""
        s = self._ready("marking a division")
        if s is None:
            return
        pts = self.frame_points()
        if len(pts) < 2:
            self._say(f"put one point per daughter (two) on frame {self.frame()} in the "
                      f"'{POINTS_LAYER}' layer")
            return
        prompts = [ObjectPrompt(points=[p], labels=[1]) for p in pts]
        pid, f = self.track_id.value(), self.frame()
        self._track(f"Division of track {pid} on frame {f}", mark_division, s, pid, f,
                    prompts, settings=self.settings())

    def correct(self) -> None:
        """Re-segment track ``track id`` from the points on this frame and re-track it."""
        s = self._ready("a correction")
        if s is None:
            return
        pts = self.frame_points()
        if not len(pts):
            self._say(f"put a point on the object on frame {self.frame()} in the "
                      f"'{POINTS_LAYER}' layer")
            return
        tid, f = self.track_id.value(), self.frame()
        self._track(f"Correction of track {tid} from frame {f}", correct_track, s, tid, f,
                    ObjectPrompt(points=pts, labels=np.ones(len(pts), int)),
                    settings=self.settings())

    def show_tracks(self) -> Any:
        """Add (or update) the Tracks layer with the lineage graph."""
        session = self.session
        if session is None or getattr(session, "labels", None) is None:
            self._say("no session: press Start first")
            return None
        data, kwargs, _ = tracks_layer_data(session.labels, name=TRACKS_LAYER)
        kwargs.update(self._layer_kwargs())
        if TRACKS_LAYER in self.viewer.layers:
            self.viewer.layers.remove(TRACKS_LAYER)
        if not len(data):
            self._say("no tracks yet")
            return None
        return self.viewer.add_tracks(data, **kwargs)

    def export(self, folder: str | Path) -> None:
        """Write the Cell Tracking Challenge folder ``folder`` (replaced if it exists)."""
        s = self._ready("the CTC export")
        if s is not None:
            path = Path(folder)
            self.jobs.start(lambda cancel, progress: export_ctc(s.labels, path, overwrite=True),
                            title="CTC export", cancellable=False,
                            on_done=lambda p: self._exported(p, "res_track.txt and one mask "
                                                                "TIFF per frame"),
                            on_error=self._error)

    def export_movie(self, path: str | Path, **options: Any) -> None:
        """Write an overlay movie of the session's image and labels (``.mp4``, ``.mkv``,
        ...; replaced if it exists); ``options`` go to
        :func:`~napari_segany.exports.export_movie`."""
        s = self._ready("the movie export")
        if s is None:
            return
        path = Path(path)

        def job(cancel: Any, progress: Any) -> Path:
            return export_movie(s.labels, path, image=s.image, normalizer=s.normalizer,
                                overwrite=True, progress=progress, cancel=cancel, **options)

        self.jobs.start(job, title="Movie export",
                        on_done=lambda p: self._exported(p, "overlay movie"),
                        on_error=self._error)

    def _export_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the CTC result")
        if folder:
            self.export(folder)

    def _movie_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Overlay movie", "overlay.mp4",
                                              "Movies (*.mp4 *.m4v *.mov *.mkv)")
        if path:
            self.export_movie(path)

    def cancel(self) -> None:
        self.jobs.cancel()

    # -- running --------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _track(self, title: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        def job(cancel: Any, progress: Any) -> Any:
            return fn(*args, progress=progress, cancel=cancel, **kwargs)

        self._say(f"{title}...")
        self.jobs.start(job, title=title, on_done=self._done, on_error=self._error)

    def _busy(self, busy: bool) -> None:
        for b in self.buttons:
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy and self.jobs.cancellable)
        self.progress.setRange(0, 0 if busy else 1)
        self.progress.setValue(0)

    def _progressed(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _error(self, exc: BaseException) -> None:
        self._refresh()
        self._say(f"error: {exc}")
        from napari.utils.notifications import show_error

        show_error(f"Tracking: {exc}")

    def _exported(self, path: Any, what: str) -> None:
        self._say(f"wrote {path} ({what})")
        self.exported.emit(str(path))

    def _refresh(self) -> None:
        layer = self.labels_layer
        if layer is not None:
            layer.refresh()

    def _done(self, result: Any) -> None:
        self.last_result = result
        self._refresh()
        divs = ", ".join(f"{d.parent} -> {'+'.join(map(str, d.daughters))} (frame {d.frame})"
                         for d in result.divisions)
        if result.frames:
            text = (f"{len(result.lineage)} tracks on frames {result.frames[0]}–"
                    f"{result.frames[-1]}" + (f"; divisions: {divs}" if divs else ""))
        else:
            text = "nothing was found"
        self._say(text + (" (cancelled: the frames above are kept)" if result.cancelled
                          else ""))
        if TRACKS_LAYER in self.viewer.layers:
            self.show_tracks()
        self.tracked.emit(result)
