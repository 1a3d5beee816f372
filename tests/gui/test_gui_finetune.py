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
