"""The annotator a biologist spends a day in: one test per defect users met, and the
features that replaced them (review before commit, shortcuts, object list, restored
prompts, the model off the GUI thread, layer lifecycle, short errors)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from guihelp import GatedRule, rule_mask, start, wait_idle
from scipy import ndimage as ndi

from napari_segany.samples import load_sample
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend


def _go_to(viewer, image, key) -> None:
    world = image.data_to_world(list(key) + [0, 0])
    for axis, value in enumerate(world[: len(key)]):
        viewer.dims.set_point(viewer.dims.ndim - image.ndim + axis, value)


def _click(layers, image, index) -> None:
    layers.points.add(layers.points.world_to_data(image.data_to_world(list(index))))


def _volume(viewer, name="vol", **kw):
    sample = load_sample("volume")
    return sample, viewer.add_image(sample.image, name=name, **kw)


def _prompt_blob(widget, viewer, image, sample, qtbot):
    (z0,), (x, y) = sample.point_plane, sample.point
    _go_to(viewer, image, (z0,))
    _click(widget.layers, image, (z0, y, x))
    wait_idle(widget, qtbot)
    assert widget.preview is not None and widget.preview.mask.any()
    return z0, x, y


def _planes(store: LabelsStore) -> list[tuple[int, ...]]:
    return sorted(store.written_planes())


# ---------------------------------------------------------------- layer lifecycle (defect 2)
def test_removing_the_image_cancels_its_propagation_and_tidies_its_layers(
        viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample, image = _volume(viewer)
    gate = threading.Event()
    rule_model.make = lambda name: GatedRule(gate, after=2, name=name)
    start(widget, qtbot)
    _prompt_blob(widget, viewer, image, sample, qtbot)
    store_path = widget.session.labels.path
    widget.ui.mode_combo.setCurrentText("slice-wise propagation")
    widget.ui.propagate_btn.click()
    backend = widget.session.backend
    qtbot.waitUntil(lambda: backend.waiting, timeout=10_000)
    viewer.layers.remove(image)  # while the worker is inside the model
    text = widget.ui.status_label.text()
    assert "'vol' was removed" in text and "Propagation was cancelled" in text, text
    assert not [x.name for x in viewer.layers if x.name.startswith("vol ")]
    gate.set()
    wait_idle(widget, qtbot)
    assert widget.ui.status_label.text() == text  # not overwritten by "Propagation done"
    assert widget.session is None and widget.layers is None
    written = _planes(LabelsStore.open(store_path, mode="r"))
    assert len(written) <= 3, written  # stopped at the next check, not all 20 planes


# ------------------------------------------------- propagation stops and settings (defect 3)
def test_a_stopped_walk_says_where_and_why_and_continues_from_a_correction(
        viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample, image = _volume(viewer)
    start(widget, qtbot)
    z0, x, y = _prompt_blob(widget, viewer, image, sample, qtbot)
    ui, panel = widget.ui, widget.propagation
    ui.mode_combo.setCurrentText("slice-wise propagation")
    ui.direction_combo.setCurrentText("forward")
    # the settings are in the widget: a large min area stops the walk early
    area = int(sample.labels[z0].astype(bool).sum())
    panel.min_area.setValue(area)
    ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    text = ui.status_label.text()
    assert "stopped at plane" in text and "min_area" in text and "Continue from here" in text
    assert len(panel.stops) == 1 and not panel.stops_row.isHidden()
    stop = panel.stops[0]
    assert stop.direction == 1 and stop.plane[0] > z0
    written = _planes(widget.session.labels)
    assert stop.plane not in written and max(written)[0] == stop.plane[0] - 1
    # go there, correct with a click, relax the rule and continue the way it went
    panel.go_btn.click()
    wait_idle(widget, qtbot)
    assert widget.layers.current_plane() == stop.plane and ui.object_spin.value() == 1
    mask = sample.labels[stop.plane[0]] == 1
    ry, rx = np.argwhere(mask)[len(np.argwhere(mask)) // 2]
    _click(widget.layers, image, (stop.plane[0], ry, rx))
    wait_idle(widget, qtbot)
    panel.min_area.setValue(16)
    panel.continue_btn.click()
    wait_idle(widget, qtbot)
    after = _planes(widget.session.labels)
    assert stop.plane in after and max(after)[0] > stop.plane[0]
    assert all(k[0] >= z0 for k in after)  # forward only: nothing below the first prompt


# -------------------------------------------- output path per image, failed Start (defect 4)
def test_output_is_per_image_and_a_failed_start_keeps_the_working_session(
        viewer_widget, qtbot, rule_model, tmp_path):
    viewer, widget = viewer_widget
    a = viewer.add_image(np.zeros((32, 32), np.uint8), name="a")
    mine = str(tmp_path / "a_labels.zarr")
    widget.ui.image_combo.setCurrentText("a")
    widget.ui.output_edit.setText(mine)
    widget.ui.output_edit.textEdited.emit(mine)
    viewer.add_image(np.zeros((40, 40), np.uint8), name="b")
    widget.ui.image_combo.setCurrentText("b")
    assert widget.ui.output_edit.text() != mine  # b gets its own default, not a's path
    widget.ui.image_combo.setCurrentText("a")
    assert widget.ui.output_edit.text() == mine
    start(widget, qtbot, image="a")
    working = widget.session
    # b pointed at a's store (another shape): refused; a's session goes on working
    widget.ui.image_combo.setCurrentText("b")
    widget.ui.output_edit.setText(mine)
    widget.ui.start_btn.click()
    wait_idle(widget, qtbot)
    assert widget.session is working and widget.layers.image is a
    short = widget.ui.status_label.text()
    assert short.startswith("Could not open the output:") and "another output path" in short
    assert "Could not load" not in short  # the model is not blamed
    assert len(short) < 260 and not widget.ui.details_btn.isHidden()
    assert "(32, 32)" in widget.ui.details_text.toPlainText()


# ---------------------------------------------------- removed layers are noticed (defect 5)
def test_removing_the_labels_or_points_layer_is_said_and_start_recreates_them(
        viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    img = np.zeros((48, 48), np.uint8)
    img[10:20, 10:20] = 255
    viewer.add_image(img, name="img")
    start(widget, qtbot)
    session = widget.session
    viewer.layers.remove(widget.layers.output)
    qtbot.waitUntil(lambda: "labels layer was removed" in widget.ui.status_label.text())
    widget.layers.points.add([15, 15])
    wait_idle(widget, qtbot)
    widget.ui.commit_btn.click()
    assert "press Start to see it again" in widget.ui.status_label.text()
    assert widget.session.labels.read_plane(()).any()  # committed into the store
    viewer.layers.remove(widget.layers.points)
    qtbot.waitUntil(lambda: "points layer was removed" in widget.ui.status_label.text())
    widget.ui.start_btn.click()
    wait_idle(widget, qtbot)
    assert widget.session is session  # same image, model and output: reused, not reloaded
    names = {x.name for x in viewer.layers}
    assert {"img points", "img labels"} <= names
    assert np.asarray(widget.layers.output.data[:]).any()


# ----------------------------------------- precompute, embedding wait, axis names (defect 6/8)
def test_precompute_says_when_everything_was_cached(viewer_widget, qtbot, rule_model, tmp_path):
    viewer, widget = viewer_widget
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (4, 32, 32), np.uint8),
                     name="v")
    widget.ui.output_edit.setText(str(tmp_path / "v.zarr"))
    widget.ui.cache_check.setChecked(True)
    start(widget, qtbot)
    widget.ui.precompute_btn.click()
    wait_idle(widget, qtbot)
    assert widget.ui.status_label.text().startswith("Precompute done: 4 plane(s)")
    widget.ui.precompute_btn.click()
    wait_idle(widget, qtbot)
    assert widget.ui.status_label.text().startswith("All 4 plane(s) were already in the")


def test_a_slow_first_embedding_is_said_and_cancel_stops_waiting(viewer_widget, qtbot,
                                                                  rule_model):
    viewer, widget = viewer_widget
    gate = threading.Event()
    rule_model.make = lambda name: GatedRule(gate, after=0, name=name)
    img = np.zeros((48, 48), np.uint8)
    img[10:20, 10:20] = 255
    viewer.add_image(img, name="img")
    start(widget, qtbot)
    widget.layers.points.add([15, 15])
    ui = widget.ui
    qtbot.waitUntil(lambda: "Embedding plane" in ui.status_label.text(), timeout=5_000)
    assert ui.cancel_btn.isEnabled() and ui.progress_bar.maximum() == 0
    assert "Cancel stops waiting" in ui.status_label.text()
    ui.cancel_btn.click()
    assert "Stopped waiting" in ui.status_label.text() and not ui.cancel_btn.isEnabled()
    gate.set()
    qtbot.waitUntil(lambda: not widget.executor.busy, timeout=10_000)
    assert widget.preview is None  # the cancelled result is not shown ...
    assert widget.session.has_embedding(())  # ... but the embedding is kept
    widget.preview_now()
    wait_idle(widget, qtbot)
    assert widget.preview is not None and widget.preview.mask.any()


@pytest.mark.parametrize("labels, expected", [(None, "axis 0 (24 planes)"),
                                              (("z", "y", "x"), "z (axis 0, 24 planes)")])
def test_axis_names(viewer_widget, qtbot, rule_model, labels, expected):
    viewer, widget = viewer_widget
    kw = {"axis_labels": labels} if labels else {}
    _volume(viewer, **kw)
    start(widget, qtbot)
    assert widget.ui.axis_combo.itemText(0) == expected


# ------------------------------------------------------- decoding off the GUI thread (7)
class _GatedDecoder(RuleBackend):
    """Records the thread and the prompts of every decoder call; while ``gate`` is closed
    each call waits for it (10 s at most, which counts as a failure: ``timed_out``)."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.gate = threading.Event()
        self.gate.set()
        self.threads, self.seen, self.inside, self.timed_out = [], [], 0, False

    def predict(self, embedding, prompts, **kw):
        self.threads.append(threading.get_ident())
        self.seen.append(np.asarray(prompts[0].points).copy())
        self.inside += 1
        if not self.gate.wait(10):
            self.timed_out = True
        self.inside -= 1
        return super().predict(embedding, prompts, **kw)


