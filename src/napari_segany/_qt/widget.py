"""The dock widget: picks the image, model and output, and owns one core Session.

It holds no segmentation logic. It is composed of parts that share one
:class:`~.context.Context`: :class:`~._prompting.Prompting` (clicks to preview, commit,
undo), :class:`~._long_jobs.LongJobs` (propagation, precompute, progress, cancel) and
:class:`~._auto.AutoJobs` (segment everything, boxes to masks); each handler is one
:class:`napari_segany.session.Session` call, long ones in thread workers (:mod:`.jobs`).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import weakref
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QWidget

from ..engine.registry import DEFAULT_MODEL, available_models, load_model
from ..io import file_stem
from ..session import Session
from ._auto import AutoJobs, AutoPanel
from ._compat import avoid_llvm_clash
from ._long_jobs import LongJobs
from ._messages import _shape_problem, _start_hint
from ._prompting import Prompting
from .context import Context
from .jobs import JobRunner
from .layers import LayerSet
from .panels import Controls

__all__ = ["SegmentAnythingWidget"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "image"


class SegmentAnythingWidget(QWidget):
    """Segment Anything in napari: Points/Shapes prompts -> zarr-backed Labels.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        Injected by napari when the widget is opened from the plugin menu.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.ui = Controls(self)
        self.auto_ui = AutoPanel()
        self.ui.add_group(self.auto_ui.box, extra_busy=self.auto_ui.buttons)
        self.jobs = JobRunner(self)
        self.ctx = Context(napari_viewer, self.ui, self.jobs)
        self.prompting = Prompting(self.ctx)
        self.long_jobs = LongJobs(self.ctx, self.prompting)
        self.auto_jobs = AutoJobs(self.ctx, self.auto_ui)
        self._backend: Any = None
        self._backend_key: tuple | None = None
        self._temp_dir: str | None = None
        self._auto_output = True
        self.ui.model_combo.addItems(available_models())
        self.ui.model_combo.setCurrentText(DEFAULT_MODEL)
        self._connect()
        self._on_layers_changed()

    # -- what the parts share ---------------------------------------------------------------------
    @property
    def session(self) -> Session | None:
        """The core session Start made (None before Start)."""
        return self.ctx.session

    @property
    def layers(self) -> LayerSet | None:
        return self.ctx.layers

    @property
    def preview(self) -> Any:
        """The Segmentation shown in the preview layer (what Commit writes)."""
        return self.ctx.preview

    @property
    def idle(self) -> bool:
        """No job runs and no preview refresh is queued (for scripts and tests)."""
        return not self.jobs.busy and not self.prompting.queued

    def toggle_positive(self) -> None:
        """Key T: flip the selected points, else the polarity of new points."""
        self.prompting.toggle_positive()

    def new_object(self) -> None:
        """Key N: a fresh object id."""
        self.prompting.new_object()

    # -- wiring -------------------------------------------------------------------------------
    def _connect(self) -> None:
        ui, p, lj, aj = self.ui, self.prompting, self.long_jobs, self.auto_jobs
        ui.start_btn.clicked.connect(self.start)
        ui.image_combo.currentTextChanged.connect(self._on_image_changed)
        ui.checkpoint_btn.clicked.connect(self._pick_checkpoint)
        ui.output_btn.clicked.connect(self._pick_output)
        ui.output_edit.textEdited.connect(self._on_output_edited)
        ui.mode_combo.currentTextChanged.connect(lambda _: ui.show_mode())
        ui.range_combo.currentTextChanged.connect(lambda _: ui.show_mode())
        ui.axis_combo.currentIndexChanged.connect(self._on_axis_changed)
        ui.object_spin.valueChanged.connect(p.on_object_changed)
        ui.positive_check.toggled.connect(p.on_positive_changed)
        ui.new_btn.clicked.connect(p.new_object)
        ui.commit_btn.clicked.connect(p.commit)
        ui.undo_btn.clicked.connect(p.undo)
        ui.redo_btn.clicked.connect(p.redo)
        ui.clear_btn.clicked.connect(p.clear_prompts)
        ui.propagate_btn.clicked.connect(lj.propagate)
        ui.precompute_btn.clicked.connect(lj.precompute)
        self.auto_ui.everything_btn.clicked.connect(aj.segment_everything)
        self.auto_ui.boxes_btn.clicked.connect(aj.boxes_to_masks)
        ui.cancel_btn.clicked.connect(lj.cancel)
        self.jobs.busy_changed.connect(lj.on_busy)
        self.jobs.progressed.connect(lj.on_progress)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(p.on_dims)
        self.viewer.dims.events.order.connect(p.on_dims)
        self.viewer.dims.events.ndisplay.connect(p.on_dims)
        ui.set_volume(0)
        ui.set_busy(False)

    def status(self, text: str) -> None:
        self.ctx.status(text)

    def image_layer(self) -> Any:
        """The image layer picked in the combo box (None when there is none)."""
        name = self.ui.image_combo.currentText()
        for layer in self.viewer.layers:
            if layer.name == name and type(layer).__name__ == "Image":
                return layer
        return None

    def _on_layers_changed(self, event: Any = None) -> None:
        combo = self.ui.image_combo
        names = [x.name for x in self.viewer.layers if type(x).__name__ == "Image"]
        current = combo.currentText()
        if names != [combo.itemText(i) for i in range(combo.count())]:
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            combo.blockSignals(False)
            if current in names:
                combo.setCurrentText(current)
            elif event is not None and getattr(event, "type", "") == "inserted" and names:
                combo.setCurrentText(getattr(event.value, "name", names[-1]))
            self._on_image_changed(combo.currentText())
        if self.layers is not None and self.layers.image not in self.viewer.layers:
            self._end_session("the image layer was removed; pick an image and press Start")

    def _on_image_changed(self, _name: str = "") -> None:
        image = self.image_layer()
        if self._auto_output:
            self.ui.output_edit.setText(self.default_output(image) if image is not None else "")
        if self.layers is not None and image is not self.layers.image:
            self.status("Press Start to segment the image now picked.")

    def _on_output_edited(self, text: str) -> None:
        self._auto_output = not text.strip()

    def default_output(self, image: Any) -> str:
        """``<data>_segany.zarr`` next to the image file when writable, else a temp folder."""
        src = getattr(getattr(image, "source", None), "path", None)
        if src:
            p = Path(src)
            folder = p.parent
            if folder.is_dir() and _writable(folder):
                return str(folder / f"{_safe(file_stem(p))}_segany.zarr")
        if self._temp_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="napari-segany-")
        return str(Path(self._temp_dir) / f"{_safe(image.name)}_labels.zarr")

    def _pick_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", "",
                                              "Checkpoints (*.pt *.pth *.bin *.ckpt);;All (*)")
        if path:
            self.ui.model_combo.setCurrentText(path)

    def _pick_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Labels store (zarr)",
                                              self.ui.output_edit.text(), "zarr (*.zarr)")
        if path:
            path = path if path.endswith(".zarr") else path + ".zarr"
            self.ui.output_edit.setText(path)
            self._auto_output = False

    # -- session ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model (in a worker), open the output store, create the prompt layers."""
        if self.jobs.busy:
            return
        image = self.image_layer()
        if image is None:
            return self.ctx.warn("No image layer: open an image or a sample (File > Open "
                              "Sample > napari-segany), then pick it under 'image'.")
        data = image.data[0] if image.multiscale else image.data
        rgb = bool(image.rgb)
        problem = _shape_problem(image.name, tuple(data.shape), rgb)
        if problem:  # before loading a model: its errors (e.g. offline) would hide this one
            return self.ctx.warn(problem)
        ui = self.ui
        model = ui.model_combo.currentText().strip() or DEFAULT_MODEL
        device, random = ui.device_combo.currentText(), ui.random_check.isChecked()
        out = ui.output_edit.text().strip() or self.default_output(image)
        ui.output_edit.setText(out)
        out_path = Path(out).expanduser()
        cache = (out_path.with_name(file_stem(out_path) + ".embeddings.zarr")
                 if ui.cache_check.isChecked() else None)
        key = (model, device, random)
        backend = self._backend if key == self._backend_key else None
        layer_info = {"name": image.name, "scale": [float(s) for s in image.scale],
                      "translate": [float(t) for t in image.translate]}

        def work(cancel: Any, progress: Any) -> Any:
            def download(done: int, total: int | None) -> None:  # in MiB: Qt ints are 32-bit
                progress(done >> 20, None if not total else max(1, total >> 20))

            b = backend or load_model(model, device=device, random_weights=random,
                                      progress=download)
            session = Session(data, b, rgb=rgb, labels=out_path, cache=cache)
            session.labels.update_provenance(layer=layer_info)
            return session

        avoid_llvm_clash()
        self._end_session(None)
        self.status(f"Loading {model} and opening {out_path.name} …")
        self.jobs.start(work, title=f"Loading model {model!r}", cancellable=False,
                        on_done=lambda s: self._started(image, key, s),
                        on_error=lambda e: self._start_failed(model, e))

    def _start_failed(self, model: str, exc: BaseException) -> None:
        self.status(f"Could not start: {exc}")
        self.ctx.error(f"Could not load model {model!r} or open the output: {exc}"
                    f"{_start_hint(exc)}")

    def _started(self, image: Any, key: tuple, session: Session) -> None:
        if image not in self.viewer.layers:
            return self.status("The image layer was removed while loading; press Start.")
        self._backend_key, self._backend = key, session.backend
        self.ctx.session = session
        self.ctx.layers = layers = LayerSet(self.viewer, image, session.shape)
        store = session.labels
        view = self.ctx.labels_view = store.as_array()
        view.group_strokes = True  # one napari brush stroke, fill or erasure: one operation
        output = layers.show_output(view, {"napari_segany_store": str(store.path)})
        output.events.paint.connect(self._on_paint)
        _bind_history_keys(self, output)
        layers.points.events.data.connect(self.prompting.on_prompt_data)
        layers.boxes.events.data.connect(self.prompting.on_box_data)
        _bind_keys(self, layers.points, toggle=True)
        _bind_keys(self, layers.boxes, toggle=False)
        lead = session.plane_keys_shape
        self._fill_axes(image, lead)
        self.ui.set_volume(len(lead))
        layers.set_defaults(object_id=self.ui.object_spin.value(),
                            positive=self.ui.positive_check.isChecked())
        self.viewer.layers.selection.active = layers.points
        layers.points.mode = "add"
        self.status(f"Ready: {session.backend.name} on {session.backend.device}; labels in "
                    f"{store.path}. Click on '{layers.points.name}' or draw a rectangle on "
                    f"'{layers.boxes.name}'.")
        self.prompting.schedule_refresh()

    def _on_paint(self, event: Any = None) -> None:
        """napari finished one edit of the labels layer: it becomes one operation."""
        self.ctx.end_stroke()

    def _end_session(self, reason: str | None) -> None:
        ctx = self.ctx
        ctx.end_stroke()
        if ctx.layers is not None and ctx.layers.output is not None:
            with contextlib.suppress(Exception):
                ctx.layers.output.events.paint.disconnect(self._on_paint)
        ctx.labels_view = None
        if ctx.layers is not None:
            ctx.layers.points.events.data.disconnect(self.prompting.on_prompt_data)
            ctx.layers.boxes.events.data.disconnect(self.prompting.on_box_data)
            ctx.layers.show_preview(None)
        ctx.session, ctx.layers, ctx.preview = None, None, None
        self.prompting.bad_prompts = None
        if reason:
            self.status(reason)

    def _fill_axes(self, image: Any, lead: tuple[int, ...]) -> None:
        combo = self.ui.axis_combo
        combo.blockSignals(True)
        combo.clear()
        labels = list(self.viewer.dims.axis_labels)
        offset = len(labels) - image.ndim
        for i, n in enumerate(lead):
            name = labels[offset + i] if 0 <= offset + i < len(labels) else str(i)
            combo.addItem(f"{name} (axis {i}, {n} planes)")
        combo.blockSignals(False)
        self._on_axis_changed(0)

    def _on_axis_changed(self, index: int) -> None:
        if self.session is None or not self.session.plane_keys_shape or index < 0:
            return
        n = self.session.plane_keys_shape[index]
        for spin in (self.ui.from_spin, self.ui.to_spin):
            spin.setRange(0, n - 1)
        self.ui.from_spin.setValue(0)
        self.ui.to_spin.setValue(n - 1)


