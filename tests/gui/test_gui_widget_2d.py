"""The dock widget on 2D images, opened through the real plugin manifest."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from guihelp import WIDGET, iou, rule_mask, start, wait_idle

from napari_segany.samples import load_sample
from napari_segany.storage import LabelsStore


def _store(widget) -> LabelsStore:
    return LabelsStore.open(widget.ui.output_edit.text(), mode="r")


def test_widget_from_manifest_with_sample(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segany", "nuclei")
    _dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    ui = widget.ui
    assert ui.image_combo.currentText() == "nuclei (sample)"
    models = [ui.model_combo.itemText(i) for i in range(ui.model_combo.count())]
    assert {"sam_tiny", "sam2_tiny", "sam_vit_b", "sam2.1_hiera_tiny"} <= set(models)
    assert ui.model_combo.currentText() == "sam2.1_hiera_tiny"
    assert ui.output_edit.text().endswith("nuclei_sample_labels.zarr")  # temp default, shown
    assert [ui.device_combo.itemText(i) for i in range(3)] == ["auto", "cpu", "cuda"]
    assert not ui.volume_group.isEnabled()  # 2D image: no propagation
    # a second image appears in the combo; removing the picked one updates it
    viewer.add_image(np.zeros((8, 8)), name="other")
    assert ui.image_combo.findText("other") >= 0
    viewer.layers.remove("other")
    assert ui.image_combo.findText("other") < 0


def test_points_box_commit_undo_redo_exact(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample = load_sample("nuclei")
    viewer.add_image(sample.image, name="nuclei")
    start(widget, qtbot)
    session, layers, ui = widget.session, widget.layers, widget.ui
    assert {layers.points.name, layers.boxes.name, layers.preview.name,
            layers.output.name} <= {x.name for x in viewer.layers}
    # the store itself, lazy; napari's brush writes through it
    assert widget.ctx.labels_view.store is session.labels
    assert layers.output.data.shape == session.labels.shape
    rgb = session.plane_rgb(())
    backend = rule_model.made[-1]
    threads: list[str] = []
    real_embed = backend.embed
    backend.embed = lambda im: (threads.append(threading.current_thread().name),
                                real_embed(im))[1]

    # object 1: one positive click -> preview from an embedding computed in a worker
    x, y = sample.point
    layers.points.add([y, x])
    wait_idle(widget, qtbot)
    expected1 = rule_mask(rgb, (y, x))
    assert widget.preview is not None and np.array_equal(widget.preview.mask, expected1)
    assert np.array_equal(layers.preview_plane() > 0, expected1)
    assert threads and threads[0] != threading.main_thread().name
    assert iou(expected1, sample.labels == sample.labels[int(y), int(x)]) > 0.9
    ui.commit_btn.click()
    assert np.array_equal(_store(widget).read_plane(()), expected1.astype(np.uint32))
    assert np.array_equal(np.asarray(layers.output.data) == 1, expected1)

    # object 2: a box around another nucleus, with a class name
    ui.new_btn.click()
    assert ui.object_spin.value() == 2
    gt = sample.labels == 5
    rows, cols = np.nonzero(gt)
    r0, r1, c0, c1 = rows.min() - 3, rows.max() + 3, cols.min() - 3, cols.max() + 3
    layers.boxes.add_rectangles(np.array([[r0, c0], [r1, c1]], float))
    assert layers.boxes.features["object_id"].tolist() == [2]
    wait_idle(widget, qtbot)
    expected2 = rule_mask(rgb, (rows.mean(), cols.mean()))
    assert np.array_equal(widget.preview.mask, expected2)
    ui.class_edit.setText("nucleus")
    ui.commit_btn.click()
    plane = _store(widget).read_plane(())
    assert set(np.unique(plane)) == {0, 1, 2}
    assert np.array_equal(plane == 2, expected2)
    assert _store(widget).provenance["objects"]["2"] == {"class_name": "nucleus"}
    assert session.embeddings_computed == 1  # the plane was embedded once

    ui.undo_btn.click()
    assert not np.any(_store(widget).read_plane(()) == 2)
    assert not np.any(np.asarray(layers.output.data) == 2)
    assert ui.status_label.text() == "Undid commit of object 2 on plane (2D)."
    wait_idle(widget, qtbot)  # the preview of object 2's prompts is shown again
    assert widget.preview is not None and np.array_equal(widget.preview.mask, expected2)
    ui.redo_btn.click()
    assert np.array_equal(_store(widget).read_plane(()) == 2, expected2)
    ui.undo_btn.click()
    ui.undo_btn.click()
    assert not _store(widget).read_plane(()).any()
    ui.undo_btn.click()
    assert ui.status_label.text() == "Nothing to undo."

    # a second box for the same object replaces the first (one box per object and plane)
    layers.boxes.add_rectangles(np.array([[r0 + 1, c0 + 1], [r1, c1]], float))
    wait_idle(widget, qtbot)
    assert len(layers.boxes.data) == 1
    # going back to object 1 shows its class name (none) and its preview again
    ui.object_spin.setValue(1)
    wait_idle(widget, qtbot)
    assert ui.class_edit.text() == ""
    assert np.array_equal(widget.preview.mask, expected1)
    # clear prompts removes only object 1's prompts
    ui.clear_btn.click()
    assert len(layers.points.data) == 0 and len(layers.boxes.data) == 1
    assert widget.preview is None and not layers.preview.data.any()


def test_negative_points_and_key_toggle(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample = load_sample("nuclei")
    viewer.add_image(sample.image, name="nuclei")
    start(widget, qtbot)
    layers, ui = widget.layers, widget.ui
    x, y = sample.point
    layers.points.add([y, x])
    wait_idle(widget, qtbot)
    assert widget.preview.mask.any()
    # T (the key binding's action) switches new points to negative
    widget.toggle_positive()
    assert not ui.positive_check.isChecked()
    layers.points.add([y + 1, x + 1])
    wait_idle(widget, qtbot)
    assert layers.points.features["positive"].tolist() == [True, False]
    colors = layers.points.face_color
    assert colors[0][1] > colors[0][0] and colors[1][0] > colors[1][1]  # green, red
    assert not widget.preview.mask.any()  # the negative click removed the nucleus
    ui.commit_btn.click()  # an empty mask commits nothing harmful
    assert not _store(widget).read_plane(()).any()
    # in select mode, T flips the selected points instead
    layers.points.mode = "select"
    layers.points.selected_data = {1}
    widget.toggle_positive()
    wait_idle(widget, qtbot)
    assert layers.points.features["positive"].tolist() == [True, True]
    assert widget.preview.mask.any()
    # the keys are napari actions on the viewer (any active layer; see test_gui_shortcuts)
    from napari.utils.action_manager import action_manager

    assert [str(k) for k in action_manager._shortcuts["napari-segany:toggle_polarity"]] == ["T"]
    assert [str(k) for k in action_manager._shortcuts["napari-segany:new_object"]] == ["N"]


def test_rgb_image_with_scale(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    rgb = np.zeros((64, 80, 3), np.uint8)
    yy, xx = np.mgrid[:64, :80]
    rgb[(yy - 30) ** 2 + (xx - 40) ** 2 < 100] = (250, 200, 220)
    rgb[5:10, 5:10] = 255
    image = viewer.add_image(rgb, name="rgb", rgb=True, scale=(0.5, 0.25), translate=(3, -2))
    start(widget, qtbot)
    layers = widget.layers
    assert layers.points.ndim == 2
    np.testing.assert_allclose(layers.output.scale, image.scale)
    np.testing.assert_allclose(layers.output.translate, image.translate)
    # a click given in world coordinates lands on the disc
    layers.points.add(layers.points.world_to_data(image.data_to_world([30, 40])))
    wait_idle(widget, qtbot)
    disc = (yy - 30) ** 2 + (xx - 40) ** 2 < 100
    assert np.array_equal(widget.preview.mask, disc)
    widget.ui.commit_btn.click()
    assert np.array_equal(_store(widget).read_plane(()) == 1, disc)


def test_tiny_sam_random_weights_through_the_ui(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-segany", "nuclei")
    start(widget, qtbot, model="sam_tiny", random=True)
    assert widget.session.backend.name == "sam_tiny"
    x, y = load_sample("nuclei").point
    widget.layers.points.add([y, x])
    wait_idle(widget, qtbot)
    seg = widget.preview
    assert seg is not None and seg.mask.shape == (256, 256)
    widget.ui.commit_btn.click()
    assert np.array_equal(_store(widget).read_plane(()) == 1, seg.mask)
    widget.ui.undo_btn.click()
    assert not _store(widget).read_plane(()).any()


def test_download_failure_is_a_notification_with_the_offline_message(
        viewer_widget, qtbot, monkeypatch, tmp_path):
    from napari.utils.notifications import notification_manager

    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    monkeypatch.setenv("NAPARI_SEGANY_CACHE_DIR", str(tmp_path / "models"))
    viewer, widget = viewer_widget
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    before = len(notification_manager.records)
    widget.ui.model_combo.setCurrentText("sam_vit_b")
    widget.ui.random_check.setChecked(False)
    widget.ui.start_btn.click()
    wait_idle(widget, qtbot)
    assert widget.session is None
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("offline" in m and "random weights (testing)" in m for m in messages), messages
    assert widget.ui.status_label.text().startswith("Could not load the model")
    assert "offline" in widget.ui.details_text.toPlainText()


@pytest.mark.parametrize("what", ["commit", "propagate"])
def test_actions_before_start_explain_what_to_do(viewer_widget, qtbot, what):
    from napari.utils.notifications import notification_manager

    _viewer, widget = viewer_widget
    before = len(notification_manager.records)
    part = widget.prompting if what == "commit" else widget.long_jobs
    getattr(part, what)()
    assert "Press Start first" in str(notification_manager.records[before].message)


def test_removing_the_dock_widget_leaves_the_viewer_working(make_napari_viewer, qtbot,
                                                             rule_model):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(*WIDGET)
    viewer.add_image(np.zeros((4, 32, 32), np.uint8), name="vol")
    start(widget, qtbot)
    points = widget.layers.points
    viewer.window.remove_dock_widget(dock)
    qtbot.wait(50)
    # events that the widget listened to must not raise now
    viewer.dims.set_current_step(0, 2)
    points.add([2, 5, 5])
    viewer.add_image(np.zeros((8, 8)), name="later")
    qtbot.wait(50)


def test_output_of_another_shape_is_refused_and_kept(viewer_widget, qtbot, rule_model,
                                                    tmp_path):
    from napari.utils.notifications import notification_manager

    viewer, widget = viewer_widget
    other = LabelsStore.create(tmp_path / "other.zarr", (10, 10))
    other.write_plane((), np.full((10, 10), 4, np.uint32))
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    widget.ui.output_edit.setText(str(tmp_path / "other.zarr"))
    before = len(notification_manager.records)
    widget.ui.model_combo.setCurrentText("rule_test")
    widget.ui.random_check.setChecked(True)
    widget.ui.start_btn.click()
    wait_idle(widget, qtbot)
    assert widget.session is None
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("choose another output path" in m for m in messages), messages
    assert (LabelsStore.open(tmp_path / "other.zarr").read_plane(()) == 4).all()


def test_reused_prompt_layers_get_the_feature_columns(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    mine = viewer.add_points([[3, 3]], name="img points")  # made by the user, no features
    start(widget, qtbot)
    assert widget.layers.points is mine
    assert mine.features["positive"].tolist() == [True]
    assert mine.features["object_id"].tolist() == [1]
