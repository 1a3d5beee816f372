"""What the widget does with prompts and buttons: every step is one Session call.

Interactive prompting: a change on the points or boxes layer (or moving to another
plane, or picking another object) re-segments the current object on the current plane.
The plane's embedding is computed once in a thread worker (status "Embedding plane …");
later prompts on that plane decode from the cached embedding on the GUI thread at once.
While a job runs, the session is left alone: changes are noted and handled after it.
"""

from __future__ import annotations

import time
from typing import Any

from qtpy.QtCore import QTimer

from .panels import DIRECTIONS, MODES, RANGES

__all__ = ["Actions"]

_ADD_EVENTS = ("added", "changed", "removed")
_REFRESH_EVERY = 0.25  # seconds between redraws of the labels layer during propagation


class Actions:
    """Mixed into :class:`~napari_segany._qt.widget.SegmentAnythingWidget`."""

    session: Any
    layers: Any
    jobs: Any
    ui: Any
    _bad_prompts: str | None = None  # the prompt problem last reported by refresh_preview

    # -- notifications ------------------------------------------------------------------------
    def _warn(self, text: str) -> None:
        from napari.utils.notifications import show_warning

        self.status(text)
        show_warning(text)

    def _error(self, text: str) -> None:
        from napari.utils.notifications import show_error

        show_error(text)

    def _ready(self, what: str) -> bool:
        if self.session is None or self.layers is None:
            self._warn(f"Press Start first: {what} needs a loaded model and an output store.")
            return False
        if self.jobs.busy:
            self._warn(f"{self.jobs.title} is running; wait for it or press Cancel.")
            return False
        return True

    # -- interactive segmentation ----------------------------------------------------------------
    def _on_prompt_data(self, event: Any) -> None:
        if str(getattr(event, "action", "changed")) in _ADD_EVENTS:
            self._schedule_refresh()

    def _on_box_data(self, event: Any) -> None:
        if str(getattr(event, "action", "changed")) in _ADD_EVENTS:
            if self.layers is not None:
                self.layers.drop_duplicate_boxes()
            self._schedule_refresh()

    def _on_dims(self, event: Any = None) -> None:
        if self.session is not None:
            self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        if not self._queued:
            self._queued = True
            QTimer.singleShot(0, self.refresh_preview)

    def refresh_preview(self) -> None:
        """Segment the current object on the current plane and show it in the preview."""
        from ..prompts import PromptError

        self._queued = False
        if self.session is None or self.layers is None:
            return
        if self.jobs.busy:
            self._pending = True
            return
        layers, oid = self.layers, self.ui.object_spin.value()
        key = layers.current_plane()
        if key is None:
            self._show(None)
            problem = layers.plane_problem()
            return self.ui.preview_label.setText(
                f"preview: none ({problem})" if problem else
                "preview: none (the viewer shows no plane of the image here)")
        try:
            prompts = layers.prompts()
        except PromptError as exc:
            self._show(None)
            return self._prompt_problem(f"Cannot use the prompts: {exc}")
        self._prompt_problem(None)
        objects = prompts.for_plane(key) if key in prompts else {}
        if oid not in objects:
            return self._show(None)
        if not self.session.has_embedding(key):
            return self._embed(key)
        try:
            seg = self.session.segment({oid: objects[oid]}, key)[oid]
        except Exception as exc:  # a model failure must not break the event loop
            self._show(None)
            return self._error(f"Segmenting object {oid} on plane {key} failed: {exc}")
        self._show(seg)

    def _prompt_problem(self, text: str | None) -> None:
        """Report a prompt problem once, not at every refresh; say when it is gone.

        Parameters
        ----------
        text : str or None
            The problem with the prompt layers, or None when they are usable.
        """
        old, self._bad_prompts = self._bad_prompts, text
        if text is None:
            if old is not None and self.ui.status_label.text() == old:
                self.status("The prompts are usable again.")
        elif text == old:
            self.status(text)  # e.g. after moving to another plane: no new notification
        else:
            self._warn(text)

    def _embed(self, key: tuple[int, ...]) -> None:
        session = self.session
        self.ui.preview_label.setText(f"preview: embedding plane {key or '(2D)'} … "
                                      "(once per plane)")
        self.jobs.start(lambda cancel, progress: session.embedding(key),
                        title=f"Embedding plane {key}", cancellable=False,
                        on_done=lambda _: self._schedule_refresh())

    def _show(self, seg: Any) -> None:
        self.preview = seg
        self.ui.preview_label.setText(
            "preview: none" if seg is None else
            f"preview: object {seg.obj_id} on plane {seg.plane or '(2D)'}, "
            f"{int(seg.mask.sum())} pixels, score {seg.score:.2f}; Commit keeps it")
        if self.layers is not None:
            if seg is None:
                self.layers.show_preview(None)
            else:
                self.layers.show_preview(seg.plane, seg.mask, seg.obj_id)

    def _on_busy(self, busy: bool) -> None:
        self.ui.set_busy(busy, self.jobs.cancellable)
        if not busy and self._pending:
            self._pending = False
            self._schedule_refresh()

    def _on_progress(self, done: int, total: int) -> None:
        self.ui.set_progress(done, total)
        if (total > 0 and not self.jobs.cancel_requested
                and self.jobs.title.startswith(("Propagat", "Precomput"))):
            self.status(f"{self.jobs.title}: {done} / {total} planes …")
        now = time.monotonic()
        if self.layers is not None and now - self._shown_at > _REFRESH_EVERY:
            self._shown_at = now
            self.layers.refresh_output()

    # -- objects --------------------------------------------------------------------------------
    def _on_object_changed(self, oid: int) -> None:
        if self.layers is not None:
            self.layers.set_defaults(object_id=oid)
        name = ""
        if self.session is not None:
            info = self.session.labels.provenance.get("objects", {}).get(str(oid), {})
            name = info.get("class_name") or ""
        self.ui.class_edit.setText(name)
        self._show(None)
        self._schedule_refresh()

    def _on_positive_changed(self, positive: bool) -> None:
        if self.layers is not None:
            self.layers.set_defaults(positive=positive)

    def toggle_positive(self) -> None:
        """Key T: flip the selected points (select mode), else the polarity of new points."""
        layers = self.layers
        if layers is not None and layers.points.mode == "select" and layers.flip_selected():
            return self._schedule_refresh()
        self.ui.positive_check.setChecked(not self.ui.positive_check.isChecked())

    def new_object(self) -> None:
        """A fresh object id: above every committed id and every id used by a prompt."""
        if self.session is None or self.layers is None:
            return self.ui.object_spin.setValue(self.ui.object_spin.value() + 1)
        used = max(self.layers.object_ids(), default=0)
        self.ui.object_spin.setValue(max(self.session.new_object_id(), used + 1))

    def clear_prompts(self) -> None:
        """Remove the current object's points and boxes on every plane."""
        if self.layers is None:
            return
        oid = self.ui.object_spin.value()
        n = self.layers.remove_object(oid)
        self._show(None)
        self.status(f"Removed {n} prompt(s) of object {oid}.")

    # -- committing ---------------------------------------------------------------------------
    def commit(self) -> None:
        """Write the previewed mask into the labels store as the current object."""
        if not self._ready("Commit"):
            return
        seg, oid = self.preview, self.ui.object_spin.value()
        if seg is None or seg.obj_id != oid:
            return self._warn(f"Nothing to commit: add a point or a box for object {oid} on "
                              "this plane and wait for the preview.")
        name = self.ui.class_edit.text().strip() or None
        try:
            self.session.commit(seg, obj_id=oid, class_name=name)
        except Exception as exc:
            return self._error(f"Could not write object {oid} to the labels store: {exc}")
        self.layers.refresh_output()
        self._show(None)
        self.status(f"Committed object {oid} on plane {seg.plane or '(2D)'}"
                    f"{f' ({name})' if name else ''}. New object: N.")

    def undo(self) -> None:
        if self._ready("Undo"):
            done = self.session.undo()
            self.layers.refresh_output()
            self.status("Undid the last commit." if done else "Nothing to undo.")

    def redo(self) -> None:
        if self._ready("Redo"):
            done = self.session.redo()
            self.layers.refresh_output()
            self.status("Redid the commit." if done else "Nothing to redo.")

    # -- long work ----------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the running job to stop between planes."""
        if self.jobs.busy:
            self.jobs.cancel()
            self.status(f"Cancelling {self.jobs.title} …")

    def propagate(self) -> None:
        """Propagate every prompted object along the chosen axis (thread worker)."""
        from ..prompts import PromptError

        if not self._ready("Propagation"):
            return
        ui, session = self.ui, self.session
        method = MODES[ui.mode_combo.currentText()]
        if method is None or not session.plane_keys_shape:
            return self._warn("Pick 'slice-wise propagation' or 'SAM2 propagation' as mode "
                              "(propagation needs a volume or a stack).")
        if method == "sam2" and getattr(session.backend, "family", "") != "sam2":
            return self._warn("SAM2 propagation needs a SAM2 model (e.g. sam2.1_hiera_tiny); "
                              "pick one and press Start, or use slice-wise propagation.")
        try:
            prompts = self.layers.prompts()
        except PromptError as exc:
            return self._warn(f"Cannot use the prompts: {exc}")
        if not len(prompts):
            return self._warn("Nothing to propagate: add points or boxes on a plane first.")
        axis = max(0, ui.axis_combo.currentIndex())
        planes = None
        if ui.range_combo.currentText() == RANGES[1]:
            a, b = sorted((ui.from_spin.value(), ui.to_spin.value()))
            planes = (a, b + 1)
        direction = DIRECTIONS[ui.direction_combo.currentText()]

        def work(cancel: Any, progress: Any) -> Any:
            written = session.propagate(prompts, method=method, axis=axis, planes=planes,
                                        direction=direction, cancel=cancel, progress=progress)
            return written, cancel()

        self._show(None)
        self.status(f"Propagating objects {prompts.object_ids()} ({method}) …")
        self.jobs.start(work, title="Propagation", on_done=self._propagated)

    def _propagated(self, result: Any) -> None:
        written, cancelled = result
        self.layers.refresh_output() if self.layers is not None else None
        n = sum(len(v) for v in written.values())
        what = ", ".join(f"{oid}: {len(v)} planes" for oid, v in sorted(written.items()))
        self.status(f"Propagation {'cancelled' if cancelled else 'done'}: {n} plane(s) "
                    f"written ({what or 'none'}).")
        self._schedule_refresh()

    def precompute(self) -> None:
        """Embed every plane into the on-disk embedding cache (thread worker)."""
        if not self._ready("Precompute"):
            return
        session = self.session
        if session.cache is None:
            return self._warn("Precompute needs the embedding cache: tick 'cache embeddings "
                              "on disk' and press Start.")

        def work(cancel: Any, progress: Any) -> Any:
            return session.precompute(progress=progress, cancel=cancel), cancel()

        self.status("Precomputing embeddings …")
        self.jobs.start(work, title="Precomputing embeddings", on_done=self._precomputed)

    def _precomputed(self, result: Any) -> None:
        n, cancelled = result
        self.status(f"Precompute {'cancelled' if cancelled else 'done'}: {n} plane(s) "
                    "embedded in the cache.")
