"""The widget's "Automatic" group: segment everything, and boxes to masks in batch.

Both run in a thread worker with progress and cancel; they call
:func:`napari_segany.auto.auto_segment` / :func:`~napari_segany.auto.auto_plane` and
:func:`napari_segany.boxes.segment_boxes` on the widget's session.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QPushButton, QSpinBox

__all__ = ["AutoPanel", "AutoActions", "SCOPES"]

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


class AutoActions:
    """Mixed into the widget next to :class:`~napari_segany._qt._actions.Actions`."""

    session: Any
    layers: Any
    jobs: Any
    ui: Any
    auto_ui: AutoPanel

    def segment_everything(self) -> None:
        from ..auto import AutoSettings, auto_plane, auto_segment

        if not self._ready("Segment everything"):
            return
        session, ui = self.session, self.auto_ui
        settings = AutoSettings(points_per_side=ui.points_spin.value(),
                                min_area=ui.min_area_spin.value())
        whole = ui.scope_combo.currentText() == SCOPES[1] and session.plane_keys_shape
        plane = None if whole else self.layers.current_plane()
        if not whole and plane is None:
            return self._warn(f"No current plane: {self.layers.plane_problem()}.")

        def work(cancel: Any, progress: Any) -> Any:
            if whole:
                result = auto_segment(session, settings=settings, progress=progress,
                                      cancel=cancel)
                return len(result.object_ids), len(result.planes), cancel()
            labels = auto_plane(session, plane, settings=settings, progress=progress,
                                cancel=cancel)
            if cancel():
                return 0, 0, True
            return _write_plane(session, plane, labels), 1, False

        self.status("Segmenting everything …")
        self.jobs.start(work, title="Segment everything", on_done=self._auto_done)

    def boxes_to_masks(self) -> None:
        from ..boxes import boxes_from_shapes, segment_boxes
        from ..prompts import PromptError, Transform

        if not self._ready("Boxes to masks"):
            return
        from napari.layers import Shapes

        active = self.viewer.layers.selection.active  # may be napari's proxy: isinstance works
        layer = active if isinstance(active, Shapes) else self.layers.boxes
        if layer is None or not len(layer.data):
            return self._warn("Select a Shapes layer of rectangles (e.g. a detector's boxes), "
                              "or draw rectangles on the boxes layer first.")
        name = self.ui.class_edit.text().strip() or None
        try:
            table = boxes_from_shapes(
                layer.data, image_shape=self.layers.shape, shape_types=layer.shape_type,
                classes=name, shapes_transform=Transform.from_layer(layer),
                image_transform=Transform.from_layer(self.layers.image))
        except (PromptError, ValueError) as exc:
            return self._warn(f"Cannot use the boxes: {exc}")
        session = self.session

        def work(cancel: Any, progress: Any) -> Any:
            result = segment_boxes(session, table, progress=progress, cancel=cancel)
            return len(result.ids), len(result.planes), cancel()

        self.status(f"Segmenting {len(table.boxes)} box(es) …")
        self.jobs.start(work, title="Boxes to masks", on_done=self._auto_done)

    def _auto_done(self, result: Any) -> None:
        n, planes, cancelled = result
        if self.layers is not None:
            self.layers.refresh_output()
        self.status(f"{self.jobs.title or 'Automatic segmentation'} "
                    f"{'cancelled' if cancelled else 'done'}: {n} object(s) on {planes} "
                    "plane(s) written to the labels store.")


def _write_plane(session: Any, plane: tuple[int, ...], labels: Any) -> int:
    """Add one plane's automatic objects under fresh ids, keeping committed objects."""
    import numpy as np

    store = session.labels
    current = store.read_plane(plane)
    start = store.next_object_id()
    ids = [int(i) for i in np.unique(labels) if i]
    new = current.copy()
    for n, i in enumerate(ids):
        new[(labels == i) & (current == 0)] = start + n
    store.write_plane(plane, new)
    store.update_provenance(objects={**store.provenance.get("objects", {}),
                                     **{str(start + n): {"source": "auto"}
                                        for n in range(len(ids))}})
    return len(ids)
