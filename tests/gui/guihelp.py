"""Helpers shared by the GUI tests (driving the widget as a user would)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

WIDGET = ("napari-segany", "Segment Anything")


def wait_idle(widget, qtbot, timeout: int = 30_000) -> None:
    """Until no job runs and no preview refresh is queued."""
    qtbot.waitUntil(lambda: widget.idle, timeout=timeout)


def start(widget, qtbot, *, model: str = "rule_test", random: bool = True,
          image: str | None = None, timeout: int = 60_000) -> None:
    """Pick image/model in the UI, press Start and wait for the session."""
    ui = widget.ui
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
