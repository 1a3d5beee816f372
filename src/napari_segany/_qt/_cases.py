"""The "Cases" panel: a worklist in napari (open the next case, mark it, export finished).

A self-contained :class:`CasesPanel` (a ``QGroupBox``) over a
:class:`napari_segany.cases.Worklist`: it lists the cases with status, who and when,
opens a case's image as an Image layer with its voxel spacing as ``scale`` (and its saved
labels, read-only, coloured by the class table), records status changes under the
annotator's name, and exports every finished case as DICOM-SEG in a thread worker. Its
intensity preset (CT windows, or the file's WindowCenter/WindowWidth) sets the layer's
contrast and is offered to the segmentation widget through :meth:`CasesPanel.window`.

It holds no segmentation logic and touches no other part of the widget: the dock widget
connects :attr:`CasesPanel.case_opened` to point its output store at the case's labels.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QWidget,
)

from ..cases import Case, CasesError, Worklist, export_finished
from ..intensity import WINDOW_PRESETS, IntensityError, window_limits
from ..storage.labels import LabelsStore

__all__ = ["CasesPanel", "AUTO_WINDOW"]

#: The window entry meaning "the session's own mapping" (percentiles fitted on the image).
AUTO_WINDOW = "auto (percentiles)"
_COLUMNS = ("case", "status", "by", "when")


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    lay = QHBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        lay.addWidget(w)
    return box


class CasesPanel(QGroupBox):
    """A worklist of cases in napari.

    Parameters
    ----------
    viewer : napari.Viewer
    user : str, optional
        The annotator recorded with status changes (default: the login name; editable).

    Signals
    -------
    case_opened(Case)
        After a case's image layer was added (the widget sets its output to
        ``case.labels`` and the object ids to the class table's).
    case_changed(Case)
        After a status change was recorded.
    """

    case_opened = Signal(object)
    case_changed = Signal(object)

    def __init__(self, viewer: Any, *, user: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("Cases", parent)
        self.viewer = viewer
        self.worklist: Worklist | None = None
        self.current: Case | None = None
        self.layers: list[Any] = []  # the layers this panel added for the current case
        self._worker: Any = None
        form = QFormLayout(self)
        self.workdir_edit = QLineEdit()
        self.workdir_edit.setPlaceholderText("worklist folder (napari-segany cases init ...)")
        self.browse_btn = QToolButton()
        self.browse_btn.setText("…")
        self.load_btn = QPushButton("Load")
        form.addRow("worklist", _row(self.workdir_edit, self.browse_btn, self.load_btn))
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(120)
        form.addRow(self.table)
        self.user_edit = QLineEdit(user or _login())
        form.addRow("annotator", self.user_edit)
        self.window_combo = QComboBox()
        self.window_combo.addItem(AUTO_WINDOW, None)
        for name, text in WINDOW_PRESETS.items():
            self.window_combo.addItem(text, name)
        self.window_combo.setToolTip("Intensity window of the case's image (display and the "
                                     "model's input)")
        form.addRow("window", self.window_combo)
        self.next_btn = QPushButton("Open next")
        self.next_btn.setToolTip("Your case in progress, else the first todo (claimed for you)")
        self.open_btn = QPushButton("Open selected")
        form.addRow(_row(self.next_btn, self.open_btn))
        self.done_btn = QPushButton("Done")
        self.review_btn = QPushButton("Needs review")
        self.export_btn = QPushButton("Export finished")
        self.export_btn.setToolTip("One DICOM-SEG per finished case, into WORKLIST/exports")
        form.addRow(_row(self.done_btn, self.review_btn, self.export_btn))
        self.classes_label = QLabel("")
        self.classes_label.setWordWrap(True)
        form.addRow("classes", self.classes_label)
        self.status_label = QLabel("Load a worklist folder.")
        self.status_label.setWordWrap(True)
        form.addRow(self.status_label)
        self.buttons = (self.next_btn, self.open_btn, self.done_btn, self.review_btn,
                        self.export_btn)
        self.browse_btn.clicked.connect(self._browse)
        self.load_btn.clicked.connect(lambda: self.load(self.workdir_edit.text()))
        self.next_btn.clicked.connect(self.open_next)
        self.open_btn.clicked.connect(self.open_selected)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_selected())
        self.done_btn.clicked.connect(lambda: self.mark("done"))
        self.review_btn.clicked.connect(lambda: self.mark("needs review"))
        self.export_btn.clicked.connect(self.export)
        self.window_combo.currentIndexChanged.connect(lambda _i: self._apply_window())
        self._enable()

    # -- what the widget asks -------------------------------------------------------------
    @property
    def user(self) -> str:
        return self.user_edit.text().strip() or _login()

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def window(self) -> str | None:
        """The chosen window name (for ``normalizer_from_options(window=...)``), or None."""
        return self.window_combo.currentData()

    def image_layer(self) -> Any:
        """The Image layer of the open case (None before a case is opened)."""
        return next((x for x in self.layers if type(x).__name__ == "Image"), None)

    # -- messages ---------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.status_label.setText(text)

    def _fail(self, text: str) -> None:
        from napari.utils.notifications import show_error

        self._say(text)
        show_error(text)

    def _enable(self) -> None:
        ready = self.worklist is not None and not self.busy
        for b in (self.next_btn, self.open_btn, self.export_btn):
            b.setEnabled(ready)
        for b in (self.done_btn, self.review_btn):
            b.setEnabled(ready and self.current is not None)

    # -- the worklist -----------------------------------------------------------------------
    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Worklist folder",
                                                self.workdir_edit.text())
        if path:
            self.load(path)

    def load(self, workdir: str | Path) -> bool:
        """Open the worklist kept in ``workdir`` (False, with a message, when it cannot)."""
        try:
            self.worklist = Worklist.open(Path(str(workdir)).expanduser())
        except CasesError as exc:
            self._fail(f"{exc} (create one with: napari-segany cases init SOURCE WORKDIR)")
            return False
        self.workdir_edit.setText(str(self.worklist.workdir))
        self.current = None
        self.refresh()
        self._say(f"{len(self.worklist)} cases. Press Open next.")
        return True

    def refresh(self) -> None:
        """Re-read the cases and the class table from disk into the table."""
        wl = self.worklist
        if wl is None:
            return
        wl.classes = Worklist.open(wl.workdir).classes
        cases = wl.cases
        self.table.setRowCount(len(cases))
        for r, c in enumerate(cases):
            for col, text in enumerate((c.id, c.status, c.user or "",
                                        (c.updated or "")[:16].replace("T", " "))):
                self.table.setItem(r, col, QTableWidgetItem(text))
            if self.current is not None and c.id == self.current.id:
                self.table.selectRow(r)
        self.table.resizeColumnsToContents()
        self.classes_label.setText(" · ".join(f"{c.id} {c.name}" for c in wl.classes)
                                   or "none (napari-segany cases classes WORKDIR --add NAME)")
        self._enable()

    # -- opening ----------------------------------------------------------------------------
    def open_next(self) -> Case | None:
        """Claim and open the next case for the annotator."""
        if self.worklist is None:
            return None
        case = self.worklist.next_case(user=self.user)
        if case is None:
            self.refresh()
            self._say("No case left to do.")
            return None
        return self.open_case(case.id)

    def open_selected(self) -> Case | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if self.worklist is None or not rows:
            self._say("Select a case in the table first.")
            return None
        return self.open_case(self.table.item(rows[0].row(), 0).text())

    def open_case(self, case_id: str) -> Case | None:
        """Show a case's image (and saved labels); replaces the previous case's layers."""
        wl = self.worklist
        if wl is None:
            return None
        try:
            case = wl.case(case_id)
            image = wl.image(case)
        except CasesError as exc:
            self._fail(str(exc))
            return None
        for layer in self.layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers = []
        data = image.data
        ndim = len(data.shape) - (1 if image.rgb else 0)
        scale = [float(s) for s in image.spacing] if image.spacing and \
            len(image.spacing) == ndim else None
        meta = {"path": str(case.source), "case": case.id, "labels": str(case.labels),
                **{k: v for k, v in image.metadata.items() if k != "format"}}
        kwargs: dict[str, Any] = {"name": case.id, "rgb": bool(image.rgb), "metadata": meta}
        if scale is not None:
            kwargs["scale"] = scale
        self.layers.append(self.viewer.add_image(data, **kwargs))
        self.current = case
        self._apply_window()
        if case.labels.exists():
            self._show_labels(case, scale)
        self.refresh()
        self._say(f"Case {case.id} ({case.status}): labels go to {case.labels}. Commit each "
                  "structure as its class id.")
        self.case_opened.emit(case)
        return case

    def _show_labels(self, case: Case, scale: list[float] | None) -> None:
        try:
            store = LabelsStore.open(case.labels, mode="r")
        except (ValueError, OSError) as exc:
            self._fail(f"case {case.id}: its labels store cannot be opened: {exc}")
            return
        kwargs: dict[str, Any] = {"name": f"{case.id} labels (saved)", "opacity": 0.5}
        if scale is not None and len(scale) == len(store.shape):
            kwargs["scale"] = scale
        layer = self.viewer.add_labels(store.array, **kwargs)
        try:
            from napari.utils.colormaps import DirectLabelColormap

            colors: dict[Any, Any] = {c.id: c.hex_color for c in self.worklist.classes}
            colors[None] = "transparent"
            colors[0] = "transparent"
            layer.colormap = DirectLabelColormap(color_dict=colors)
        except Exception:  # colours are a bonus; older napari has no DirectLabelColormap
            pass
        layer.editable = False
        self.layers.append(layer)

    def _apply_window(self) -> None:
        layer, name = self.image_layer(), self.window()
        if layer is None:
            return
        try:
            if name is not None:
                layer.contrast_limits = list(window_limits(name, layer.data))
            elif getattr(layer.data, "window", None) is not None:
                layer.contrast_limits = list(window_limits("file", layer.data))
        except IntensityError as exc:
            self._say(str(exc))

    # -- statuses and export ----------------------------------------------------------------
    def mark(self, status: str) -> Case | None:
        """Record ``status`` for the open case under the annotator's name."""
        if self.worklist is None or self.current is None:
            self._say("Open a case first.")
            return None
        try:
            case = self.worklist.set_status(self.current, status, user=self.user)
        except CasesError as exc:
            self._fail(str(exc))
            return None
        self.current = case
        self.refresh()
        self._say(f"Case {case.id}: {case.status} ({case.user}).")
        self.case_changed.emit(case)
        return case

    def export(self) -> None:
        """Export every finished case as DICOM-SEG in a thread worker."""
        from napari.qt.threading import create_worker

        if self.worklist is None or self.busy:
            return
        wl = self.worklist

        def done(results: Any) -> None:
            ok = [r for r in results if r.path is not None]
            bad = [f"{r.case}: {r.error}" for r in results if r.error]
            where = wl.workdir / "exports"
            text = f"Exported {len(ok)} of {len(results)} finished cases to {where}"
            if bad:
                self._fail(f"{text}; failed: {'; '.join(bad)}")
            else:
                self._say(text + ".")

        def failed(exc: BaseException) -> None:
            self._fail(f"Export failed: {exc}")

        def finished() -> None:
            self._worker = None
            self._enable()

        worker = create_worker(export_finished, wl, overwrite=True, _start_thread=False)
        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self._worker = worker
        self._enable()
        self._say("Exporting finished cases …")
        worker.start()