def test_clicks_decode_off_the_gui_thread_and_the_latest_click_wins(viewer_widget, qtbot,
                                                                     rule_model):
    viewer, widget = viewer_widget
    rule_model.make = lambda name: _GatedDecoder(name=name)
    img = np.zeros((64, 64), np.uint8)
    img[5:15, 5:15] = 255
    img[40:60, 40:60] = 255
    viewer.add_image(img, name="img")
    start(widget, qtbot)
    backend = widget.session.backend
    widget.layers.points.add([10, 10])
    wait_idle(widget, qtbot)
    backend.seen.clear()
    backend.gate.clear()  # the decoder now blocks until the clicks are done
    for i in range(8):  # eight quick clicks while the first decode cannot finish
        widget.layers.points.selected_data = {0}
        widget.layers.points.remove_selected()
        widget.layers.points.add([42 + i, 42 + i])
        qtbot.wait(20)  # the event loop runs between clicks, as it does for a user
    # the GUI thread handled every click although the decoder was still blocked
    assert len(widget.layers.points.data) == 1 and not backend.timed_out
    assert backend.inside == 1
    backend.gate.set()
    wait_idle(widget, qtbot)
    assert not backend.timed_out
    assert threading.main_thread().ident not in backend.threads
    assert len(backend.seen) <= 2  # the one that was running, then only the latest click
    assert np.allclose(backend.seen[-1], [[49, 49]])
    assert widget.preview.mask[50, 50] and not widget.preview.mask[10, 10]


