"""The *Train* panel: fine-tune the session's model on annotated images, in a thread worker.

The panel holds a list of training sources (anything :func:`napari_segany.finetune.finetune`
takes: ``(image, labels store)`` pairs of the viewer's layers, file pairs, folders), the
mode, the number of epochs and the output folder. Sources are added from the viewer (an
image layer with the labels layer drawn on it: a labels store the widget writes is read
from disk, any other labels layer as its array), as labels stores picked on disk, or by
the widget (the session's image and store at *Start*); *Remove* drops the selected ones.
*Train* runs the training in a thread worker with progress and cancel; the loss and the
validation IoU of every epoch are shown as they come. When it is done, *Use the new model*
emits :attr:`TrainPanel.use_model` with the :class:`~napari_segany.finetune.FinetuneResult`
so the widget can switch its session to the trained model. No training logic lives here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
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
from ..storage.labels import is_labels_store
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

    def __init__(self, parent: QWidget | None = None, *, viewer: Any = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.jobs = JobRunner(self)
        self.base: Any = "sam2.1_hiera_tiny"
        self.sources: list[Any] = []
        self.result: Any = None
        self.settings = FinetuneSettings()
        self.sources_list = QListWidget()
        self.sources_list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.image_pick = QComboBox()
        self.image_pick.setToolTip("The image the labels were drawn on")
        self.labels_pick = QComboBox()
        self.labels_pick.setToolTip("Its labels layer: the objects to learn from")
        self.add_layers_btn = QPushButton("Add")
        self.add_layers_btn.setToolTip("Add this image and its labels layer to the training data")
        self.add_store_btn = QPushButton("Add labels store…")
        self.add_store_btn.setToolTip("A labels store (a *.zarr folder written by napari-segany); "
                                      "its image is the one its provenance names")
        self.remove_btn = QPushButton("Remove")
        self.remove_btn.setToolTip("Remove the selected training data from the list")
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 1000)
        self.epochs_spin.setValue(self.settings.epochs)
        self.val_spin = QSpinBox()
        self.val_spin.setRange(0, 50)
        self.val_spin.setSuffix(" %")
        self.val_spin.setValue(round(self.settings.val_fraction * 100))
        self.val_spin.setToolTip("Images (or, with one image, planes) held out to score each "
                                 "epoch; the model of the best epoch is kept. 0: no "
                                 "validation, the last epoch is kept.")
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
        form.addRow("Validation", self.val_spin)
        form.addRow("Output", self.out_edit)
        buttons = QHBoxLayout()
        for b in (self.train_btn, self.cancel_btn, self.use_btn):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Training data"))
        layout.addWidget(self.sources_list)
        pick = QHBoxLayout()
        pick.addWidget(self.image_pick, 1)
        pick.addWidget(QLabel("+"))
        pick.addWidget(self.labels_pick, 1)
        pick.addWidget(self.add_layers_btn)
        files = QHBoxLayout()
        files.addWidget(self.add_store_btn)
        files.addWidget(self.remove_btn)
        if viewer is not None:
            layout.addLayout(pick)
        else:
            for w in (self.image_pick, self.labels_pick, self.add_layers_btn):
                w.hide()
        layout.addLayout(files)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.loss_label)
        layout.addWidget(self.status_label)
        self.cancel_btn.setEnabled(False)
        self.use_btn.setEnabled(False)
        self.train_btn.clicked.connect(self.train)
        self.add_layers_btn.clicked.connect(self.add_picked_layers)
        self.add_store_btn.clicked.connect(self._pick_store)
        self.remove_btn.clicked.connect(self.remove_selected)
        if viewer is not None:
            viewer.layers.events.inserted.connect(self.refresh_layers)
            viewer.layers.events.removed.connect(self.refresh_layers)
            self.refresh_layers()
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

    def remove_selected(self) -> None:
        """Drop the selected entries of the training data."""
        rows = sorted({self.sources_list.row(i) for i in self.sources_list.selectedItems()},
                      reverse=True)
        for r in rows:
            self.sources_list.takeItem(r)
            del self.sources[r]
        if rows:
            self._status(f"Removed {len(rows)} training source(s); {len(self.sources)} left.")

    def add_store(self, path: str | Path) -> bool:
        """Add a labels store (its committed objects, on the image its provenance names)."""
        path = Path(path)
        if not is_labels_store(path):
            self._status(f"{path} is not a labels store (a *.zarr folder written by "
                         "napari-segany): pick the store itself.")
            return False
        self.add_source(str(path), f"store {path.name}")
        return True

    def _pick_store(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Labels store (*.zarr)")
        if path:
            self.add_store(path)

    # -- layers of the viewer -----------------------------------------------------------------
    def _layers(self, kind: str) -> list[Any]:
        if self.viewer is None:
            return []
        return [x for x in self.viewer.layers if type(x).__name__ == kind]

    def refresh_layers(self, event: Any = None) -> None:
        """The image and labels layers the pickers offer (after layers come and go)."""
        for combo, kind in ((self.image_pick, "Image"), (self.labels_pick, "Labels")):
            names = [x.name for x in self._layers(kind)]
            if names == [combo.itemText(i) for i in range(combo.count())]:
                continue
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self.add_layers_btn.setEnabled(bool(self.image_pick.count() and self.labels_pick.count()))

    def add_picked_layers(self) -> bool:
        """Add the picked image layer with the picked labels layer; False (and a message)
        when they do not fit together."""
        image = next((x for x in self._layers("Image")
                      if x.name == self.image_pick.currentText()), None)
        labels = next((x for x in self._layers("Labels")
                       if x.name == self.labels_pick.currentText()), None)
        if image is None or labels is None:
            self._status("Pick an image layer and the labels layer drawn on it.")
            return False
        data = image.data[0] if image.multiscale else image.data
        shape = tuple(data.shape[:-1] if image.rgb else data.shape)
        if tuple(labels.data.shape) != shape:
            self._status(f"The labels layer '{labels.name}' {tuple(labels.data.shape)} does not "
                         f"match the image '{image.name}' {shape}: pick the labels drawn on "
                         "that image.")
            return False
        store = labels.metadata.get("napari_segany_store")
        source = (data, store if store and is_labels_store(store) else labels.data)
        name = f"{image.name} + {labels.name}"
        if name in [self.sources_list.item(i).text() for i in range(self.sources_list.count())]:
            self._status(f"'{name}' is in the training data already.")
            return False
        self.add_source(source, name)
        self._status(f"Added '{name}'.")
        return True

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
                           epochs=int(self.epochs_spin.value()),
                           val_fraction=self.val_spin.value() / 100)
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
        iou = row["val_iou"]
        val = "no validation" if iou != iou else f"validation IoU {iou:.3f}"
        if row["epoch"] == 0:
            text = f"before training: {val}"
        else:
            text = f"epoch {row['epoch']}: loss {row['train_loss']:.4f}, {val}"
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
