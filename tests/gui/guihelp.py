"""Helpers shared by the GUI tests (driving the widget as a user would)."""

from __future__ import annotations

import threading

import numpy as np
from scipy import ndimage as ndi

from rule_backend import RuleBackend

WIDGET = ("napari-segany", "Segment Anything")


def wait_idle(widget, qtbot, timeout: int = 30_000) -> None:
    """Until no job runs and no preview refresh is queued."""
    qtbot.waitUntil(lambda: widget.idle, timeout=timeout)


def start(widget, qtbot, *, model: str = "rule_test", random: bool = True,
          image: str | None = None, timeout: int = 60_000, review: bool = False) -> None:
    """Pick image/model in the UI, press Start and wait for the session.

    ``review``: stage automatic results for review (the widget's default is on; tests of
    what the jobs write turn it off and write straight into the labels store).
    """
    ui = widget.ui
    widget.review.stage_check.setChecked(review)
    if image is not None:
        ui.image_combo.setCurrentText(image)
    ui.model_combo.setCurrentText(model)
    ui.device_combo.setCurrentText("cpu")
    ui.random_check.setChecked(random)
    ui.start_btn.click()
    wait_idle(widget, qtbot, timeout)
    assert widget.session is not None, widget.ui.status_label.text()


def rule_mask(rgb: np.ndarray, yx, threshold: float = 127.5) -> np.ndarray:
    """What RuleBackend segments for one positive click at ``yx`` (row, col)."""
    labels, _ = ndi.label(rgb.astype(np.float32).mean(axis=-1) > threshold)
    r, c = (int(round(v)) for v in yx)
    assert labels[r, c] > 0, "the click is not on a bright component"
    return labels == labels[r, c]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


class GatedRule(RuleBackend):
    """Embedding plane number ``after`` + 1 and later waits until ``gate`` is set."""

    def __init__(self, gate: threading.Event, after: int, **kw) -> None:
        super().__init__(**kw)
        self.gate, self.after, self.waiting = gate, after, False

    def embed(self, image):
        if self.embed_calls >= self.after:
            self.waiting = True
            self.gate.wait(20)
        return super().embed(image)