# --------------------------------------------------------------- review before commit
def test_propagation_is_staged_for_review_then_accepted_as_one_undo_step(
        viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample, image = _volume(viewer)
    start(widget, qtbot, review=True)
    z0, x, y = _prompt_blob(widget, viewer, image, sample, qtbot)
    widget.ui.mode_combo.setCurrentText("slice-wise propagation")
    widget.ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    assert "staged for review" in widget.ui.status_label.text()
    store = widget.session.labels
    assert not store.written_planes()  # nothing annotated yet
    review = widget.layers.review
    assert review is not None and review.name == "vol review" and not review.editable
    assert np.asarray(review.data[z0]).any() and review.contour > 0
    assert widget.review.list.count() == 1 and "20 planes" in widget.review.list.item(0).text()
    widget.review.accept_all_btn.click()
    assert len(_planes(store)) == 20 and widget.review.list.count() == 0
    assert "one undo step" in widget.ui.status_label.text()
    assert not np.asarray(review.data[z0]).any()
    widget.ui.undo_btn.click()
    assert "Undid accept" in widget.ui.status_label.text()
    assert not any(store.read_plane(k).any() for k in _planes(store))
    widget.ui.redo_btn.click()
    assert sum(bool(store.read_plane(k).any()) for k in _planes(store)) == 20


def test_boxes_staged_accept_selected_and_discard_the_rest(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    img = np.zeros((64, 64), np.uint8)
    img[5:15, 5:15] = 255
    img[40:60, 40:60] = 255
    viewer.add_image(img, name="img")
    start(widget, qtbot, review=True)
    widget.layers.boxes.add_rectangles(np.array([[3, 3], [17, 17]], float))
    widget.layers.boxes.feature_defaults = {**dict(widget.layers.boxes.feature_defaults.iloc[0]),
                                           "object_id": 2}
    widget.layers.boxes.add_rectangles(np.array([[38, 38], [62, 62]], float))
    wait_idle(widget, qtbot)
    widget.auto_ui.boxes_btn.click()
    wait_idle(widget, qtbot)
    assert widget.review.list.count() == 2
    widget.review.list.item(1).setSelected(True)
    kept = widget.review.selected()
    widget.review.accept_btn.click()
    plane = widget.session.labels.read_plane(())
    assert set(np.unique(plane)) == {0, *kept}
    widget.review.discard_all_btn.click()
    assert widget.review.list.count() == 0
    assert np.array_equal(widget.session.labels.read_plane(()), plane)


# ------------------------------------------------------------------- preview vs committed
def test_the_preview_is_one_highlight_colour_with_a_contour_and_clears_on_commit(
        viewer_widget, qtbot, rule_model):
    from napari.utils.colormaps import DirectLabelColormap

    viewer, widget = viewer_widget
    img = np.zeros((48, 48), np.uint8)
    img[10:20, 10:20] = 255
    viewer.add_image(img, name="img")
    start(widget, qtbot)
    preview, output = widget.layers.preview, widget.layers.output
    assert isinstance(preview.colormap, DirectLabelColormap)
    assert not isinstance(output.colormap, DirectLabelColormap)  # random label colours
    for oid in (1, 7):
        widget.ui.object_spin.setValue(oid)
        widget.layers.points.add([15, 15])
        wait_idle(widget, qtbot)
        colours = preview.colormap.map(np.array([oid, 1, 2]))
        assert np.allclose(colours[:, :3], (1.0, 0.9, 0.0), atol=0.01)  # the same yellow
        data = widget.layers.preview_plane()
        mask = widget.preview.mask
        assert np.array_equal(data > 0, mask)  # inside faint, the outline opaque
        assert colours[1][3] < colours[2][3]
        edge = mask & ~ndi.binary_erosion(mask)
        assert (data[edge] == 2).all() and (data[ndi.binary_erosion(mask, iterations=2)] == 1).all()
        widget.ui.commit_btn.click()
        assert widget.preview is None and not preview.data.any()


# ------------------------------------------------------------------------------ shortcuts
def test_shortcuts_are_viewer_wide_actions_shown_on_buttons_and_in_the_help(
        viewer_widget, qtbot, rule_model):
    from napari.utils.action_manager import action_manager
    from qtpy.QtCore import Qt

    viewer, widget = viewer_widget
    img = np.zeros((48, 48), np.uint8)
    img[10:20, 10:20] = 255
    viewer.add_image(img, name="img")
    start(widget, qtbot)
    assert widget.ui.commit_btn.text() == "Commit (C)"
    assert "Ctrl+Z" in widget.ui.undo_btn.text()
    assert "Alt+P" in widget.ui.propagate_btn.text()
    assert "Commit the preview" in widget.help_label.text() or \
        "commit the preview" in widget.help_label.text()
    assert "napari-segany:commit" in action_manager._actions
    canvas = viewer.window._qt_viewer  # key presses on the canvas reach napari's keymap here
    widget.layers.points.add([15, 15])
    wait_idle(widget, qtbot)
    viewer.layers.selection.active = widget.layers.boxes  # any layer: C commits
    qtbot.keyClick(canvas, Qt.Key.Key_C)
    assert widget.session.labels.read_plane(()).any()
    # on the labels layer, Ctrl+Z is the session's undo, not the layer's own history
    viewer.layers.selection.active = widget.layers.output
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not widget.session.labels.read_plane(()).any()
    assert widget.ui.status_label.text().startswith("Undid commit")
    viewer.layers.selection.active = widget.layers.points
    qtbot.keyClick(canvas, Qt.Key.Key_N)
    assert widget.ui.object_spin.value() == 2
    qtbot.keyClick(canvas, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert widget.ui.object_spin.value() == 1
    qtbot.keyClick(canvas, Qt.Key.Key_T)
    assert not widget.ui.positive_check.isChecked()


# ----------------------------------------------------------------------------- object list
def test_object_list_counts_renames_deletes_and_merges(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample, image = _volume(viewer)
    start(widget, qtbot)
    z0, x, y = _prompt_blob(widget, viewer, image, sample, qtbot)
    widget.ui.class_edit.setText("nucleus")
    widget.ui.commit_btn.click()
    table = widget.objects.table
    assert table.rowCount() == 1
    assert [table.item(0, c).text() for c in range(4)] == [
        "1", "nucleus", "1", str(int(widget.session.labels.read_plane((z0,)).astype(bool).sum()))]
    widget.ui.mode_combo.setCurrentText("slice-wise propagation")
    widget.ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    assert table.item(0, 2).text() == "20"  # planes, from the log's counts
    # a hand-painted second object on another plane
    widget.layers.output.data[3, 0:5, 0:5] = 9
    widget.layers.output.events.paint(value=[])
    assert table.rowCount() == 2 and table.item(1, 0).text() == "9"
    table.item(1, 1).setText("debris")
    assert widget.session.labels.objects[9]["class_name"] == "debris"
    table.selectRow(1)
    assert widget.ui.object_spin.value() == 9 and widget.layers.current_plane() == (3,)
    table.selectAll()
    widget.objects.merge_btn.click()
    assert table.rowCount() == 1 and widget.session.labels.read_plane((3,))[0, 0] == 1
    widget.ui.undo_btn.click()
    assert table.rowCount() == 2
    table.selectRow(1)
    widget.objects.delete_btn.click()
    assert table.rowCount() == 1 and table.item(0, 0).text() == "1"
    plane = widget.session.labels.read_plane((3,))
    assert not (plane == 9).any() and (plane == 1).any()  # object 1 on that plane stays


# ----------------------------------------------------------- reopening restores the work
def test_reopening_a_store_restores_prompts_and_objects(make_napari_viewer, qtbot, rule_model,
                                                        tmp_path):
    out = str(tmp_path / "day1.zarr")
    sample = load_sample("volume")
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    image = viewer.add_image(sample.image, name="vol")
    widget.ui.output_edit.setText(out)
    widget.ui.output_edit.textEdited.emit(out)
    start(widget, qtbot)
    z0, x, y = _prompt_blob(widget, viewer, image, sample, qtbot)
    widget.ui.class_edit.setText("cell")
    widget.ui.commit_btn.click()
    widget.ui.new_btn.click()
    widget.layers.boxes.add_rectangles(np.array([[z0, 0, 0], [z0, 0, 6], [z0, 6, 6], [z0, 6, 0]],
                                                 float))
    wait_idle(widget, qtbot)
    widget.session.close()
    viewer.close()
    # the next day: a new viewer, the same image and output
    viewer2 = make_napari_viewer()
    _dock, widget2 = viewer2.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    viewer2.add_image(sample.image, name="vol")
    widget2.ui.output_edit.setText(out)
    widget2.ui.output_edit.textEdited.emit(out)
    start(widget2, qtbot)
    pts = widget2.layers.points
    assert len(pts.data) == 1 and pts.features["object_id"].tolist() == [1]
    assert np.allclose(pts.data[0], [z0, y, x])
    assert len(widget2.layers.boxes.data) == 0  # object 2 was never committed
    assert widget2.objects.table.item(0, 1).text() == "cell"
    assert "Continued: 1 object(s), 1 prompt(s) restored" in widget2.ui.status_label.text()
    # the restored click of committed object 1 is not drawn again as an uncommitted preview:
    # the session goes on with a new object
    _go_to(viewer2, viewer2.layers["vol"], (z0,))
    wait_idle(widget2, qtbot)
    assert widget2.ui.object_spin.value() == 2
    assert widget2.preview is None and not widget2.layers.preview.data.any()


# ------------------------------------------------------------------------ large planes
def test_visible_region_and_tiles_segment_small_objects_of_a_large_plane(
        viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    img = np.zeros((600, 600), np.uint8)
    img[500:506, 500:506] = 255  # a small nucleus near a corner
    image = viewer.add_image(img, name="big")
    start(widget, qtbot)
    want = rule_mask(np.repeat(img[..., None], 3, -1), (503, 503))
    for view in ("visible region (zoom in)", "tiles (large planes)"):
        widget.ui.view_combo.setCurrentText(view)
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
        camera.center = (503, 503)
        camera.zoom = 20
        widget.layers.points.data = np.empty((0, 2))
        widget.layers.points.add([503, 503])
        wait_idle(widget, qtbot)
        assert widget.preview is not None, (view, widget.ui.status_label.text())
        assert np.array_equal(widget.preview.mask, want), view
    widget.ui.view_combo.setCurrentText("visible region (zoom in)")
    region = widget.layers.visible_region()
    y0, y1, x0, x1 = region
    assert y0 <= 503 < y1 and x0 <= 503 < x1 and (y1 - y0) < 300
    del image

