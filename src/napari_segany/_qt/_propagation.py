"""Propagation settings (the stopping rules of slice-wise propagation) and where the last
walk stopped, with "go there" and "continue from here" (plain Qt widgets).

The defaults are :class:`napari_segany.propagate.SliceSettings`'s: geometric rules (score,
area, growth, overlap) chosen on synthetic volumes and random-weight models, not tuned on
real weights; the panel says so.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..propagate import SliceSettings, Stop
from .panels import Section, row

__all__ = ["PropagationPanel", "PROMPT_STYLES"]

PROMPT_STYLES = {"box + previous mask": "box+mask", "box": "box",
                 "box + interior point": "box+point", "interior point": "points"}


def _double(lo: float, hi: float, value: float, step: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setDecimals(2)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class PropagationPanel:
    """The settings section and the stops row of the volume group."""

    def __init__(self) -> None:
        d = SliceSettings()
        content = QWidget()
        form = QFormLayout(content)
        form.setContentsMargins(8, 0, 0, 0)
        note = QLabel("Defaults are geometric rules, not tuned on real weights (none were "
                      "available): adjust them to your data.")
        note.setWordWrap(True)
        form.addRow(note)
        self.style_combo = QComboBox()
        self.style_combo.addItems(list(PROMPT_STYLES))
        self.style_combo.setToolTip("How one plane's mask prompts the next plane")
        form.addRow("prompt", self.style_combo)
        self.min_score = _double(0, 1, d.min_score, 0.05,
                                 "Stop when the model's predicted IoU falls below this")
        form.addRow("min score", self.min_score)
        self.min_area = QSpinBox()
        self.min_area.setRange(0, 10**8)
        self.min_area.setValue(d.min_area)
        self.min_area.setToolTip("Stop when the mask has fewer pixels (the object ended)")
        form.addRow("min area (px)", self.min_area)
        self.max_ratio = _double(1, 1000, d.max_area_ratio, 0.5,
                                 "Stop when the area grows by more than this factor from one "
                                 "plane to the next (the mask leaked)")
        form.addRow("max area growth", self.max_ratio)
        self.min_overlap = _double(0, 1, d.min_overlap, 0.05,
                                   "Stop when the IoU with the previous plane's mask is below "
                                   "this (the object jumped); 0: off")
        form.addRow("min overlap (IoU)", self.min_overlap)
        self.section = Section("Propagation settings", content)
        self.stops_combo = QComboBox()
        self.stops_combo.setToolTip("Where the last slice-wise propagation stopped, and why")
        self.go_btn = QPushButton("Go there")
        self.go_btn.setToolTip("Show the plane where it stopped and pick that object: "
                               "correct it there with a click or a box")
        self.continue_btn = QPushButton("Continue from here")
        self.continue_btn.setToolTip("Propagate the stopped object onward from the current "
                                     "plane (with its prompts there), in the direction it "
                                     "stopped")
        self.stops_row = row(self.stops_combo, self.go_btn, self.continue_btn)
        self.box = QWidget()
        lay = QVBoxLayout(self.box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.section)
        lay.addWidget(self.stops_row)
        self.stops: list[Stop] = []
        self.set_stops([])

    def settings(self) -> SliceSettings:
        return SliceSettings(prompt=PROMPT_STYLES[self.style_combo.currentText()],
                             min_score=self.min_score.value(), min_area=self.min_area.value(),
                             max_area_ratio=self.max_ratio.value(),
                             min_overlap=self.min_overlap.value())

    def set_stops(self, stops: list[Stop]) -> None:
        self.stops = list(stops)
        self.stops_combo.clear()
        for s in self.stops:
            way = "forward" if s.direction > 0 else "backward"
            where = s.plane[0] if len(s.plane) == 1 else s.plane
            self.stops_combo.addItem(f"object {s.obj_id} at plane {where} ({way}): {s.reason}")
        self.stops_row.setVisible(bool(self.stops))

    def current(self) -> Stop | None:
        i = self.stops_combo.currentIndex()
        return self.stops[i] if 0 <= i < len(self.stops) else None
