"""Undo and redo in the dock widget for every kind of operation, napari edits of the labels
layer as operations, and the labels layer's Ctrl+Z bound to the session (under Xvfb)."""

from __future__ import annotations

import numpy as np
from guihelp import start, wait_idle

from napari_segany.samples import load_sample
from napari_segany.storage import LabelsStore


def _store(widget) -> LabelsStore:
    return LabelsStore.open(widget.ui.output_edit.text(), mode="r")


def _counts(plane: np.ndarray) -> dict[int, int]:
    ids, n = np.unique(plane, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, n, strict=True)}


def test_undo_after_boxes_keeps_the_earlier_commit(viewer_widget, qtbot, rule_model):
    """Case 1 in the widget: commit, Boxes to masks (2 boxes), Undo."""
    viewer, widget = viewer_widget
    sample = load_sample("nuclei")
    viewer.add_image(sample.image, name="nuclei")
    start(widget, qtbot)
    x, y = sample.point
    widget.layers.points.add([y, x])
    wait_idle(widget, qtbot)
    widget.ui.commit_btn.click()
    after_commit = _counts(_store(widget).read_plane(()))
    rects = []
    for oid in (3, 6):
        rows, cols = np.nonzero(sample.labels == oid)
        rects.append(np.array([[rows.min() - 2, cols.min() - 2],
                               [rows.max() + 2, cols.max() + 2]], float))
    detections = viewer.add_shapes(rects, shape_type="rectangle", name="detections")
    viewer.layers.selection.active = detections
    wait_idle(widget, qtbot)
    widget.auto_ui.boxes_btn.click()
    wait_idle(widget, qtbot)
    assert len(_counts(_store(widget).read_plane(()))) == len(after_commit) + 2
    widget.ui.undo_btn.click()
    assert _counts(_store(widget).read_plane(())) == after_commit
    assert widget.ui.status_label.text() == "Undid boxes to masks (2 boxes)."
    widget.ui.redo_btn.click()
    assert len(_counts(_store(widget).read_plane(()))) == len(after_commit) + 2
    assert widget.ui.status_label.text().startswith("Redid boxes to masks")


def test_undo_after_propagation_leaves_no_hole(viewer_widget, qtbot, rule_model):
    """Case 2 in the widget: commit on a plane, propagate from it, Undo."""
    viewer, widget = viewer_widget
    sample = load_sample("volume")
    image = viewer.add_image(sample.image, name="vol")
    start(widget, qtbot)
    (z0,), (x, y) = sample.point_plane, sample.point
    viewer.dims.set_point(0, z0)
    widget.layers.points.add([z0, y, x])
    wait_idle(widget, qtbot)
    widget.ui.commit_btn.click()
    committed = _store(widget).read_plane(z0).copy()
    assert committed.any() and image is not None
    widget.ui.mode_combo.setCurrentText("slice-wise propagation")
    widget.ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    planes = [z for z in range(sample.image.shape[0]) if _store(widget).read_plane(z).any()]
    assert len(planes) > 3
    widget.ui.undo_btn.click()
    text = widget.ui.status_label.text()
    assert text.startswith("Undid propagation of object 1 (slice) on planes"), text
    store = _store(widget)
    assert np.array_equal(store.read_plane(z0), committed)  # the prompted plane is whole
    assert [z for z in range(sample.image.shape[0]) if store.read_plane(z).any()] == [z0]


def test_a_brush_stroke_is_one_operation_and_ctrl_z_undoes_it(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    viewer.add_image(np.zeros((64, 64), np.uint8), name="blank")
    start(widget, qtbot)
    output = widget.layers.output
    view = widget.ctx.labels_view
    # what napari's brush does in one mouse drag: begin a stroke, paint several times,
    # commit the stroke (which emits the layer's paint event)
    output.selected_label = 4
    output._begin_stroke()
    output.paint((10, 10), 4)
    output.paint((10, 20), 4)
    output.paint((10, 30), 4)
    assert view.in_stroke  # the writes so far are one open operation
    output._commit_stroke()
    assert not view.in_stroke
    store = _store(widget)
    edits = [op for op in store.history() if op.kind == "edit"]
    assert len(edits) == 1 and edits[0].pixels == int((store.read_plane(()) == 4).sum()) > 0
    output.fill((40, 40), 5)  # a fill: one more operation (napari emits its paint event)
    assert (_store(widget).read_plane(()) == 5).sum() > 1000
    # Ctrl+Z on the labels layer is the session's undo (newest first)
    keys = {str(k): v for k, v in output.keymap.items()}
    undo, redo = keys["Ctrl+Z"], keys["Ctrl+Shift+Z"]
    undo(output)
    plane = _store(widget).read_plane(())
    assert not (plane == 5).any() and (plane == 4).any()
    assert widget.ui.status_label.text().startswith("Undid napari edit of the labels layer")
    undo(output)
    assert not _store(widget).read_plane(()).any()
    redo(output)
    assert (_store(widget).read_plane(()) == 4).any()
