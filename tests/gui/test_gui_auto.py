"""The widget's automatic group: segment everything and boxes to masks."""

from __future__ import annotations

import numpy as np
from guihelp import iou, start, wait_idle

from napari_segany.samples import load_sample
from napari_segany.storage import LabelsStore


def test_segment_everything_current_plane_keeps_commits(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample = load_sample("nuclei")
    viewer.add_image(sample.image, name="nuclei")
    start(widget, qtbot)
    x, y = sample.point
    widget.layers.points.add([y, x])
    wait_idle(widget, qtbot)
    widget.ui.commit_btn.click()
    committed = LabelsStore.open(widget.ui.output_edit.text(), mode="r").read_plane(())
    widget.auto_ui.points_spin.setValue(16)
    widget.auto_ui.everything_btn.click()
    wait_idle(widget, qtbot)
    labels = LabelsStore.open(widget.ui.output_edit.text(), mode="r").read_plane(())
    assert np.array_equal(labels == 1, committed == 1)  # the committed object is kept
    found = [i for i in np.unique(labels) if i > 1]
    assert len(found) >= 10  # the other nuclei, each under a fresh id
    for oid in (2, 3, 4):
        gt = sample.labels == oid
        assert max(iou(labels == f, gt) for f in found) > 0.8
    assert "done" in widget.ui.status_label.text()


def test_boxes_to_masks_one_object_per_box_with_class(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample = load_sample("nuclei")
    viewer.add_image(sample.image, name="nuclei")
    start(widget, qtbot)
    rects = []
    for oid in (3, 6, 9):
        rows, cols = np.nonzero(sample.labels == oid)
        rects.append(np.array([[rows.min() - 2, cols.min() - 2], [rows.max() + 2, cols.max() + 2]],
                              float))
    detections = viewer.add_shapes(rects, shape_type="rectangle", name="detections")
    viewer.layers.selection.active = detections  # e.g. a detector's output layer
    wait_idle(widget, qtbot)
    widget.ui.class_edit.setText("nucleus")
    widget.auto_ui.boxes_btn.click()
    wait_idle(widget, qtbot)
    store = LabelsStore.open(widget.ui.output_edit.text(), mode="r")
    labels = store.read_plane(())
    ids = [i for i in np.unique(labels) if i]
    assert len(ids) == 3
    for oid in (3, 6, 9):
        assert max(iou(labels == i, sample.labels == oid) for i in ids) > 0.8
    assert {store.provenance["objects"][str(i)]["class_name"] for i in ids} == {"nucleus"}
