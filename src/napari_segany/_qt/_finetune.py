"""The *Train* panel: fine-tune the session's model on annotated images, in a thread worker.

The panel holds a list of training sources (anything :func:`napari_segany.finetune.finetune`
takes: ``(image, labels store)`` pairs of the viewer's layers, file pairs, folders), the
mode, the number of epochs and the output folder. *Train* runs the training in a thread
worker with progress and cancel; the loss and the validation IoU of every epoch are shown
as they come. When it is done, *Use the new model* emits :attr:`TrainPanel.use_model` with
the :class:`~napari_segany.finetune.FinetuneResult` so the widget can switch its session to
the trained model. No training logic lives here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..finetune import MODES, FinetuneSettings, finetune
from .jobs import JobRunner

__all__ = ["TrainPanel"]


class TrainPanel(QWidget):
    """Fine-tune a model on annotations.

    Signals
    -------
    finished(result)
        A training run ended with a checkpoint (a FinetuneResult).
    use_model(result)
        The user asked to switch to the trained model.
    """

    finished = Signal(object)
    use_model = Signal(object)
    _epoch_row = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = JobRunner(self)
        self.base: Any = "sam2.1_hiera_tiny"
        self.sources: list[Any] = []
        self.result: Any = None
        self.settings = FinetuneSettings()
        self.sources_list = QListWidget()
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(self.settings.epochs)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder for model.pt, log and plot")
        self.train_btn = QPushButton("Train")
        self.cancel_btn = QPushButton("Cancel")
        self.use_btn = QPushButton("Use the new model")
        self.progress = QProgressBar()
        self.loss_label = QLabel("")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Mode", self.mode_combo)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Output", self.out_edit)
        buttons = QHBoxLayout()
        for b in (self.train_btn, self.cancel_btn, self.use_btn):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Training data"))
        layout.addWidget(self.sources_list)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.loss_label)
        layout.addWidget(self.status_label)
        self.cancel_btn.setEnabled(False)
        self.use_btn.setEnabled(False)
        self.train_btn.clicked.connect(self.train)
        self.cancel_btn.clicked.connect(self.jobs.cancel)
        self.use_btn.clicked.connect(lambda: self.use_model.emit(self.result))
        self.jobs.progressed.connect(self._on_progress)
        self.jobs.busy_changed.connect(self._on_busy)
        self._epoch_row.connect(self._show_row)

    # -- inputs -----------------------------------------------------------------------------
    def add_source(self, source: Any, name: str | None = None) -> None:
        """Add training data (an ``(image, labels store)`` pair, a path, arrays ...)."""
        self.sources.append(source)
        self.sources_list.addItem(name or _describe(source))

    def clear_sources(self) -> None:
        self.sources.clear()
        self.sources_list.clear()

    def set_base(self, model: Any) -> None:
        """The model to start from: a registry name, a checkpoint path or a loaded backend."""
        self.base = model

    # -- running ----------------------------------------------------------------------------
    def train(self) -> None:
        if not self.sources:
            return self._status("Add training data first: labels layers with committed objects.")
        out = self.out_edit.text().strip()
        if not out:
            return self._status("Choose an output folder.")
        settings = replace(self.settings, mode=self.mode_combo.currentText(),
                           epochs=int(self.epochs_spin.value()))
        sources, base, row = list(self.sources), self.base, self._epoch_row.emit

        def job(cancel, progress):
            def report(stage: str, done: int, total: int, **info: Any) -> None:
                if "row" in info:
                    row(info["row"])
                elif stage == "train":
                    progress(done, total)

            return finetune(sources, base, out=Path(out), settings=settings, overwrite=True,
                            progress=report, cancel=cancel)

        self.result = None
        self.use_btn.setEnabled(False)
        self._status(f"Training ({settings.mode}, {settings.epochs} epochs) …")
        self.jobs.start(job, title="Training", on_done=self._done, on_error=self._failed)

    def _done(self, result: Any) -> None:
        if result.cancelled:
            return self._status("Training cancelled; no model was written (the last finished "
                                "epoch is kept for resuming).")
        self.result = result
        self.use_btn.setEnabled(True)
        b, a = result.before.get("val_iou"), result.best.get("val_iou")
        gain = "" if b is None or a is None or a != a else (
            f" Validation IoU {b:.3f} before, {a:.3f} after.")
        self._status(f"Wrote {result.checkpoint}.{gain}")
        self.finished.emit(result)

    def _failed(self, exc: BaseException) -> None:
        self._status(f"Training failed: {exc}")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(max(done, 0))

    def _on_busy(self, busy: bool) -> None:
        self.train_btn.setEnabled(not busy)
        self.cancel_btn.setEnabled(busy)

    def _show_row(self, row: dict) -> None:
        if row["epoch"] == 0:
            text = f"before training: validation IoU {row['val_iou']:.3f}"
        else:
            text = (f"epoch {row['epoch']}: loss {row['train_loss']:.4f}, validation IoU "
                    f"{row['val_iou']:.3f}")
        self.loss_label.setText(text)

    def _status(self, text: str) -> None:
        self.status_label.setText(text)


def _describe(source: Any) -> str:
    if isinstance(source, tuple):
        return " + ".join(_describe(s) for s in source)
    if isinstance(source, (str, Path)):
        return Path(source).name
    shape = getattr(source, "shape", None)
    return f"array {tuple(shape)}" if shape is not None else type(source).__name__
