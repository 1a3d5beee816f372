"""The dock widget on volumes and stacks: planes, propagation, cancel, precompute."""

from __future__ import annotations

import threading

import numpy as np
from guihelp import GatedRule, iou, rule_mask, start, wait_idle

from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.samples import load_sample
from napari_segany.session import Session
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend


def _store(widget) -> LabelsStore:
    return LabelsStore.open(widget.ui.output_edit.text(), mode="r")


def _written(store: LabelsStore) -> list[tuple[int, ...]]:
    return [tuple(p) for p in store.provenance["planes"]]


def _go_to(viewer, image, key) -> None:
    """Move the viewer to the image plane ``key`` (world coordinates of its centre)."""
    world = image.data_to_world(list(key) + [0, 0])
    for axis, value in enumerate(world[: len(key)]):
        viewer.dims.set_point(viewer.dims.ndim - image.ndim + axis, value)


def _click(layers, image, index) -> None:
    """A click on image pixel ``index`` (data coordinates), given to the points layer."""
    layers.points.add(layers.points.world_to_data(image.data_to_world(list(index))))


def _mode(widget, text: str) -> None:
    widget.ui.mode_combo.setCurrentText(text)


def test_slice_propagation_anisotropic_matches_the_core(viewer_widget, qtbot, rule_model,
                                                        tmp_path):
    viewer, widget = viewer_widget
    sample = load_sample("volume")
    image = viewer.add_image(sample.image, name="vol", scale=(2.5, 0.5, 0.5),
                             translate=(10, -3, 4))
    start(widget, qtbot)
    layers, ui = widget.layers, widget.ui
    for layer in (layers.output, layers.points, layers.boxes):
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
    (z0,), (x, y) = sample.point_plane, sample.point
    _go_to(viewer, image, (z0,))
    assert layers.current_plane() == (z0,)
    _click(layers, image, (z0, y, x))
    wait_idle(widget, qtbot)
    rgb = widget.session.plane_rgb((z0,))
    assert np.array_equal(widget.preview.mask, rule_mask(rgb, (y, x)))
    # the preview is one plane thick, placed on plane z0, and holds only the mask's box
    mask = widget.preview.mask
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    y0, x0 = max(0, rows[0] - 1), max(0, cols[0] - 1)
    assert layers.preview.data.shape == (1, min(128, rows[-1] + 2) - y0,
                                         min(128, cols[-1] + 2) - x0)
    scale = np.asarray(image.scale)
    np.testing.assert_allclose(layers.preview.translate,
                               (10 + 2.5 * z0, -3 + y0 * scale[1], 4 + x0 * scale[2]))
    assert np.array_equal(layers.preview_plane() > 0, mask)
    _go_to(viewer, image, (z0 + 1,))
    wait_idle(widget, qtbot)
    assert widget.preview is None and not layers.preview.data.any()  # no prompt there

    _mode(widget, "slice-wise propagation")
    assert ui.propagate_btn.isEnabled() and ui.axis_combo.count() == 1
    steps: list[tuple[int, int]] = []
    widget.jobs.progressed.connect(lambda done, total: steps.append((done, total)))
    ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    # one progress step per plane written, out of the 24 planes of the axis
    assert [d for d, _ in steps] == list(range(1, 21)) and {t for _, t in steps} == {24}
    assert ui.status_label.text().startswith("Propagation done"), ui.status_label.text()
    store = _store(widget)
    gt = sample.labels
    for z in range(gt.shape[0]):
        plane = store.read_plane((z,))
        assert set(np.unique(plane)) <= {0, 1}
        if gt[z].any():
            assert iou(plane == 1, gt[z] == 1) > 0.9, z
        else:
            assert not plane.any(), z
    # the widget did exactly what the core does with the same prompts
    core = Session(sample.image, RuleBackend(), labels=tmp_path / "core.zarr")
    ps = PromptSet()
    ps.add((z0,), 1, ObjectPrompt(points=[[x, y]], labels=[1]))
    core.propagate(ps)
    assert np.array_equal(np.asarray(store.array[:]), np.asarray(core.labels.array[:]))
    assert np.array_equal(np.asarray(layers.output.data[:]), np.asarray(core.labels.array[:]))
    prov = store.provenance
    assert prov["propagation"]["method"] == "slice"
    assert prov["layer"]["scale"] == [2.5, 0.5, 0.5]

    # Start again: the same store is reopened and continued
    ui.start_btn.click()
    wait_idle(widget, qtbot)
    assert widget.session.labels.path == store.path
    assert np.array_equal(np.asarray(widget.layers.output.data[z0]), store.read_plane((z0,)))


