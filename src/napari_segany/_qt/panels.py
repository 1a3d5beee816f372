"""The widget's main controls (plain Qt widgets, no behaviour beyond showing and hiding).

The dock is a scroll area of groups: 1. image and model, 2. prompt and commit, 3. volume
(propagation, with its settings folded), then the groups the other parts add
(:meth:`Controls.add_group`: objects, automatic, review, cases, shortcuts) and the status
at the bottom: one short line, the full text of the last error under *Details*, the
progress bar and *Cancel*.
"""

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
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["Controls", "Section", "MODES", "RANGES", "DIRECTIONS", "DEVICES", "VIEWS", "row"]

#: mode label -> propagation method (None: the current plane only)
MODES = {"2D (current plane)": None, "slice-wise propagation": "slice",
         "SAM2 propagation": "sam2"}
RANGES = ("all planes", "planes from a to b")
DIRECTIONS = {"both directions": "both", "forward": "forward", "backward": "backward"}
DEVICES = ("auto", "cpu", "cuda")
#: what the model sees of a plane for clicks
VIEWS = {"whole plane": "plane", "tiles (large planes)": "tiles",
         "visible region (zoom in)": "region"}
MAX_ID = 2**31 - 1


def row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        lay.addWidget(w)
    return box


class Section(QWidget):
    """A titled part of the dock that folds (a ▸/▾ button above its content)."""

    def __init__(self, title: str, content: QWidget, *, open: bool = False) -> None:
        super().__init__()
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.content = content
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.button)
        lay.addWidget(content)
        self.button.toggled.connect(self.set_open)
        self.set_open(open)

    def set_open(self, open: bool) -> None:
        self.button.blockSignals(True)
        self.button.setChecked(open)
        self.button.blockSignals(False)
        self.button.setArrowType(Qt.ArrowType.DownArrow if open else Qt.ArrowType.RightArrow)
        self.content.setVisible(open)

    @property
    def is_open(self) -> bool:
        return self.button.isChecked()


