"""Long work in thread workers: propagation through the stack and precomputing embeddings,
with progress and cancel. Each is one Session call run by the widget's job runner."""

from __future__ import annotations

import time
from typing import Any

from ..engine.sam2_video import supports_memory
from ..errors import PromptError
from ._prompting import Prompting
from .context import Context
from .panels import DIRECTIONS, MODES, RANGES

__all__ = ["LongJobs"]

_REFRESH_EVERY = 0.25  # seconds between redraws of the labels layer during propagation


class LongJobs:
    """Propagation, precompute, cancel, and the progress shown while a job runs."""

    def __init__(self, ctx: Context, prompting: Prompting) -> None:
        self.ctx, self.prompting = ctx, prompting
        self.shown_at = 0.0

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
        """Ask the running job to stop between planes."""
        if self.ctx.jobs.busy:
            self.ctx.jobs.cancel()
            self.ctx.status(f"Cancelling {self.ctx.jobs.title} …")

    def propagate(self) -> None:
        """Propagate every prompted object along the chosen axis (thread worker)."""
        if not self.ctx.ready("Propagation"):
            return
        ui, session = self.ctx.ui, self.ctx.session
        method = MODES[ui.mode_combo.currentText()]
        if method is None or not session.plane_keys_shape:
            return self.ctx.warn("Pick 'slice-wise propagation' or 'SAM2 propagation' as mode "
                              "(propagation needs a volume or a stack).")
        if method == "sam2" and not supports_memory(session.backend):
            return self.ctx.warn("SAM2 propagation needs a SAM2 model (e.g. sam2.1_hiera_tiny); "
                              "pick one and press Start, or use slice-wise propagation.")
        try:
            prompts = self.ctx.layers.prompts()
        except PromptError as exc:
            return self.ctx.warn(f"Cannot use the prompts: {exc}")
        if not len(prompts):
            return self.ctx.warn("Nothing to propagate: add points or boxes on a plane first.")
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

        self.prompting.show(None)
        self.ctx.status(f"Propagating objects {prompts.object_ids()} ({method}) …")
        self.ctx.jobs.start(work, title="Propagation", on_done=self._propagated)

    def _propagated(self, result: Any) -> None:
        written, cancelled = result
        self.ctx.layers.refresh_output() if self.ctx.layers is not None else None
        n = sum(len(v) for v in written.values())
        what = ", ".join(f"{oid}: {len(v)} planes" for oid, v in sorted(written.items()))
        self.ctx.status(f"Propagation {'cancelled' if cancelled else 'done'}: {n} plane(s) "
                    f"written ({what or 'none'}).")
        self.prompting.schedule_refresh()

    def precompute(self) -> None:
        """Embed every plane into the on-disk embedding cache (thread worker)."""
        if not self.ctx.ready("Precompute"):
            return
        session = self.ctx.session
        if session.cache is None:
            return self.ctx.warn("Precompute needs the embedding cache: tick 'cache embeddings "
                              "on disk' and press Start.")

        def work(cancel: Any, progress: Any) -> Any:
            return session.precompute(progress=progress, cancel=cancel), cancel()

        self.ctx.status("Precomputing embeddings …")
        self.ctx.jobs.start(work, title="Precomputing embeddings", on_done=self._precomputed)

    def _precomputed(self, result: Any) -> None:
        n, cancelled = result
        self.ctx.status(f"Precompute {'cancelled' if cancelled else 'done'}: {n} plane(s) "
                    "embedded in the cache.")
