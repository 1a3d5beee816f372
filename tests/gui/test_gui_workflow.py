"""A scripted day of annotation on real CT, driven through the widget as a user would.

Open the MSD spleen crop (NIfTI, anisotropic voxels), Start, prompt and commit two organs,
propagate one slice by slice until the walk stops, go there, correct, continue, segment
everything on another plane into the review layer, accept some, undo and redo, save as
OME-Zarr, close the viewer, reopen the image and the store in a new viewer and find the
work again. The model is the deterministic rule backend (the bright 4-connected component
under a click) with a threshold that, after the widget's percentile mapping, separates
the contrast-enhanced spleen from the soft tissue around it. Skipped without the shared
data folder (``../shared/data`` beside the repository, or ``$NAPARI_SEGANY_TEST_DATA``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from guihelp import start, wait_idle
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testdata.py
from napari_segany.io import read_image  # noqa: E402
from napari_segany.storage import LabelsStore  # noqa: E402
from rule_backend import RuleBackend  # noqa: E402
from testdata import DATA  # noqa: E402

CT = DATA / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz"
THRESHOLD = 170  # in the 0..255 units the model sees: the enhanced spleen, not the fat
SPLEEN = (14, 83, 79)  # (z, y, x): a pixel of the spleen on its largest plane
ORGAN_2 = (14, 147, 136)  # another bright region of that plane (621 pixels)
AUTO_PLANE = 5  # below the spleen walk (it goes forward only)

pytestmark = [pytest.mark.data,
              pytest.mark.skipif(not CT.is_file(), reason=f"real data {CT} is absent")]


def _go_to(viewer, image, z: int) -> None:
    viewer.dims.set_point(0, image.data_to_world([z, 0, 0])[0])


def _click(layers, image, zyx) -> None:
    layers.points.add(layers.points.world_to_data(image.data_to_world(list(zyx))))


def _bright(session, z: int) -> np.ndarray:
    """The components the rule model sees on plane ``z``."""
    gray = session.plane_rgb((z,)).astype(np.float32).mean(axis=-1)
    return ndi.label(gray > THRESHOLD)[0]


def _open(make_napari_viewer, ct, out: str):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    image = viewer.add_image(np.asarray(ct.data), name="ct", scale=ct.spacing)
    widget.ui.output_edit.setText(out)
    widget.ui.output_edit.textEdited.emit(out)
    return viewer, widget, image


def test_a_day_of_annotation_on_ct(make_napari_viewer, qtbot, rule_model, tmp_path):
    rule_model.make = lambda name: RuleBackend(threshold=THRESHOLD, name=name)
    ct = read_image(CT)
    assert ct.data.shape == (26, 166, 164) and ct.spacing[0] == 5.0
    out = str(tmp_path / "ct_segany.zarr")
    viewer, widget, image = _open(make_napari_viewer, ct, out)
    ui, table = widget.ui, widget.objects.table
    start(widget, qtbot, review=False)
    assert widget.layers.output.scale[0] == 5.0  # the layers follow the voxel size
    assert ui.axis_combo.itemText(0) == "axis 0 (26 planes)"
    session = widget.session
    store = session.labels

    # -- two organs on plane 14, committed -------------------------------------------------
    z = SPLEEN[0]
    _go_to(viewer, image, z)
    assert widget.layers.current_plane() == (z,)
    labels14 = _bright(session, z)
    for oid, where, name in ((1, SPLEEN, "spleen"), (2, ORGAN_2, "bright region")):
        if oid == 2:
            ui.new_btn.click()
        assert ui.object_spin.value() == oid
        _click(widget.layers, image, where)
        wait_idle(widget, qtbot)
        want = labels14 == labels14[where[1:]]
        assert widget.preview is not None and np.array_equal(widget.preview.mask, want)
        ui.class_edit.setText(name)
        ui.commit_btn.click()
        assert ui.status_label.text().startswith(f"Committed object {oid} on plane (14,)")
        assert np.array_equal(store.read_plane((z,)) == oid, want)
    assert [table.item(r, 1).text() for r in range(table.rowCount())] == ["spleen",
                                                                          "bright region"]
    assert table.item(1, 3).text() == str(int((labels14 == labels14[ORGAN_2[1:]]).sum()))
    # object 2 is done: its prompts leave the layer (the store keeps them)
    ui.clear_btn.click()
    assert ui.status_label.text() == "Removed 1 prompt(s) of object 2."
    assert widget.layers.points.features["object_id"].tolist() == [1]

    # -- propagate the spleen forward until a stopping rule says no ----------------------------
    table.selectRow(0)  # the object list picks object 1
    assert ui.object_spin.value() == 1
    ui.mode_combo.setCurrentText("slice-wise propagation")
    ui.direction_combo.setCurrentText("forward")
    panel = widget.propagation
    assert panel.min_area.value() == 16  # the geometric default
    panel.min_area.setValue(2000)
    ui.propagate_btn.click()
    wait_idle(widget, qtbot)
    text = ui.status_label.text()
    assert "Propagation done: 5 plane(s) written (1: 5)" in text, text
    assert "Object 1 stopped at plane 19: area 1684 < min_area 2000" in text
    assert len(panel.stops) == 1 and panel.stops[0].plane == (19,)
    assert not panel.stops_row.isHidden()
    assert all((store.read_plane((k,)) == 1).any() for k in range(14, 19))
    assert not (store.read_plane((19,)) == 1).any()
    assert table.item(0, 2).text() == "5"  # planes of object 1, from the log

    # -- go there, correct with a click, continue ----------------------------------------------
    panel.go_btn.click()
    wait_idle(widget, qtbot)
    assert widget.layers.current_plane() == (19,) and ui.object_spin.value() == 1
    assert ui.status_label.text().startswith("Plane 19, object 1: area 1684")
    labels19 = _bright(session, 19)
    prev = store.read_plane((18,)) == 1
    comp = np.bincount(labels19[prev], minlength=labels19.max() + 1)
    comp[0] = 0
    part = labels19 == int(np.argmax(comp))  # the spleen's part on plane 19
    ry, rx = np.argwhere(part)[len(np.argwhere(part)) // 2]
    if not part[ry, rx]:
        ry, rx = np.argwhere(part)[0]
    _click(widget.layers, image, (19, ry, rx))
    wait_idle(widget, qtbot)
    assert widget.preview is not None and np.array_equal(widget.preview.mask, part)
    panel.min_area.setValue(500)
    panel.continue_btn.click()
    wait_idle(widget, qtbot)
    text = ui.status_label.text()
    assert "Propagation done: 3 plane(s) written" in text, text
    assert "Object 1 stopped at plane 22" in text and "min_area 500" in text
    assert np.array_equal(store.read_plane((19,)) == 1, part)
    written = {k[0] for k in store.written_planes() if (store.read_plane(k) == 1).any()}
    assert written == set(range(14, 22))
    assert table.item(0, 2).text() == "8"

    # -- segment everything on another plane, staged for review ---------------------------------
    from qtpy.QtCore import Qt

    widget.review.stage_check.setChecked(True)
    _go_to(viewer, image, AUTO_PLANE)
    widget.auto_ui.points_spin.setValue(8)
    widget.auto_ui.settings_section.set_open(True)
    widget.auto_ui.min_area_spin.setValue(100)
    before = store.read_plane((AUTO_PLANE,)).copy()
    widget.auto_ui.everything_btn.click()
    wait_idle(widget, qtbot)
    text = ui.status_label.text()
    assert text.startswith("Segment everything done: 6 object(s) on 1 plane(s) staged"), text
    review = widget.layers.review
    assert review is not None and review.name == "ct review" and not review.editable
    assert np.asarray(review.data[AUTO_PLANE]).any()
    assert np.array_equal(store.read_plane((AUTO_PLANE,)), before)  # nothing annotated yet
    assert widget.review.list.count() == 6
    staged = [widget.review.list.item(i).data(Qt.ItemDataRole.UserRole)[0] for i in range(6)]
    assert min(staged) > 2  # fresh ids above the committed ones
    widget.review.list.item(0).setSelected(True)
    widget.review.list.item(2).setSelected(True)
    kept = widget.review.selected()
    assert len(kept) == 2
    widget.review.accept_btn.click()
    assert "Undo: Ctrl+Z." in ui.status_label.text()
    plane = store.read_plane((AUTO_PLANE,))
    assert set(np.unique(plane)) == {0, *kept}
    assert widget.review.list.count() == 4  # the others still await review
    widget.review.discard_all_btn.click()
    assert widget.review.list.count() == 0
    assert ui.status_label.text() == "Discarded 4 staged object(s)."
    assert table.rowCount() == 4

    # -- undo and redo the accept --------------------------------------------------------------
    ui.undo_btn.click()
    assert ui.status_label.text().startswith("Undid accept"), ui.status_label.text()
    assert not store.read_plane((AUTO_PLANE,)).any() and table.rowCount() == 2
    ui.redo_btn.click()
    assert ui.status_label.text().startswith("Redid accept"), ui.status_label.text()
    assert np.array_equal(store.read_plane((AUTO_PLANE,)), plane) and table.rowCount() == 4

    # -- save: the store is on disk; also as OME-Zarr through the plugin's writer ---------------
    final = np.stack([store.read_plane((k,)) for k in range(26)])
    ome = tmp_path / "ct_labels.ome.zarr"
    saved = widget.layers.output.save(str(ome), plugin="napari-segany")
    assert saved and Path(saved[0]).name == ome.name
    import zarr

    root = zarr.open_group(str(ome), mode="r")
    (name,) = list(root["labels"].group_keys())
    assert np.array_equal(np.asarray(root["labels"][name]["0"]), final)
    attrs = dict(root["labels"][name].attrs)
    scales = (attrs.get("ome", attrs)["multiscales"][0]["datasets"][0]
              ["coordinateTransformations"][0]["scale"])
    assert scales[0] == 5.0

    # -- close, and continue the next day in a new viewer ---------------------------------------
    points14 = [tuple(p) for p in np.asarray(widget.layers.points.data)]
    viewer.close()
    assert np.array_equal(np.stack([LabelsStore.open(out, mode="r").read_plane((k,))
                                    for k in range(26)]), final)
    viewer2, widget2, image2 = _open(make_napari_viewer, ct, out)
    start(widget2, qtbot, review=True)
    text = widget2.ui.status_label.text()
    assert "Continued: 4 object(s)" in text and "prompt(s) restored" in text, text
    pts = widget2.layers.points
    restored = {(int(o), int(round(p[0])))
                for o, p in zip(pts.features["object_id"], pts.data, strict=True)}
    assert {(1, 14), (2, 14), (1, 19)} <= restored  # commits and the correction, per plane
    assert all(any(np.allclose(p, q) for q in pts.data) for p in points14)
    table2 = widget2.objects.table
    assert table2.rowCount() == 4
    assert [table2.item(r, 1).text() for r in range(2)] == ["spleen", "bright region"]
    assert table2.item(0, 2).text() == "8"
    assert np.array_equal(np.asarray(widget2.layers.output.data[SPLEEN[0]]),
                          final[SPLEEN[0]])
    del image2, viewer2