def test_cancel_propagation_keeps_the_store_whole(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    sample = load_sample("volume")
    image = viewer.add_image(sample.image, name="vol")
    gate = threading.Event()
    rule_model.make = lambda name: GatedRule(gate, after=1, name=name)
    start(widget, qtbot)
    layers, ui = widget.layers, widget.ui
    (z0,), (x, y) = sample.point_plane, sample.point
    _go_to(viewer, image, (z0,))
    _click(layers, image, (z0, y, x))
    wait_idle(widget, qtbot)  # plane z0 embedded: the first embedding
    assert widget.preview.mask.any()
    _mode(widget, "slice-wise propagation")
    ui.propagate_btn.click()
    backend = widget.session.backend
    qtbot.waitUntil(lambda: backend.waiting, timeout=10_000)
    # the worker is blocked inside the model; the GUI still answers
    assert widget.jobs.busy and ui.cancel_btn.isEnabled() and not ui.start_btn.isEnabled()
    layers.points.add(layers.points.data[0] + [0, 1, 1])  # prompting while busy is fine
    ui.cancel_btn.click()
    assert "Cancelling" in ui.status_label.text()
    gate.set()
    wait_idle(widget, qtbot)
    assert ui.status_label.text().startswith("Propagation cancelled"), ui.status_label.text()
    store = _store(widget)
    done = _written(store)
    assert (z0,) in done and len(done) <= 2, done  # stopped at the next check
    for key in done:  # every written plane is complete
        rgb = widget.session.plane_rgb(key)
        assert np.array_equal(store.read_plane(key) == 1, rule_mask(rgb, (y, x))), key
    assert not ui.cancel_btn.isEnabled() and ui.start_btn.isEnabled()
    # a new propagation afterwards goes through the whole blob
    ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    assert ui.status_label.text().startswith("Propagation done")
    assert {k[0] for k in _written(_store(widget))} == set(range(2, 22))


def test_sam2_tiny_propagation_in_a_range(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    sample = load_sample("volume")
    image = viewer.add_image(sample.image[8:16], name="vol8")
    start(widget, qtbot, model="sam2_tiny", random=True)
    ui, layers = widget.ui, widget.layers
    x, y = sample.point
    _go_to(viewer, image, (3,))
    _click(layers, image, (3, y, x))
    wait_idle(widget, qtbot)
    assert widget.preview is not None
    _mode(widget, "SAM2 propagation")
    ui.range_combo.setCurrentText("planes from a to b")
    assert ui.from_spin.isEnabled()
    ui.from_spin.setValue(2)
    ui.to_spin.setValue(6)
    ui.direction_combo.setCurrentText("forward")
    ui.propagate_btn.click()
    wait_idle(widget, qtbot, timeout=120_000)
    assert ui.status_label.text().startswith("Propagation done"), ui.status_label.text()
    store = _store(widget)
    assert _written(store) == [(3,), (4,), (5,), (6,)]
    prop = store.provenance["propagation"]
    assert prop["method"] == "sam2" and prop["planes"] == [2, 7] and prop["direction"] == "forward"
    assert set(np.unique(np.asarray(store.array[:]))) <= {0, 1}


def test_4d_stack_along_a_chosen_axis(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    data = np.zeros((3, 5, 48, 48), np.uint8)
    for t in range(3):
        data[t, :, 10 + 5 * t: 22 + 5 * t, 12:26] = 200  # moves along y with t
    image = viewer.add_image(data, name="tzyx", scale=(1, 3, 1, 1))
    start(widget, qtbot)
    ui, layers = widget.ui, widget.layers
    assert ui.axis_combo.count() == 2
    _go_to(viewer, image, (1, 2))
    assert layers.current_plane() == (1, 2)
    _click(layers, image, (1, 2, 20, 18))
    wait_idle(widget, qtbot)
    assert np.array_equal(widget.preview.mask, data[1, 2] > 0)
    _mode(widget, "slice-wise propagation")
    ui.axis_combo.setCurrentIndex(0)  # along t, z stays 2
    assert ui.to_spin.maximum() == 2
    ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    store = _store(widget)
    assert _written(store) == [(0, 2), (1, 2), (2, 2)]
    for t in range(3):
        assert np.array_equal(store.read_plane((t, 2)) == 1, data[t, 2] > 0)
    ui.axis_combo.setCurrentIndex(1)  # along z at t = 1
    assert ui.to_spin.maximum() == 4
    ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    assert set(_written(_store(widget))) == {(0, 2), (2, 2)} | {(1, z) for z in range(5)}


def test_precompute_fills_the_disk_cache(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    data = np.zeros((6, 32, 32), np.uint8)
    data[:, 8:20, 8:20] = 200
    viewer.add_image(data, name="small")
    widget.ui.precompute_btn.click()  # before Start: explained, nothing happens
    widget.ui.cache_check.setChecked(True)
    start(widget, qtbot)
    session = widget.session
    assert session.cache is not None and str(session.cache.path).endswith(
        "small_labels.embeddings.zarr")
    widget.ui.precompute_btn.click()
    wait_idle(widget, qtbot)
    assert widget.ui.status_label.text().startswith("Precompute done")
    assert all(session.has_embedding((z,)) for z in range(6))
    assert session.cache.computed_planes() == [(z,) for z in range(6)]
