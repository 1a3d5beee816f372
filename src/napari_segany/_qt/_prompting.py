"""Interactive prompting: the preview that follows every click, objects, commit and undo.

A change on the points or boxes layer (or moving to another plane, or picking another
object) re-segments the current object on the current plane. The plane's embedding is
computed once in a thread worker (status "Embedding plane …"); later prompts on that plane
decode from the cached embedding on the GUI thread at once. While a job runs, the session
is left alone: changes are noted and handled after it. Every step is one Session call.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QTimer

from ..errors import PromptError
from .context import Context

__all__ = ["Prompting"]

_ADD_EVENTS = ("added", "changed", "removed")


class Prompting:
    """The interactive part of the dock widget.

    Attributes
    ----------
    queued : bool
        A preview refresh is scheduled on the event loop.
    pending : bool
        Prompts changed while a job ran; refresh when it ends.
    bad_prompts : str or None
        The prompt problem last reported (reported once, not at every refresh).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.queued = False
        self.pending = False
        self.bad_prompts: str | None = None

    def on_prompt_data(self, event: Any) -> None:
        if str(getattr(event, "action", "changed")) in _ADD_EVENTS:
            self.schedule_refresh()

    def on_box_data(self, event: Any) -> None:
        if str(getattr(event, "action", "changed")) in _ADD_EVENTS:
            if self.ctx.layers is not None:
                self.ctx.layers.drop_duplicate_boxes()
            self.schedule_refresh()

    def on_dims(self, event: Any = None) -> None:
        if self.ctx.session is not None:
            self.schedule_refresh()

    def schedule_refresh(self) -> None:
        if not self.queued:
            self.queued = True
            QTimer.singleShot(0, self.refresh_preview)

    def refresh_preview(self) -> None:
        """Segment the current object on the current plane and show it in the preview."""
        self.queued = False
        if self.ctx.session is None or self.ctx.layers is None:
            return
        if self.ctx.jobs.busy:
            self.pending = True
            return
        layers, oid = self.ctx.layers, self.ctx.ui.object_spin.value()
        key = layers.current_plane()
        if key is None:
            self.show(None)
            problem = layers.plane_problem()
            return self.ctx.ui.preview_label.setText(
                f"preview: none ({problem})" if problem else
                "preview: none (the viewer shows no plane of the image here)")
        try:
            prompts = layers.prompts()
        except PromptError as exc:
            self.show(None)
            return self._prompt_problem(f"Cannot use the prompts: {exc}")
        self._prompt_problem(None)
        objects = prompts.for_plane(key) if key in prompts else {}
        if oid not in objects:
            return self.show(None)
        if not self.ctx.session.has_embedding(key):
            return self._embed(key)
        try:
            seg = self.ctx.session.segment({oid: objects[oid]}, key)[oid]
        except Exception as exc:  # a model failure must not break the event loop
            self.show(None)
            return self.ctx.error(f"Segmenting object {oid} on plane {key} failed: {exc}")
        self.show(seg)

    def _prompt_problem(self, text: str | None) -> None:
        """Report a prompt problem once, not at every refresh; say when it is gone.

        Parameters
        ----------
        text : str or None
            The problem with the prompt layers, or None when they are usable.
        """
        old, self.bad_prompts = self.bad_prompts, text
        if text is None:
            if old is not None and self.ctx.ui.status_label.text() == old:
                self.ctx.status("The prompts are usable again.")
        elif text == old:
            self.ctx.status(text)  # e.g. after moving to another plane: no new notification
        else:
            self.ctx.warn(text)

    def _embed(self, key: tuple[int, ...]) -> None:
        session = self.ctx.session
        self.ctx.ui.preview_label.setText(f"preview: embedding plane {key or '(2D)'} … "
                                      "(once per plane)")
        self.ctx.jobs.start(lambda cancel, progress: session.embedding(key),
                        title=f"Embedding plane {key}", cancellable=False,
                        on_done=lambda _: self.schedule_refresh())

    def show(self, seg: Any) -> None:
        self.ctx.preview = seg
        self.ctx.ui.preview_label.setText(
            "preview: none" if seg is None else
            f"preview: object {seg.obj_id} on plane {seg.plane or '(2D)'}, "
            f"{int(seg.mask.sum())} pixels, score {seg.score:.2f}; Commit keeps it")
        if self.ctx.layers is not None:
            if seg is None:
                self.ctx.layers.show_preview(None)
            else:
                self.ctx.layers.show_preview(seg.plane, seg.mask, seg.obj_id)

    def on_object_changed(self, oid: int) -> None:
        if self.ctx.layers is not None:
            self.ctx.layers.set_defaults(object_id=oid)
        name = ""
        if self.ctx.session is not None:
            info = self.ctx.session.labels.provenance.get("objects", {}).get(str(oid), {})
            name = info.get("class_name") or ""
        self.ctx.ui.class_edit.setText(name)
        self.show(None)
        self.schedule_refresh()

    def on_positive_changed(self, positive: bool) -> None:
        if self.ctx.layers is not None:
            self.ctx.layers.set_defaults(positive=positive)

    def toggle_positive(self) -> None:
        """Key T: flip the selected points (select mode), else the polarity of new points."""
        layers = self.ctx.layers
        if layers is not None and layers.points.mode == "select" and layers.flip_selected():
            return self.schedule_refresh()
        self.ctx.ui.positive_check.setChecked(not self.ctx.ui.positive_check.isChecked())

    def new_object(self) -> None:
        """A fresh object id: above every committed id and every id used by a prompt."""
        if self.ctx.session is None or self.ctx.layers is None:
            return self.ctx.ui.object_spin.setValue(self.ctx.ui.object_spin.value() + 1)
        used = max(self.ctx.layers.object_ids(), default=0)
        self.ctx.ui.object_spin.setValue(max(self.ctx.session.new_object_id(), used + 1))

    def clear_prompts(self) -> None:
        """Remove the current object's points and boxes on every plane."""
        if self.ctx.layers is None:
            return
        oid = self.ctx.ui.object_spin.value()
        n = self.ctx.layers.remove_object(oid)
        self.show(None)
        self.ctx.status(f"Removed {n} prompt(s) of object {oid}.")

    def commit(self) -> None:
        """Write the previewed mask into the labels store as the current object."""
        if not self.ctx.ready("Commit"):
            return
        seg, oid = self.ctx.preview, self.ctx.ui.object_spin.value()
        if seg is None or seg.obj_id != oid:
            return self.ctx.warn(f"Nothing to commit: add a point or a box for object {oid} on "
                              "this plane and wait for the preview.")
        name = self.ctx.ui.class_edit.text().strip() or None
        self.ctx.end_stroke()
        try:
            self.ctx.session.commit(seg, obj_id=oid, class_name=name)
        except Exception as exc:
            return self.ctx.error(f"Could not write object {oid} to the labels store: {exc}")
        self.ctx.layers.refresh_output()
        self.show(None)
        self.ctx.status(f"Committed object {oid} on plane {seg.plane or '(2D)'}"
                    f"{f' ({name})' if name else ''}. New object: N.")

    def undo(self) -> None:
        """Undo the last operation of any kind (a commit, a propagation, an edit, ...)."""
        self._history("undo")

    def redo(self) -> None:
        """Redo what the last undo reverted."""
        self._history("redo")

    def _history(self, action: str) -> None:
        ctx = self.ctx
        if not ctx.ready(action.capitalize()):
            return
        ctx.end_stroke()
        try:
            result = getattr(ctx.session, action)()
        except Exception as exc:  # e.g. a full disk: say so, keep the widget usable
            return ctx.error(f"Could not {action}: {exc}")
        ctx.layers.refresh_output()
        ctx.status(result.message if result else f"Nothing to {action}.")
        self.schedule_refresh()  # the prompts are still there: show their preview again
