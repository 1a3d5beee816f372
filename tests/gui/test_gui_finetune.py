"""The Train panel on its own: a run in a worker writes a checkpoint and offers the model;
cancel writes none; missing input is a message, not an error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ftdata import FAST, discs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _panel(qtbot, base, out):
    from napari_segany._qt._finetune import TrainPanel

    panel = TrainPanel()
    qtbot.addWidget(panel)
    panel.settings = FAST
    panel.val_spin.setValue(0)
    panel.set_base(base)
    panel.out_edit.setText(str(out))
    panel.epochs_spin.setValue(1)
    return panel


def test_train_panel_trains_and_offers_the_model(qtbot, sam, tmp_path):
    panel = _panel(qtbot, sam, tmp_path / "ft")
    panel.train_btn.click()
    assert "Add training data" in panel.status_label.text() and not panel.jobs.busy
    img, lab = discs(4)
    panel.add_source((img, lab), name="discs")
    assert panel.sources_list.item(0).text() == "discs"
    panel.train_btn.click()
    assert panel.jobs.busy and not panel.train_btn.isEnabled()
    assert panel.jobs.wait(180)
    assert panel.result is not None and panel.result.checkpoint.exists()
    assert panel.loss_label.text().startswith("epoch 1: loss")
    assert "Wrote" in panel.status_label.text() and panel.use_btn.isEnabled()
    with qtbot.waitSignal(panel.use_model, timeout=1000) as got:
        panel.use_btn.click()
    assert got.args[0] is panel.result
    from napari_segany.prompts import ObjectPrompt

    rgb = np.repeat(img[..., None], 3, -1)
    pred = panel.result.backend.predict(panel.result.backend.embed(rgb),
                                        ObjectPrompt(box=[3, 3, 20, 20]))
    assert pred.masks.shape[-2:] == img.shape  # the offered model segments


def test_train_panel_cancel_writes_no_model(qtbot, sam, tmp_path):
    panel = _panel(qtbot, sam, tmp_path / "ft")
    panel.add_source(discs(4))
    panel.train_btn.click()
    panel.cancel_btn.click()
    assert panel.jobs.wait(180)
    assert "cancelled" in panel.status_label.text() and not panel.use_btn.isEnabled()
    assert not (tmp_path / "ft" / "model.pt").exists()


def test_train_in_the_widget_from_viewer_layers_then_use_the_model(viewer_widget, qtbot,
                                                                   tmp_path):
    from guihelp import start, wait_idle

    viewer, widget = viewer_widget
    img, lab = discs(4)
    viewer.add_image(img, name="cells")
    start(widget, qtbot, model="sam_tiny", image="cells")
    panel = widget.train_panel
    store = widget.session.labels.path
    # Start offered the session's image and (still empty) store; drop it
    assert panel.sources_list.count() == 1
    panel.sources_list.item(0).setSelected(True)
    panel.remove_btn.click()
    assert panel.sources == [] and "Removed 1" in panel.status_label.text()
    # labels drawn on another image are refused with what to do
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="other")
    panel.image_pick.setCurrentText("cells")
    panel.labels_pick.setCurrentText("other")
    assert not panel.add_picked_layers()
    assert "does not match the image 'cells'" in panel.status_label.text()
    # a folder that is not a labels store is refused; the session's store is taken
    assert not panel.add_store(tmp_path) and "not a labels store" in panel.status_label.text()
    assert panel.add_store(store) and panel.sources == [str(store)]
    panel.sources_list.item(0).setSelected(True)
    panel.remove_selected()
    # the image with its ground-truth labels layer
    viewer.add_labels(lab, name="truth")
    assert panel.labels_pick.findText("truth") >= 0  # the pickers follow the layer list
    panel.labels_pick.setCurrentText("truth")
    panel.add_layers_btn.click()
    assert panel.sources_list.count() == 1 and panel.sources_list.item(0).text() == \
        "cells + truth"
    assert not panel.add_picked_layers()  # not twice
    panel.settings = FAST
    panel.epochs_spin.setValue(1)
    panel.out_edit.setText(str(tmp_path / "ft"))
    # one image of one plane cannot be split for validation: said with the control to change
    assert panel.val_spin.value() == 20
    panel.train_btn.click()
    assert panel.jobs.wait(180)
    assert panel.result is None
    assert "validation 0 %" in panel.status_label.text(), panel.status_label.text()
    panel.val_spin.setValue(0)
    panel.train_btn.click()
    assert panel.jobs.wait(180)
    result = panel.result
    assert panel.loss_label.text() == f"epoch 1: loss {result.log[1]['train_loss']:.4f}, " \
        "no validation"
    assert result is not None and result.checkpoint.exists(), panel.status_label.text()
    # use it: the session goes on with the trained model and the same labels store
    panel.use_btn.click()
    wait_idle(widget, qtbot, timeout=60_000)
    assert widget.session.backend is result.backend, widget.ui.status_label.text()
    assert widget.ui.model_combo.currentText() == str(result.checkpoint)
    assert widget.session.labels.path == store
    widget.layers.points.add([12, 12])
    wait_idle(widget, qtbot)
    assert widget.preview is not None and widget.preview.mask.shape == img.shape
