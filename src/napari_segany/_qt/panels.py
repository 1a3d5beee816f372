"""The widget's controls (plain Qt widgets, no behaviour beyond showing and hiding)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["Controls", "MODES", "RANGES", "DIRECTIONS", "DEVICES"]

#: mode label -> propagation method (None: the current plane only)
MODES = {"2D (current plane)": None, "slice-wise propagation": "slice",
         "SAM2 propagation": "sam2"}
RANGES = ("all planes", "planes from a to b")
DIRECTIONS = {"both directions": "both", "forward": "forward", "backward": "backward"}
DEVICES = ("auto", "cpu", "cuda")
MAX_ID = 2**31 - 1


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        lay.addWidget(w)
    return box


class Controls:
    """Builds the four groups of the dock widget into ``parent``'s layout."""

    def __init__(self, parent: QWidget) -> None:
        layout = QVBoxLayout(parent)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._setup_group())
        layout.addWidget(self._object_group())
        layout.addWidget(self._volume_group())
        layout.addWidget(self._status_group())
        layout.addStretch(1)
        self._layout = layout
        self._extra_busy: tuple[QWidget, ...] = ()

    def add_group(self, group: QGroupBox, *, extra_busy: tuple[QWidget, ...] = ()) -> None:
        """Insert another group above the status group; ``extra_busy`` follow set_busy."""
        self._layout.insertWidget(self._layout.count() - 2, group)
        self._extra_busy += tuple(extra_busy)

    # -- 1. image, model, output ----------------------------------------------------------------
    def _setup_group(self) -> QGroupBox:
        box = QGroupBox("1. Image and model")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image layer to segment (2D, RGB, 3D or 4D)")
        form.addRow("image", self.image_combo)
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.setToolTip("A registered model name, or the path of a checkpoint "
                                    "file (.pt/.pth) to use offline or fine-tuned weights")
        self.checkpoint_btn = QToolButton()
        self.checkpoint_btn.setText("…")
        self.checkpoint_btn.setToolTip("Choose a checkpoint file")
        form.addRow("model", _row(self.model_combo, self.checkpoint_btn))
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.random_check = QCheckBox("random weights (testing)")
        self.random_check.setToolTip("No download: real compute cost, meaningless masks")
        form.addRow("device", _row(self.device_combo, self.random_check))
        self.output_edit = QLineEdit()
        self.output_edit.setToolTip("The zarr labels store committed objects are written to "
                                    "(an existing store of the same shape is continued)")
        self.output_btn = QToolButton()
        self.output_btn.setText("…")
        form.addRow("output", _row(self.output_edit, self.output_btn))
        self.cache_check = QCheckBox("cache embeddings on disk (next to the output)")
        self.cache_check.setToolTip("Needed for 'Precompute embeddings'; reused next time")
        form.addRow(self.cache_check)
        self.start_btn = QPushButton("Start")
        self.start_btn.setToolTip("Load the model, open the output store and create the "
                                  "prompt layers")
        form.addRow(self.start_btn)
        return box

    # -- 2. prompts and objects -----------------------------------------------------------------
    def _object_group(self) -> QGroupBox:
        box = QGroupBox("2. Prompt, then commit")
        grid = QGridLayout(box)
        hint = QLabel("Click points on the points layer (T: positive/negative) or draw "
                      "rectangles on the boxes layer; the preview updates at once.")
        hint.setWordWrap(True)
        grid.addWidget(hint, 0, 0, 1, 4)
        self.object_spin = QSpinBox()
        self.object_spin.setRange(1, MAX_ID)
        self.object_spin.setToolTip("Object id of new points and boxes, and of Commit")
        self.new_btn = QPushButton("New object")
        self.new_btn.setToolTip("A fresh object id (key N on the prompt layers)")
        grid.addWidget(QLabel("object"), 1, 0)
        grid.addWidget(self.object_spin, 1, 1)
        grid.addWidget(self.new_btn, 1, 2, 1, 2)
        self.class_edit = QLineEdit()
        self.class_edit.setPlaceholderText("class name (optional)")
        self.class_edit.setToolTip("Stored with the object in the labels store's attributes")
        self.positive_check = QCheckBox("positive clicks")
        self.positive_check.setChecked(True)
        self.positive_check.setToolTip("New points are positive (green) or negative (red); "
                                       "key T toggles")
        grid.addWidget(self.class_edit, 2, 0, 1, 2)
        grid.addWidget(self.positive_check, 2, 2, 1, 2)
        self.commit_btn = QPushButton("Commit")
        self.commit_btn.setToolTip("Write the previewed mask into the labels store")
        self.undo_btn = QPushButton("Undo")
        self.redo_btn = QPushButton("Redo")
        self.clear_btn = QPushButton("Clear prompts")
        self.clear_btn.setToolTip("Remove the current object's points and boxes (all planes)")
        for i, b in enumerate((self.commit_btn, self.undo_btn, self.redo_btn, self.clear_btn)):
            grid.addWidget(b, 3, i)
        self.preview_label = QLabel("preview: none")
        self.preview_label.setWordWrap(True)
        self.preview_label.setToolTip("What the preview layer shows")
        grid.addWidget(self.preview_label, 4, 0, 1, 4)
        return box

    # -- 3. volumes ---------------------------------------------------------------------------
    def _volume_group(self) -> QGroupBox:
        box = QGroupBox("3. Volume")
        form = QFormLayout(box)
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        form.addRow("mode", self.mode_combo)
        self.axis_combo = QComboBox()
        self.axis_combo.setToolTip("The leading axis to propagate along (e.g. z or t)")
        form.addRow("axis", self.axis_combo)
        self.range_combo = QComboBox()
        self.range_combo.addItems(list(RANGES))
        self.from_spin, self.to_spin = QSpinBox(), QSpinBox()
        form.addRow("range", _row(self.range_combo, QLabel("a"), self.from_spin, QLabel("b"),
                                  self.to_spin))
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(list(DIRECTIONS))
        self.direction_combo.setToolTip("From every prompted plane: both ways, or one way")
        form.addRow("direction", self.direction_combo)
        self.propagate_btn = QPushButton("Propagate")
        self.propagate_btn.setToolTip("Segment every prompted object through the range and "
                                      "write it into the labels store")
        self.precompute_btn = QPushButton("Precompute embeddings")
        self.precompute_btn.setToolTip("Embed every plane into the on-disk cache")
        form.addRow(_row(self.propagate_btn, self.precompute_btn))
        self._volume_rows = (self.axis_combo, self.range_combo, self.direction_combo,
                             self.propagate_btn)
        self.volume_group = box
        return box

    # -- 4. status ----------------------------------------------------------------------------
    def _status_group(self) -> QGroupBox:
        box = QGroupBox("Status")
        lay = QVBoxLayout(box)
        self.status_label = QLabel("Pick an image layer and a model, then press Start.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setFormat("%v / %m")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        lay.addWidget(self.status_label)
        lay.addWidget(_row(self.progress_bar, self.cancel_btn))
        return box

    # -- state --------------------------------------------------------------------------------
    def set_volume(self, lead: int) -> None:
        """Enable the propagation controls for images with leading axes."""
        self.volume_group.setEnabled(lead > 0)
        if lead == 0:
            self.mode_combo.setCurrentIndex(0)
        self.show_mode()

    def show_mode(self) -> None:
        method = MODES[self.mode_combo.currentText()]
        for w in self._volume_rows:
            w.setEnabled(method is not None)
        ranged = method is not None and self.range_combo.currentText() == RANGES[1]
        self.from_spin.setEnabled(ranged)
        self.to_spin.setEnabled(ranged)

    def set_busy(self, busy: bool, cancellable: bool = False) -> None:
        for w in (self.start_btn, self.commit_btn, self.undo_btn, self.redo_btn,
                  self.propagate_btn, self.precompute_btn, *self._extra_busy):
            w.setEnabled(not busy)
        if not busy:
            self.show_mode()
        self.cancel_btn.setEnabled(busy and cancellable)
        self.progress_bar.setTextVisible(False)
        if busy:
            self.progress_bar.setRange(0, 0)
        else:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)

    def set_progress(self, done: int, total: int) -> None:
        """``total`` <= 0: unknown (busy indicator)."""
        bar = self.progress_bar
        bar.setTextVisible(total > 0)
        if total <= 0:
            bar.setRange(0, 0)
        else:
            bar.setRange(0, total)
            bar.setValue(min(done, total))
