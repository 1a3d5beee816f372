"""The widget's "Automatic" group: segment everything, and boxes to masks in batch.

Both run in a thread worker with progress and cancel; they call
:meth:`~napari_segany.Session.auto_segment` and
:meth:`~napari_segany.Session.segment_boxes` on the widget's session, staged in the
review area when review is on. The settings (thresholds, NMS, min area, tiles for large
planes) are the API's and the CLI's.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..auto import AutoSettings
from ..boxes import boxes_from_shapes
from ..errors import PromptError
from ..prompts import Transform
from ..tiling import TiledEmbeddings
from .context import Context
from .panels import Section, row

__all__ = ["AutoPanel", "AutoJobs", "SCOPES"]

SCOPES = ("current plane", "all planes (objects linked)")


def _double(lo: float, hi: float, value: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setDecimals(2)
    spin.setSingleStep(0.05)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class AutoPanel:
    """Controls of automatic segmentation (plain Qt widgets)."""

    def __init__(self) -> None:
        d = AutoSettings()
        self.box = QGroupBox("4. Automatic")
        outer = QVBoxLayout(self.box)
        top = QWidget()
        form = QFormLayout(top)
        form.setContentsMargins(0, 0, 0, 0)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems(list(SCOPES))
        self.scope_combo.setToolTip("One plane, or every plane with objects linked across "
                                    "planes by overlap")
        form.addRow("scope", self.scope_combo)
        self.everything_btn = QPushButton("Segment everything")
        self.everything_btn.setToolTip("SAM's automatic mask generator; existing objects are "
                                       "kept")
        self.boxes_btn = QPushButton("Boxes to masks")
        self.boxes_btn.setToolTip("Every rectangle of the selected Shapes layer (else the "
                                  "boxes layer) becomes one object, batched; the class name "
                                  "field is kept as its class")
        form.addRow(row(self.everything_btn, self.boxes_btn))
        outer.addWidget(top)
        # settings, folded
        content = QWidget()
        sf = QFormLayout(content)
        sf.setContentsMargins(8, 0, 0, 0)
        self.points_spin = QSpinBox()
        self.points_spin.setRange(4, 128)
        self.points_spin.setValue(d.points_per_side)
        self.points_spin.setToolTip("Prompt grid: points per side (points_per_side)")
        sf.addRow("points per side", self.points_spin)
        self.iou_check = QCheckBox("model default")
        self.iou_check.setChecked(True)
        self.iou_spin = _double(0, 1, 0.88, "Keep masks whose predicted IoU is above this "
                                "(pred_iou_thresh)")
        self.iou_spin.setEnabled(False)
        self.iou_check.toggled.connect(lambda on: self.iou_spin.setEnabled(not on))
        sf.addRow("predicted IoU ≥", row(self.iou_spin, self.iou_check))
        self.stability_spin = _double(0, 1, d.stability_score_thresh,
                                      "Keep masks at least this stable "
                                      "(stability_score_thresh)")
        sf.addRow("stability ≥", self.stability_spin)
        self.nms_spin = _double(0, 1, d.box_nms_thresh,
                                "Box IoU above which duplicates are removed (box_nms_thresh)")
        sf.addRow("NMS box IoU", self.nms_spin)
        self.min_area_spin = QSpinBox()
        self.min_area_spin.setRange(0, 10**7)
        self.min_area_spin.setValue(d.min_area)
        self.min_area_spin.setToolTip("Objects and fragments smaller than this are removed")
        sf.addRow("min area (px)", self.min_area_spin)
        self.tiles_check = QCheckBox("tiles for large planes")
        self.tiles_check.setToolTip("Segment tile by tile at full resolution (SAM otherwise "
                                    "sees the plane resized to 1024 px)")
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(128, 8192)
        self.tile_spin.setSingleStep(128)
        self.tile_spin.setValue(1024)
        self.tile_spin.setToolTip("Tile side (px)")
        self.halo_spin = QSpinBox()
        self.halo_spin.setRange(0, 4096)
        self.halo_spin.setValue(128)
        self.halo_spin.setToolTip("Overlap margin between tiles (px)")
        sf.addRow(self.tiles_check)
        sf.addRow("tile / overlap", row(self.tile_spin, self.halo_spin))
        self.settings_section = Section("Automatic settings", content)
        outer.addWidget(self.settings_section)
        self.buttons = (self.everything_btn, self.boxes_btn)

    def settings(self) -> AutoSettings:
        return AutoSettings(points_per_side=self.points_spin.value(),
                            pred_iou_thresh=None if self.iou_check.isChecked()
                            else self.iou_spin.value(),
                            stability_score_thresh=self.stability_spin.value(),
                            box_nms_thresh=self.nms_spin.value(),
                            min_area=self.min_area_spin.value())

    def tiling(self) -> tuple[int, int] | None:
        return ((self.tile_spin.value(), self.halo_spin.value())
                if self.tiles_check.isChecked() else None)


class AutoJobs:
    """Runs the Automatic group's two buttons on the widget's session."""

    def __init__(self, ctx: Context, panel: AutoPanel, review: Any) -> None:
        self.ctx, self.panel, self.review = ctx, panel, review

    def _tiled(self) -> TiledEmbeddings | None:
        tiling = self.panel.tiling()
        if tiling is None:
            return None
        tile, halo = tiling
        if halo >= tile // 2:
            raise ValueError(f"the tile overlap ({halo} px) must be under half the tile side "
                             f"({tile} px)")
        return TiledEmbeddings.from_session(self.ctx.session, tile=tile, halo=halo)

    def segment_everything(self) -> None:
        ctx = self.ctx
        if not ctx.ready("Segment everything"):
            return
        session, ui = ctx.session, self.panel
        whole = ui.scope_combo.currentText() == SCOPES[1] and session.plane_keys_shape
        plane = None if whole else ctx.layers.current_plane()
        if not whole and plane is None:
            return ctx.warn(f"No current plane: {ctx.layers.plane_problem()}.")
        try:
            settings, tiled = ui.settings(), self._tiled()
        except ValueError as exc:
            return ctx.warn(f"Check the automatic settings: {exc}")
        review = self.review.staging()

        def work(cancel: Any, progress: Any) -> Any:
            result = session.auto_segment(plane=None if whole else plane, link=bool(whole),
                                          settings=settings, tiled=tiled, progress=progress,
                                          cancel=cancel, review=review)
            return result.n_objects, len(result.planes), result.cancelled

        self._start(work, "Segment everything", "Segmenting everything …", review)

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
            tiled = self._tiled()
        except (PromptError, ValueError) as exc:
            return ctx.warn(f"Cannot use the boxes: {exc}")
        session, review = ctx.session, self.review.staging()

        def work(cancel: Any, progress: Any) -> Any:
            result = session.segment_boxes(table, tiled=tiled, progress=progress,
                                           cancel=cancel, review=review)
            return len(result.ids), len(result.planes), result.cancelled

        self._start(work, "Boxes to masks", f"Segmenting {len(table.boxes)} box(es) …", review)

    def _start(self, work: Any, title: str, text: str, review: bool) -> None:
        ctx, generation = self.ctx, self.ctx.generation
        if review:
            self.review.show_layer()
        ctx.status(text)
        ctx.jobs.start(work, title=title,
                       on_done=lambda r: self._done(r, title, review, generation),
                       on_error=lambda e: generation == ctx.generation and ctx.fail(e, title))

    def _done(self, result: Any, title: str, review: bool, generation: int) -> None:
        n, planes, cancelled = result
        ctx = self.ctx
        if ctx.generation != generation:
            return
        ctx.store_changed()
        where = ("staged for review: accept or discard them below" if review else
                 "written to the labels store")
        ctx.status(f"{title} {'cancelled' if cancelled else 'done'}: {n} object(s) on "
                   f"{planes} plane(s) {where}.")