def _writable(folder: Path) -> bool:
    import os

    return os.access(folder, os.W_OK)


def _bind_history_keys(widget: SegmentAnythingWidget, layer: Any) -> None:
    """Ctrl+Z / Ctrl+Shift+Z on the labels layer: the session's undo and redo (every kind of
    operation, pixel-wise), instead of the layer's own history of its edits only."""
    ref = weakref.ref(widget)

    def undo(_layer: Any) -> None:
        w = ref()
        if w is not None:
            w.prompting.undo()

    def redo(_layer: Any) -> None:
        w = ref()
        if w is not None:
            w.prompting.redo()

    layer.bind_key("Control-Z", undo, overwrite=True)
    layer.bind_key("Control-Shift-Z", redo, overwrite=True)


def _bind_keys(widget: SegmentAnythingWidget, layer: Any, *, toggle: bool) -> None:
    """T (points): positive/negative; N: new object. Holds the widget weakly."""
    ref = weakref.ref(widget)

    def new_object(_layer: Any) -> None:
        w = ref()
        if w is not None:
            w.new_object()

    def toggle_positive(_layer: Any) -> None:
        w = ref()
        if w is not None:
            w.toggle_positive()

    layer.bind_key("N", new_object, overwrite=True)
    if toggle:
        layer.bind_key("T", toggle_positive, overwrite=True)
