"""The dock widget: picks the image, model and output, and owns one core Session.

It holds no segmentation logic. It is composed of parts that share one
:class:`~.context.Context`: :class:`~._prompting.Prompting` (clicks to preview, commit,
undo; the model in the :class:`~.executor.ModelExecutor` thread), :class:`~._long_jobs.LongJobs`
(propagation, precompute, progress, cancel), :class:`~._auto.AutoJobs` (segment
everything, boxes to masks), :class:`~._review.Review` (staged results),
:class:`~._objects.ObjectsPanel` (the store's objects) and the cases worklist; each
handler is one :class:`napari_segany.session.Session` call, long ones in thread workers
(:mod:`.jobs`). Keyboard shortcuts are napari actions (:mod:`.shortcuts`).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QLabel, QWidget

from ..engine.registry import DEFAULT_MODEL, available_models, load_model
from ..intensity import normalizer_from_options
from ..io import file_stem
from ..session import Session
from . import shortcuts
from ._auto import AutoJobs, AutoPanel
from ._cases import CasesPanel
from ._compat import avoid_llvm_clash
from ._finetune import TrainPanel
from ._long_jobs import LongJobs
from ._messages import StartError, shape_problem
from ._objects import ObjectsPanel
from ._prompting import Prompting
from ._propagation import PropagationPanel
from ._review import Review
from ._tracking import TrackingPanel
from .context import Context
from .executor import ModelExecutor
from .jobs import JobRunner
from .layers import LayerSet, unwrap
from .panels import Controls, Section

__all__ = ["SegmentAnythingWidget"]

_DEFAULT_AXIS = re.compile(r"^-?\d+$")  # napari's own axis labels ("-3", "0", ...)


def _import_layer_modules() -> None:
    """Import (and compute) what napari needs when the first prompt, preview and labels layers
    are made (pandas for the layers' features, scikit-image's colour module for the label
    colours, scipy's linear algebra for the transforms, vispy's dash patterns): a worker
    thread pays for it while the model loads, instead of the GUI thread at the end of
    Start."""
    import importlib

    for name in ("pandas", "skimage.color", "scipy.linalg", "scipy.ndimage"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # vispy draws every line with dash patterns it computes once per process in numpy
    # (about 80 ms, at the first Labels layer's polygon overlay): compute them here too
    with contextlib.suppress(Exception):
        from vispy.visuals.line.dash_atlas import DashAtlas

        DashAtlas()


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
        self.ui = ui = Controls(self)
        self.jobs = JobRunner(self)
        self.executor = ModelExecutor(self)
        self.ctx = Context(napari_viewer, ui, self.jobs, self.executor)
        self.objects = ObjectsPanel(self.ctx)
        ui.add_group(self.objects.section, extra_busy=self.objects.buttons)
        self.propagation = PropagationPanel()
        ui.volume_form.addRow(self.propagation.box)
        ui._volume_rows += [self.propagation.continue_btn]
        self.auto_ui = AutoPanel()
        ui.add_group(self.auto_ui.box, extra_busy=self.auto_ui.buttons)
        self.review = Review(self.ctx)
        ui.add_group(self.review.box, extra_busy=self.review.buttons)
        self.cases_panel = CasesPanel(napari_viewer)
        ui.add_group(Section("Cases (worklist)", self.cases_panel),
                     extra_busy=self.cases_panel.buttons)
        self.tracking = TrackingPanel(
            napari_viewer, lambda: self.session,
            image_layer=lambda: self.layers.image if self.layers is not None else None,
            labels_layer=lambda: self.layers.output if self.layers is not None else None,
            jobs=self.jobs)
        ui.add_group(Section("Tracking (time stacks)", self.tracking),
                     extra_busy=tuple(self.tracking.buttons))
        self.train_panel = TrainPanel(viewer=napari_viewer)
        ui.add_group(Section("Fine-tune on these annotations", self.train_panel))
        self.help_label = QLabel()
        self.help_label.setWordWrap(True)
        ui.add_group(Section("Keyboard shortcuts", self.help_label))
        self.prompting = Prompting(self.ctx)
        self.long_jobs = LongJobs(self.ctx, self.prompting, self.propagation, self.review)
        self.auto_jobs = AutoJobs(self.ctx, self.auto_ui, self.review)
        self._backend: Any = None
        self._backend_key: tuple | None = None
        self._temp_dir: str | None = None
        self._outputs: dict[str, str] = {}  # image layer name -> the output typed for it
        self._case: Any = None
        self.start_seconds: dict[str, float] = {}  # how long Start's GUI-thread steps took
        ui.model_combo.addItems(available_models())
        ui.model_combo.setCurrentText(DEFAULT_MODEL)
        shortcuts.attach(napari_viewer, self)
        self._connect()
        self._show_shortcuts()
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
        """No job runs, the model is not working and no refresh is queued (for scripts and
        tests)."""
        return not self.jobs.busy and not self.prompting.busy

    # -- the shortcuts' targets -------------------------------------------------------------------
    def preview_now(self) -> None:
        self.prompting.schedule_refresh()

    def commit(self) -> None:
        self.prompting.commit()

    def undo(self) -> None:
        self.prompting.undo()

    def redo(self) -> None:
        self.prompting.redo()

    def toggle_positive(self) -> None:
        """Flip the selected points, else the polarity of new points."""
        self.prompting.toggle_positive()

    def new_object(self) -> None:
        """A fresh object id."""
        self.prompting.new_object()

    def next_object(self) -> None:
        self.prompting.step_object(+1)

    def previous_object(self) -> None:
        self.prompting.step_object(-1)

    def clear_prompts(self) -> None:
        self.prompting.clear_prompts()

    def propagate(self) -> None:
        self.long_jobs.propagate()

    def accept_all(self) -> None:
        self.review.accept_all()

    def _show_shortcuts(self, event: Any = None) -> None:
        for button, (name, text) in self.ui.shortcut_buttons.items():
            key = shortcuts.key_of(name)
            if text:
                button.setText(f"{text} ({key})" if key else text)
            tip = next(s.label for s in shortcuts.SHORTCUTS if s.name == name)
            button.setToolTip(f"{tip[0].upper()}{tip[1:]}" + (f" [{key}]" if key else ""))
        self.help_label.setText(shortcuts.help_text())

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
        ui.view_combo.currentTextChanged.connect(lambda _: p.schedule_refresh())
        ui.new_btn.clicked.connect(p.new_object)
        ui.prev_btn.clicked.connect(self.previous_object)
        ui.next_btn.clicked.connect(self.next_object)
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
        self.jobs.busy_changed.connect(lambda _b: self.review.refresh())
        self.jobs.progressed.connect(lj.on_progress)
        self.cases_panel.case_opened.connect(self._on_case_opened)
        self.tracking.tracked.connect(lambda _result: self.ctx.store_changed())
        self.train_panel.use_model.connect(self._use_trained)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self.viewer.dims.events.current_step.connect(p.on_dims)
        self.viewer.dims.events.order.connect(p.on_dims)
        self.viewer.dims.events.ndisplay.connect(p.on_dims)
        from napari.utils.action_manager import action_manager

        action_manager.events.shortcut_changed.connect(self._show_shortcuts,
                                                       until=self.destroyed)
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

    # -- layers coming and going ------------------------------------------------------------------
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
        layers = self.ctx.layers
        if layers is None or event is None or getattr(event, "type", "") != "removed":
            return
        if layers.image not in self.viewer.layers:
            return self._image_removed(layers)
        gone = unwrap(getattr(event, "value", None))
        if gone is unwrap(layers.review):
            layers.review = None
        elif gone in (unwrap(layers.output), unwrap(layers.points), unwrap(layers.boxes)):
            # said once the event loop runs again: when the viewer closes, its image goes
            # right after, and nothing needs saying then
            me = weakref.ref(self)
            QTimer.singleShot(0, lambda: me() is not None and me()._say_removed(layers, gone))

    def _say_removed(self, layers: LayerSet, gone: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the widget or the viewer closed meanwhile
            self._say_removed_now(layers, gone)

    def _say_removed_now(self, layers: LayerSet, gone: Any) -> None:
        if layers is not self.ctx.layers or layers.image not in self.viewer.layers:
            return
        store = self.session.labels.path if self.session is not None else None
        if gone is unwrap(layers.output):
            self.ctx.warn(f"The labels layer was removed; nothing is lost: the labels are in "
                          f"{store}, and commits still go there. Press Start to show it again.")
        else:
            what = "points" if gone is unwrap(layers.points) else "boxes"
            self.ctx.warn(f"The {what} layer was removed: its prompts are gone and new "
                          f"{what} cannot be added. Press Start to get the layer back "
                          "(committed objects keep their prompts).")

    def _image_removed(self, layers: LayerSet) -> None:
        """The session's image went: cancel its work, tidy its layers, end the session."""
        name = layers.image.name
        store = self.session.labels.path if self.session is not None else None
        running = self.jobs.title if self.jobs.busy else None
        if running:
            self.jobs.cancel()
        self.executor.cancel()
        self._end_session(None)
        with contextlib.suppress(Exception):
            layers.remove_all()
        text = f"The image layer {name!r} was removed"
        if running:
            text += f": {running} was cancelled (planes it finished are kept)"
        self.status(f"{text}. Its layers were closed; the labels stay in {store}. Pick an "
                    "image and press Start." if store else f"{text}.")

    def _on_image_changed(self, _name: str = "") -> None:
        image = self.image_layer()
        if image is None:
            self.ui.output_edit.setText("")
        else:
            self.ui.output_edit.setText(self._outputs.get(image.name) or
                                        self.default_output(image))
        if self.layers is not None and image is not self.layers.image:
            self.status("Press Start to segment the image now picked.")

    def _on_output_edited(self, text: str) -> None:
        image = self.image_layer()
        if image is not None:
            if text.strip():
                self._outputs[image.name] = text.strip()
            else:
                self._outputs.pop(image.name, None)

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
            self._on_output_edited(path)

    def _on_case_opened(self, case: Any) -> None:
        """A worklist case was opened: segment its image into its labels store."""
        self._case = case
        self.ui.image_combo.setCurrentText(case.id)
        self.ui.output_edit.setText(str(case.labels))
        self._on_output_edited(str(case.labels))
        self.status(f"Case {case.id}: press Start; labels go to {case.labels}.")

    # -- session ------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model (in a worker), open the output store, create the prompt layers.

        The session that works now is kept until the new one is ready: a Start that fails
        (a wrong output path, an offline download) leaves it as it was.
        """
        if self.jobs.busy:
            return
        image = self.image_layer()
        if image is None:
            return self.ctx.warn("No image layer: open an image or a sample (File > Open "
                                 "Sample > napari-segany), then pick it under 'image'.")
        data = image.data[0] if image.multiscale else image.data
        rgb = bool(image.rgb)
        problem = shape_problem(image.name, tuple(data.shape), rgb)
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
        window = self.cases_panel.window() if self._case is not None and \
            self._case.id == image.name else None
        current = self.session
        shared = current if (current is not None and current.labels is not None and
                             Path(current.labels.path) == out_path) else None
        same_cache = current is not None and (
            (current.cache.path if current.cache is not None else None) ==
            (Path(cache) if cache is not None else None))
        reuse = shared if (shared is not None and backend is shared.backend and same_cache and
                           self.layers is not None and self.layers.image is image and
                           window is None) else None

        def work(cancel: Any, progress: Any) -> Any:
            _import_layer_modules()  # here, not on the GUI thread when the layers are made
            if reuse is not None:  # the same image, model and output: recreate the layers
                return reuse

            def download(done: int, total: int | None) -> None:  # MiB: Qt ints are 32-bit
                progress(done >> 20, None if not total else max(1, total >> 20))

            try:
                b = backend or load_model(model, device=device, random_weights=random,
                                          progress=download)
            except Exception as exc:
                raise StartError("model", exc) from exc
            try:
                norm = (normalizer_from_options(data, rgb=rgb, window=window)
                        if window is not None else None)
                # the store this widget writes now is handed over, not opened twice
                session = Session(data, b, rgb=rgb, cache=cache, normalizer=norm,
                                  labels=shared.labels if shared is not None else out_path)
                if shared is not None:
                    session.review = shared.review
                session.labels.update_provenance(layer=layer_info)
                if session.labels.shape and session.review is not None:
                    session.review.objects()  # a damaged review area fails here, not later
            except Exception as exc:
                raise StartError("output", exc) from exc
            return session

        avoid_llvm_clash()
        self.status(f"Loading {model} and opening {out_path.name} …")
        self.jobs.start(work, title=f"Starting ({model})", cancellable=False,
                        on_done=lambda s: self._started(image, key, s, shared),
                        on_error=lambda e: self.ctx.fail(e, "Start"))

    def _started(self, image: Any, key: tuple, session: Session, shared: Any) -> None:
        if image not in self.viewer.layers:
            if session is not self.session and shared is None:
                session.close()
            return self.status("The image layer was removed while loading; press Start.")
        t0 = time.perf_counter()
        if session is not self.session:
            self._end_session(None, close=shared is None)
        else:
            self._unhook()
        self._backend_key, self._backend = key, session.backend
        self.ctx.session = session
        self.ctx.generation += 1
        self.prompting.reset()
        self.ctx.layers = layers = LayerSet(self.viewer, image, session.shape)
        t1 = time.perf_counter()
        store = session.labels
        view = self.ctx.labels_view = store.as_array()
        view.group_strokes = True  # one napari brush stroke, fill or erasure: one operation
        output = layers.show_output(view, {"napari_segany_store": str(store.path)})
        output.events.paint.connect(self._on_paint)
        shortcuts.bind_on_layer(output, ("undo", "redo"), self.viewer)
        t2 = time.perf_counter()
        restored = 0
        if not len(layers.points.data) and not len(layers.boxes.data):
            restored = layers.add_prompts(session.recorded_prompts())
        layers.points.events.data.connect(self.prompting.on_prompt_data)
        layers.boxes.events.data.connect(self.prompting.on_box_data)
        lead = session.plane_keys_shape
        self._fill_axes(image, lead)
        self.ui.set_volume(len(lead))
        if self._case is not None and self._case.id == image.name and \
                self.cases_panel.worklist is not None:
            classes = list(self.cases_panel.worklist.classes)
            if classes and self.ui.object_spin.value() not in {c.id for c in classes}:
                self.ui.object_spin.setValue(classes[0].id)
        if restored and self.ui.object_spin.value() in store.objects:
            # the restored prompts belong to committed objects: drawing one of them again
            # as the preview would make saved work look uncommitted; go on with a new one
            self.prompting.new_object()
        layers.set_defaults(object_id=self.ui.object_spin.value(),
                            positive=self.ui.positive_check.isChecked())
        if session.review is not None and session.review.objects():
            self.review.show_layer()
        self.viewer.layers.selection.active = layers.points
        layers.points.mode = "add"
        self.train_panel.set_base(session.backend)  # trained on a copy: the session goes on
        self.train_panel.clear_sources()
        self.train_panel.add_source((session.image, str(store.path)),
                                    f"{image.name}: {store.path}")
        self.ctx.store_changed()
        t3 = time.perf_counter()
        self.start_seconds = {"layers": t1 - t0, "labels": t2 - t1, "rest": t3 - t2,
                              "total": t3 - t0}
        n_obj = len([r for r in store.object_table() if r.pixels])
        again = (f" Continued: {n_obj} object(s)" + (f", {restored} prompt(s) restored"
                                                     if restored else "") + "."
                 if n_obj or restored else "")
        self.status(f"Ready: {session.backend.name} on {session.backend.device}; labels in "
                    f"{store.path}.{again} Click on '{layers.points.name}' or draw a "
                    f"rectangle on '{layers.boxes.name}'.")
        self.prompting.schedule_refresh()

    def _use_trained(self, result: Any) -> None:
        """Switch to a fine-tuned model: its checkpoint becomes the model, then Start.

        The trained model in memory (the checkpoint's weights) is used as it is rather than
        loaded again; the labels store and, for a decoder fine-tune (encoder unchanged), the
        embedding cache of the session go on with it."""
        checkpoint = getattr(result, "checkpoint", None)
        if checkpoint is None:
            return self.ctx.warn("The training run left no checkpoint to use.")
        ui = self.ui
        ui.model_combo.setCurrentText(str(checkpoint))
        ui.random_check.setChecked(False)
        if getattr(result, "backend", None) is not None:
            self._backend_key = (str(checkpoint), ui.device_combo.currentText(), False)
            self._backend = result.backend
        self.start()

    def _on_paint(self, event: Any = None) -> None:
        """napari finished one edit of the labels layer: it becomes one operation."""
        self.ctx.end_stroke()
        self.ctx.store_changed()

    def _unhook(self) -> None:
        ctx = self.ctx
        ctx.end_stroke()
        if ctx.layers is not None:
            with contextlib.suppress(Exception):
                ctx.layers.output.events.paint.disconnect(self._on_paint)
            for layer, handler in ((ctx.layers.points, self.prompting.on_prompt_data),
                                   (ctx.layers.boxes, self.prompting.on_box_data)):
                with contextlib.suppress(Exception):
                    layer.events.data.disconnect(handler)
            ctx.layers.show_preview(None)

    def _end_session(self, reason: str | None, *, close: bool = True) -> None:
        ctx = self.ctx
        self._unhook()
        old = ctx.session
        ctx.labels_view = None
        ctx.session, ctx.layers, ctx.preview = None, None, None
        ctx.generation += 1
        self.prompting.reset()
        self.prompting.bad_prompts = None
        self.propagation.set_stops([])
        if old is not None and close and not self.jobs.busy:
            with contextlib.suppress(Exception):
                old.close()
        self.ctx.store_changed()
        if reason:
            self.status(reason)

    def _fill_axes(self, image: Any, lead: tuple[int, ...]) -> None:
        combo = self.ui.axis_combo
        combo.blockSignals(True)
        combo.clear()
        labels = [str(v) for v in getattr(image, "axis_labels", ())]
        for i, n in enumerate(lead):
            name = labels[i] if i < len(labels) else ""
            combo.addItem(f"axis {i} ({n} planes)" if not name or _DEFAULT_AXIS.match(name)
                          else f"{name} (axis {i}, {n} planes)")
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
