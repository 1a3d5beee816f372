"""The widget's "Automatic" group: segment everything, and boxes to masks in batch.

Both run in a thread worker with progress and cancel; they call
:meth:`~napari_segany.Session.auto_segment` and
:meth:`~napari_segany.Session.segment_boxes` on the widget's session.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QPushButton, QSpinBox

from ..auto import AutoSettings
from ..boxes import boxes_from_shapes
from ..errors import PromptError
from ..prompts import Transform
from .context import Context

__all__ = ["AutoPanel", "AutoJobs", "SCOPES"]

SCOPES = ("current plane", "all planes (objects linked)")


class AutoPanel:
    """Controls of automatic segmentation (plain Qt widgets)."""

    def __init__(self) -> None:
        self.box = QGroupBox("4. Automatic")
        form = QFormLayout(self.box)
        self.points_spin = QSpinBox()
        self.points_spin.setRange(4, 128)
        self.points_spin.setValue(32)
        self.points_spin.setToolTip("Prompt grid: points per side (points_per_side)")
        form.addRow("points per side", self.points_spin)
        self.min_area_spin = QSpinBox()
        self.min_area_spin.setRange(0, 10**7)
        self.min_area_spin.setValue(16)
        self.min_area_spin.setToolTip("Objects and fragments smaller than this are removed")
        form.addRow("min area (px)", self.min_area_spin)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(list(SCOPES))
        self.scope_combo.setToolTip("One plane, or every plane with objects linked across "
                                    "planes by overlap")
        form.addRow("scope", self.scope_combo)
        self.everything_btn = QPushButton("Segment everything")
        self.everything_btn.setToolTip("SAM's automatic mask generator; results go into the "
                                       "labels store (existing objects are kept)")
        self.boxes_btn = QPushButton("Boxes to masks")
        self.boxes_btn.setToolTip("Every rectangle of the selected Shapes layer (else the "
                                  "boxes layer) becomes one object, batched; the class name "
                                  "field is kept as its class")
        form.addRow(self.everything_btn)
        form.addRow(self.boxes_btn)
        self.buttons = (self.everything_btn, self.boxes_btn)


class AutoJobs:
    """Runs the Automatic group's two buttons on the widget's session."""

    def __init__(self, ctx: Context, panel: AutoPanel) -> None:
        self.ctx, self.panel = ctx, panel

    def segment_everything(self) -> None:
        ctx = self.ctx
        if not ctx.ready("Segment everything"):
            return
        session, ui = ctx.session, self.panel
        settings = AutoSettings(points_per_side=ui.points_spin.value(),
                                min_area=ui.min_area_spin.value())
        whole = ui.scope_combo.currentText() == SCOPES[1] and session.plane_keys_shape
        plane = None if whole else ctx.layers.current_plane()
        if not whole and plane is None:
            return ctx.warn(f"No current plane: {ctx.layers.plane_problem()}.")

        def work(cancel: Any, progress: Any) -> Any:
            result = session.auto_segment(plane=None if whole else plane,
                                          link=bool(whole), settings=settings,
                                          progress=progress, cancel=cancel)
            return result.n_objects, len(result.planes), result.cancelled

        ctx.status("Segmenting everything …")
        ctx.jobs.start(work, title="Segment everything", on_done=self._done)

    def boxes_to_masks(self) -> None:
        ctx = self.ctx
        if not ctx.ready("Boxes to masks"):
            return
        from napari.layers import Shapes

        active = ctx.viewer.layers.selection.active  # may be napari's proxy: isinstance works
        layer = active if isinstance(active, Shapes) else ctx.layers.boxes
        if layer is None or not len(layer.data):
            return ctx.warn("Select a Shapes layer of rectangles (e.g. a detector's boxes), "
                            "or draw rectangles on the boxes layer first.")
        name = ctx.ui.class_edit.text().strip() or None
        try:
            table = boxes_from_shapes(
                layer.data, image_shape=ctx.layers.shape, shape_types=layer.shape_type,
                classes=name, shapes_transform=Transform.from_layer(layer),
                image_transform=Transform.from_layer(ctx.layers.image))
        except (PromptError, ValueError) as exc:
            return ctx.warn(f"Cannot use the boxes: {exc}")
        session = ctx.session

        def work(cancel: Any, progress: Any) -> Any:
            result = session.segment_boxes(table, progress=progress, cancel=cancel)
            return len(result.ids), len(result.planes), result.cancelled

        ctx.status(f"Segmenting {len(table.boxes)} box(es) …")
        ctx.jobs.start(work, title="Boxes to masks", on_done=self._done)

    def _done(self, result: Any) -> None:
        n, planes, cancelled = result
        ctx = self.ctx
        if ctx.layers is not None:
            ctx.layers.refresh_output()
        ctx.status(f"{ctx.jobs.title or 'Automatic segmentation'} "
                   f"{'cancelled' if cancelled else 'done'}: {n} object(s) on {planes} "
                   "plane(s) written to the labels store.")
