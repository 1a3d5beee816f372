"""Long work in thread workers: propagation through the stack and precomputing embeddings,
with progress and cancel. Each is one Session call run by the widget's job runner.

Propagation writes into the review area when *review* is on (the staging layer shows the
planes as they arrive); when a slice-wise walk stops, the status says where and why, and
the stops row offers to go there and continue from a correction.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..engine.sam2_video import supports_memory
from ..errors import PromptError
from ..prompts import PromptSet
from ._prompting import Prompting
from ._propagation import PropagationPanel
from .context import Context
from .panels import DIRECTIONS, MODES, RANGES

__all__ = ["LongJobs"]

_REFRESH_EVERY = 0.25  # seconds between redraws of the labels layers during a job


class LongJobs:
    """Propagation, precompute, cancel, and the progress shown while a job runs."""

    def __init__(self, ctx: Context, prompting: Prompting, panel: PropagationPanel,
                 review: Any) -> None:
        self.ctx, self.prompting, self.panel, self.review = ctx, prompting, panel, review
        self.shown_at = 0.0
        self.axis = 0
        panel.go_btn.clicked.connect(self.go_to_stop)
        panel.continue_btn.clicked.connect(self.continue_from_here)

    def on_busy(self, busy: bool) -> None:
        self.ctx.ui.set_busy(busy, self.ctx.jobs.cancellable)
        if not busy and self.prompting.pending:
            self.prompting.pending = False
            self.prompting.schedule_refresh()

    def on_progress(self, done: int, total: int) -> None:
        self.ctx.ui.set_progress(done, total)
        if (total > 0 and not self.ctx.jobs.cancel_requested
                and self.ctx.jobs.title.startswith(("Propagat", "Precomput"))):
            self.ctx.status(f"{self.ctx.jobs.title}: {done} / {total} planes …")
        now = time.monotonic()
        if self.ctx.layers is not None and now - self.shown_at > _REFRESH_EVERY:
            self.shown_at = now
            self.ctx.layers.refresh_output()

    def cancel(self) -> None:
        """Ask the running job to stop between planes (or stop waiting for an embedding)."""
        if self.ctx.jobs.busy:
            self.ctx.jobs.cancel()
            self.ctx.status(f"Cancelling {self.ctx.jobs.title} …")
        else:
            self.prompting.cancel_wait()

    # -- propagation ------------------------------------------------------------------------------
    def propagate(self) -> None:
        """Propagate every prompted object along the chosen axis (thread worker)."""
        if not self.ctx.ready("Propagation"):
            return
        ui, session = self.ctx.ui, self.ctx.session
        method = MODES[ui.mode_combo.currentText()]
        if method is None or not session.plane_keys_shape:
            return self.ctx.warn("Pick 'slice-wise propagation' or 'SAM2 propagation' as mode "
                                 "(propagation needs a volume or a stack).")
        try:
            prompts = self.ctx.layers.prompts()
        except PromptError as exc:
            return self.ctx.warn(f"Cannot use the prompts: {exc}")
        if not len(prompts):
            return self.ctx.warn("Nothing to propagate: add points or boxes on a plane first.")
        planes = None
        if ui.range_combo.currentText() == RANGES[1]:
            a, b = sorted((ui.from_spin.value(), ui.to_spin.value()))
            planes = (a, b + 1)
        self._run(prompts, method, max(0, ui.axis_combo.currentIndex()), planes,
                  DIRECTIONS[ui.direction_combo.currentText()])

    def _run(self, prompts: PromptSet, method: str, axis: int, planes: Any,
             direction: str) -> None:
        ctx, session = self.ctx, self.ctx.session
        if method == "sam2" and not supports_memory(session.backend):
            return ctx.warn("SAM2 propagation needs a SAM2 model (e.g. sam2.1_hiera_tiny); "
                            "pick one and press Start, or use slice-wise propagation.")
        review = self.review.staging()
        settings = self.panel.settings() if method == "slice" else None
        generation = ctx.generation
        self.axis = axis

        def work(cancel: Any, progress: Any) -> Any:
            written = session.propagate(prompts, method=method, axis=axis, planes=planes,
                                        direction=direction, settings=settings,
                                        cancel=cancel, progress=progress, review=review)
            return written, cancel(), list(session.last_stops)

        self.prompting.show(None)
        if review:
            self.review.show_layer()
        ctx.status(f"Propagating objects {prompts.object_ids()} ({method}) …")
        ctx.jobs.start(work, title="Propagation", on_done=lambda r: self._propagated(
            r, generation, review), on_error=lambda e: self._failed(e, generation))

    def _failed(self, exc: BaseException, generation: int) -> None:
        if self.ctx.generation == generation:
            self.ctx.fail(exc, "Propagation")

    def _propagated(self, result: Any, generation: int, review: bool) -> None:
        if self.ctx.generation != generation:
            return  # the session ended meanwhile (e.g. its image was removed): say nothing
        written, cancelled, stops = result
        self.ctx.store_changed()
        n = sum(len(v) for v in written.values())
        what = ", ".join(f"{oid}: {len(v)}" for oid, v in sorted(written.items()))
        text = (f"Propagation {'cancelled' if cancelled else 'done'}: {n} plane(s) "
                f"{'staged for review' if review else 'written'} ({what or 'none'}).")
        self.panel.set_stops(stops)
        if stops:
            first = stops[0]
            text += (f" Object {first.obj_id} stopped at plane {_plane(first.plane)}: "
                     f"{first.reason}. 'Go there', correct it, then 'Continue from here'.")
        if review and n:
            text += " Review it below: accept or discard."
        self.ctx.status(text)
        self.prompting.schedule_refresh()

    def go_to_stop(self) -> None:
        stop = self.panel.current()
        if stop is None or self.ctx.layers is None:
            return
        self.ctx.layers.go_to(stop.plane)
        self.ctx.ui.object_spin.setValue(stop.obj_id)
        self.ctx.status(f"Plane {_plane(stop.plane)}, object {stop.obj_id}: {stop.reason}. Add "
                        "a point or a box here, then 'Continue from here'.")

    def continue_from_here(self) -> None:
        """Propagate the stopped object from the current plane, the way it was going."""
        stop = self.panel.current()
        if stop is None or not self.ctx.ready("Continue"):
            return
        key = self.ctx.layers.current_plane()
        try:
            prompts = self.ctx.layers.prompts()
        except PromptError as exc:
            return self.ctx.warn(f"Cannot use the prompts: {exc}")
        mine = prompts.for_plane(key).get(stop.obj_id) if key in prompts else None
        if key is None or mine is None:
            return self.ctx.warn(f"Add a point or a box for object {stop.obj_id} on this plane "
                                 "first (the correction propagation continues from).")
        ps = PromptSet()
        ps.add(key, stop.obj_id, mine)
        n = self.ctx.session.plane_keys_shape[self.axis]
        here = key[self.axis]
        planes = (here, n) if stop.direction > 0 else (0, here + 1)
        self._run(ps, "slice", self.axis, planes, "forward" if stop.direction > 0
                  else "backward")

    # -- precompute -------------------------------------------------------------------------------
    def precompute(self) -> None:
        """Embed every plane into the on-disk embedding cache (thread worker)."""
        if not self.ctx.ready("Precompute"):
            return
        session = self.ctx.session
        if session.cache is None:
            return self.ctx.warn("Precompute needs the embedding cache: tick 'cache embeddings "
                                 "on disk' and press Start.")
        total = math.prod(session.plane_keys_shape)

        def work(cancel: Any, progress: Any) -> Any:
            return session.precompute(progress=progress, cancel=cancel), cancel()

        self.ctx.status("Precomputing embeddings …")
        self.ctx.jobs.start(work, title="Precomputing embeddings",
                            on_done=lambda r: self._precomputed(r, total))

    def _precomputed(self, result: Any, total: int) -> None:
        n, cancelled = result
        if cancelled:
            text = f"Precompute cancelled: {n} plane(s) embedded; the rest next time."
        elif n == 0:
            text = f"All {total} plane(s) were already in the embedding cache: nothing to do."
        else:
            text = (f"Precompute done: {n} plane(s) embedded into the cache"
                    f"{f' ({total - n} were already there)' if total > n else ''}.")
        self.ctx.status(text)


def _plane(key: tuple[int, ...]) -> str:
    return str(key[0]) if len(key) == 1 else str(key)