class Controls:
    """Builds the groups of the dock widget into ``parent`` (inside a scroll area)."""

    def __init__(self, parent: QWidget) -> None:
        outer = QVBoxLayout(parent)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        # a narrow dock scrolls sideways rather than cutting the right-hand column off
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._setup_group())
        layout.addWidget(self._object_group())
        layout.addWidget(self._volume_group())
        layout.addStretch(1)
        scroll.setWidget(inner)
        outer.addWidget(scroll, 1)
        outer.addWidget(self._status_group())  # always visible, below the scroll area
        self._layout = layout
        self._extra_busy: tuple[QWidget, ...] = ()

    def add_group(self, group: QWidget, *, extra_busy: tuple[QWidget, ...] = ()) -> None:
        """Append another group (above the stretch); ``extra_busy`` follow set_busy."""
        self._layout.insertWidget(self._layout.count() - 1, group)
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
        form.addRow("model", row(self.model_combo, self.checkpoint_btn))
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.random_check = QCheckBox("random weights (testing)")
        self.random_check.setToolTip("No download: real compute cost, meaningless masks")
        form.addRow("device", row(self.device_combo, self.random_check))
        self.output_edit = QLineEdit()
        self.output_edit.setToolTip("The zarr labels store committed objects are written to, "
                                    "one per image (an existing store of the same shape is "
                                    "continued, with its prompts and objects)")
        self.output_btn = QToolButton()
        self.output_btn.setText("…")
        form.addRow("output", row(self.output_edit, self.output_btn))
        self.cache_check = QCheckBox("cache embeddings on disk (next to the output)")
        self.cache_check.setToolTip("Needed for 'Precompute embeddings'; reused next time")
        form.addRow(self.cache_check)
        self.start_btn = QPushButton("Start")
        self.start_btn.setToolTip("Load the model, open the output store and create the "
                                  "prompt layers (again: recreates missing layers)")
        form.addRow(self.start_btn)
        return box

    # -- 2. prompts and objects -----------------------------------------------------------------
    def _object_group(self) -> QGroupBox:
        box = QGroupBox("2. Prompt, then commit")
        grid = QGridLayout(box)
        hint = QLabel("Click points on the points layer or draw rectangles on the boxes "
                      "layer; the preview (yellow outline) follows every change.")
        hint.setWordWrap(True)
        grid.addWidget(hint, 0, 0, 1, 4)
        self.object_spin = QSpinBox()
        self.object_spin.setRange(1, MAX_ID)
        self.object_spin.setToolTip("Object id of new points and boxes, and of Commit")
        self.new_btn = QPushButton("New object")
        self.prev_btn, self.next_btn = QToolButton(), QToolButton()
        self.prev_btn.setArrowType(Qt.ArrowType.LeftArrow)
        self.next_btn.setArrowType(Qt.ArrowType.RightArrow)
        grid.addWidget(QLabel("object"), 1, 0)
        grid.addWidget(row(self.object_spin, self.prev_btn, self.next_btn), 1, 1, 1, 2)
        grid.addWidget(self.new_btn, 1, 3)
        self.class_edit = QLineEdit()
        self.class_edit.setPlaceholderText("class name (optional)")
        self.class_edit.setToolTip("Stored with the object in the labels store")
        self.positive_check = QCheckBox("positive clicks")
        self.positive_check.setChecked(True)
        grid.addWidget(self.class_edit, 2, 0, 1, 2)
        grid.addWidget(self.positive_check, 2, 2, 1, 2)
        self.view_combo = QComboBox()
        self.view_combo.addItems(list(VIEWS))
        self.view_combo.setToolTip(
            "What the model sees for clicks. SAM resizes a plane to 1024 pixels, so small "
            "objects of a large plane vanish: 'tiles' segments in the tile window around "
            "the click (embedded once per tile), 'visible region' embeds what the canvas "
            "shows at full resolution (zoom in first)")
        grid.addWidget(QLabel("model sees"), 3, 0)
        grid.addWidget(self.view_combo, 3, 1, 1, 3)
        self.commit_btn = QPushButton("Commit")
        self.undo_btn = QPushButton("Undo")
        self.redo_btn = QPushButton("Redo")
        self.clear_btn = QPushButton("Clear prompts")
        for i, b in enumerate((self.commit_btn, self.undo_btn, self.redo_btn, self.clear_btn)):
            grid.addWidget(b, 4, i)
        self.preview_label = QLabel("preview: none")
        self.preview_label.setWordWrap(True)
        self.preview_label.setToolTip("What the preview layer shows")
        grid.addWidget(self.preview_label, 5, 0, 1, 4)
        #: button -> (shortcut name, text): the widget writes the current key into both
        self.shortcut_buttons = {self.commit_btn: ("commit", "Commit"),
                                 self.undo_btn: ("undo", "Undo"),
                                 self.redo_btn: ("redo", "Redo"),
                                 self.clear_btn: ("clear_prompts", "Clear prompts"),
                                 self.new_btn: ("new_object", "New object"),
                                 self.prev_btn: ("previous_object", ""),
                                 self.next_btn: ("next_object", "")}
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
        form.addRow("range", row(self.range_combo, QLabel("a"), self.from_spin, QLabel("b"),
                                 self.to_spin))
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(list(DIRECTIONS))
        self.direction_combo.setToolTip("From every prompted plane: both ways, or one way")
        form.addRow("direction", self.direction_combo)
        self.propagate_btn = QPushButton("Propagate")
        self.precompute_btn = QPushButton("Precompute embeddings")
        self.precompute_btn.setToolTip("Embed every plane into the on-disk cache")
        form.addRow(row(self.propagate_btn, self.precompute_btn))
        self.shortcut_buttons[self.propagate_btn] = ("propagate", "Propagate")
        self._volume_rows = [self.axis_combo, self.range_combo, self.direction_combo,
                             self.propagate_btn]
        self.volume_form = form
        self.volume_group = box
        return box

    # -- status -------------------------------------------------------------------------------
    def _status_group(self) -> QGroupBox:
        box = QGroupBox("Status")
        lay = QVBoxLayout(box)
        lay.setContentsMargins(4, 2, 4, 2)
        self.status_label = QLabel("Pick an image layer and a model, then press Start.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored,
                                        QSizePolicy.Policy.Preferred)
        self.details_btn = QToolButton()
        self.details_btn.setText("Details")
        self.details_btn.setCheckable(True)
        self.details_btn.setVisible(False)
        self.details_btn.setToolTip("The full text of the last error")
        self.details_text = QPlainTextEdit()
        self.details_text.setReadOnly(True)
        self.details_text.setMaximumHeight(140)
        self.details_text.setVisible(False)
        self.details_btn.toggled.connect(self.details_text.setVisible)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setFormat("%v / %m")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        lay.addWidget(self.status_label)
        lay.addWidget(self.details_text)
        lay.addWidget(row(self.progress_bar, self.cancel_btn, self.details_btn))
        return box

    def set_status(self, text: str, details: str | None = None) -> None:
        """One short line; ``details`` (the full text) behind the Details button."""
        self.status_label.setText(text)
        if details and details.strip() != text.strip():
            self.details_text.setPlainText(details)
            self.details_btn.setVisible(True)
        else:
            self.details_btn.setChecked(False)
            self.details_btn.setVisible(False)

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
