"""Interactive prompting: the preview that follows every click, objects, commit and undo.

A change on the points or boxes layer (or moving to another plane, or picking another
object) re-segments the current object on the current plane. The model runs in the
:class:`~.executor.ModelExecutor` thread, never on the GUI thread: a first click on a
plane embeds it there (the status says so, with the time it takes; *Cancel* stops
waiting), later clicks decode from the cached embedding, and when clicks come faster than
decoding only the latest is decoded. While a job runs, changes are noted and handled
after it. Every step is one Session call.
"""

from __future__ import annotations

import time
from typing import Any

from qtpy.QtCore import QTimer

from ..errors import PromptError
from ..tiling import TiledEmbeddings
from .context import Context
from .layers import preview_display
from .panels import VIEWS

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
    embed_seconds : float or None
        How long the last plane embedding took (to say how long the next one will).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.queued = False
        self.pending = False
        self.bad_prompts: str | None = None
        self.embed_seconds: float | None = None
        self.tiled: TiledEmbeddings | None = None
        self._waiting: str | None = None  # the status line while the model works
        self._before = ""  # the status before it
        self._tick = QTimer()
        self._tick.setInterval(1000)
        self._tick.timeout.connect(self._show_waiting)
        ctx.executor.state_changed.connect(self._on_model_state)

    @property
    def busy(self) -> bool:
        """A refresh is queued or the model works on a request."""
        return self.queued or self.ctx.executor.busy

    # -- events ---------------------------------------------------------------------------------
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

    def reset(self) -> None:
        """A new session (or none): forget the previous one's tiles and waiting."""
        self.tiled = None
        self.ctx.executor.cancel()
        self._waiting = None

    # -- the preview ----------------------------------------------------------------------------
    def refresh_preview(self) -> None:
        """Segment the current object on the current plane (in the model thread)."""
        self.queued = False
        ctx = self.ctx
        if ctx.session is None or ctx.layers is None:
            return
        if ctx.jobs.busy:
            self.pending = True
            return
        layers, oid = ctx.layers, ctx.ui.object_spin.value()
        key = layers.current_plane()
        if key is None:
            self._none()
            problem = layers.plane_problem()
            return ctx.ui.preview_label.setText(
                f"preview: none ({problem})" if problem else
                "preview: none (the viewer shows no plane of the image here)")
        try:
            prompts = layers.prompts()
        except PromptError as exc:
            self._none()
            return self._prompt_problem(f"Cannot use the prompts: {exc}")
        self._prompt_problem(None)
        objects = prompts.for_plane(key) if key in prompts else {}
        if oid not in objects:
            return self._none()
        self._submit(key, oid, objects[oid])

    def _submit(self, key: tuple[int, ...], oid: int, prompt: Any) -> None:
        ctx, session = self.ctx, self.ctx.session
        view = VIEWS[ctx.ui.view_combo.currentText()]
        options: dict[str, Any] = {}
        where = f"plane {key or '(2D)'}"
        if view == "region":
            region = ctx.layers.visible_region()
            if region is None:
                self._none()
                return ctx.warn("No visible part of the plane: zoom onto the image, or pick "
                                "'whole plane' under 'model sees'.")
            options["region"] = region
            what = f"embedding the visible region of {where}"
        elif view == "tiles":
            if self.tiled is None:
                self.tiled = TiledEmbeddings.from_session(session, max_in_memory=8)
            options["tiled"] = self.tiled
            what = f"segmenting in the tiles of {where}"
        else:
            what = (f"decoding on {where}" if session.has_embedding(key) else
                    f"embedding {where}")
        generation = ctx.generation

        def run() -> Any:
            t0 = time.monotonic()
            seg = session.segment({oid: prompt}, key, **options)[oid]
            display = preview_display(seg.mask) if seg is not None else None
            return (seg, display), time.monotonic() - t0

        def done(result: Any) -> None:
            if ctx.generation != generation:
                return
            (seg, display), seconds = result
            if what.startswith("embedding"):
                self.embed_seconds = seconds
            self.show(seg, display)

        def failed(exc: BaseException) -> None:
            if ctx.generation == generation:
                self.show(None)
                ctx.fail(exc, f"Segmenting object {oid} on {where}")

        ctx.executor.submit(run, on_done=done, on_error=failed, what=what)

    def _none(self) -> None:
        self.ctx.executor.cancel()  # a result still on its way would show stale prompts
        self.show(None)

    def _on_model_state(self, what: str) -> None:
        try:
            self._model_state(what)
        except RuntimeError:  # the dock widget was closed while the model was working
            self.ctx.executor.cancel()

    def _model_state(self, what: str) -> None:
        ui = self.ctx.ui
        if what.startswith("embedding"):
            guess = (f"about {self.embed_seconds:.0f} s" if self.embed_seconds else
                     "the first plane takes a while on a CPU")
            self._waiting = f"{what[0].upper()}{what[1:]} (once per plane; {guess})"
            self._before = ui.status_label.text()  # kept above the waiting line
            ui.preview_label.setText(f"preview: {what} …")
            self._tick.start()  # said in the status after a second (most are faster)
            if not self.ctx.jobs.busy:
                ui.cancel_btn.setEnabled(True)
                ui.progress_bar.setRange(0, 0)
        elif not what and self._waiting is not None:
            shown = self._waiting in ui.status_label.text()
            self._tick.stop()
            self._waiting = None
            if not self.ctx.jobs.busy:
                ui.set_busy(False)
            if shown:  # nothing else said meanwhile: back to what was said before
                self.ctx.status(self._before)

    def _show_waiting(self) -> None:
        if self._waiting is None:
            return self._tick.stop()
        elapsed = time.monotonic() - self.ctx.executor.started_at
        line = f"{self._waiting} … {elapsed:.0f} s. Cancel stops waiting."
        before = self._before if self._before and self._waiting not in self._before else ""
        self.ctx.status(f"{before}\n{line}" if before else line)

    def cancel_wait(self) -> bool:
        """Cancel pressed while the model embeds for the preview; False when it did not."""
        if self._waiting is None:
            return False
        self.ctx.executor.cancel()
        self._tick.stop()
        self._waiting = None
        self.ctx.ui.set_busy(False)
        self.ctx.status("Stopped waiting: the embedding finishes in the background and is "
                        "kept; the next click on that plane uses it.")
        return True

    def _prompt_problem(self, text: str | None) -> None:
        """Report a prompt problem once, not at every refresh; say when it is gone."""
        old, self.bad_prompts = self.bad_prompts, text
        if text is None:
            if old is not None and self.ctx.ui.status_label.text() == old:
                self.ctx.status("The prompts are usable again.")
        elif text == old:
            self.ctx.status(text)  # e.g. after moving to another plane: no new notification
        else:
            self.ctx.warn(text)

    def show(self, seg: Any, display: Any = None) -> None:
        self.ctx.preview = seg
        self.ctx.ui.preview_label.setText(
            "preview: none" if seg is None else
            f"preview: object {seg.obj_id} on plane {seg.plane or '(2D)'}, "
            f"{int(seg.mask.sum())} pixels, score {seg.score:.2f}; Commit keeps it")
        if self.ctx.layers is not None:
            if seg is None:
                self.ctx.layers.show_preview(None)
            else:
                self.ctx.layers.show_preview(seg.plane, seg.mask, seg.obj_id, display)

    # -- objects --------------------------------------------------------------------------------
    def on_object_changed(self, oid: int) -> None:
        if self.ctx.layers is not None:
            self.ctx.layers.set_defaults(object_id=oid)
        name = ""
        if self.ctx.session is not None and self.ctx.session.labels is not None:
            name = self.ctx.session.labels.objects.get(oid, {}).get("class_name") or ""
        self.ctx.ui.class_edit.setText(name)
        self._none()
        self.schedule_refresh()

    def on_positive_changed(self, positive: bool) -> None:
        if self.ctx.layers is not None:
            self.ctx.layers.set_defaults(positive=positive)

    def toggle_positive(self) -> None:
        """Flip the selected points (select mode), else the polarity of new points."""
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

    def known_ids(self) -> list[int]:
        """Committed objects and objects with prompts, sorted."""
        ids = set()
        if self.ctx.session is not None and self.ctx.session.labels is not None:
            ids.update(self.ctx.session.labels.objects)
        if self.ctx.layers is not None:
            ids.update(self.ctx.layers.object_ids())
        return sorted(ids)

    def step_object(self, step: int) -> None:
        """Next (+1) or previous (-1) object among the known ones (wrapping around)."""
        ids, cur = self.known_ids(), self.ctx.ui.object_spin.value()
        if not ids:
            return
        later = [i for i in ids if (i > cur if step > 0 else i < cur)]
        target = (min(later) if step > 0 else max(later)) if later else (
            ids[0] if step > 0 else ids[-1])
        self.ctx.ui.object_spin.setValue(target)
        self.ctx.status(f"Object {target}" + (
            f" ({n})" if (n := self.ctx.ui.class_edit.text()) else "") + ".")

    def clear_prompts(self) -> None:
        """Remove the current object's points and boxes on every plane."""
        if self.ctx.layers is None:
            return
        oid = self.ctx.ui.object_spin.value()
        n = self.ctx.layers.remove_object(oid)
        self._none()
        self.ctx.status(f"Removed {n} prompt(s) of object {oid}.")

    # -- commit, undo ---------------------------------------------------------------------------
    def commit(self) -> None:
        """Write the previewed mask into the labels store as the current object."""
        if not self.ctx.ready("Commit"):
            return
        seg, oid = self.ctx.preview, self.ctx.ui.object_spin.value()
        if seg is None or seg.obj_id != oid:
            return self.ctx.warn(f"Nothing to commit: add a point or a box for object {oid} on "
                                 "this plane and wait for the preview.")
        name = self.ctx.ui.class_edit.text().strip() or None
        try:
            self.ctx.session.commit(seg, obj_id=oid, class_name=name)
        except Exception as exc:
            return self.ctx.fail(exc, f"Writing object {oid} to the labels store")
        self.show(None)
        self.ctx.store_changed()
        gone = self.ctx.layers.output is None or self.ctx.layers.output not in \
            self.ctx.viewer.layers
        self.ctx.status(f"Committed object {oid} on plane {seg.plane or '(2D)'}"
                        f"{f' ({name})' if name else ''}. New object: N."
                        + (" (The labels layer was removed: press Start to see it again.)"
                           if gone else ""))

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
        try:
            result = getattr(ctx.session, action)()
        except Exception as exc:  # e.g. a full disk: say so, keep the widget usable
            return ctx.fail(exc, action.capitalize())
        ctx.store_changed()
        ctx.status(result.message if result else f"Nothing to {action}.")
        self.schedule_refresh()  # the prompts are still there: show their preview again
