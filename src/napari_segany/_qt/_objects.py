"""The "Objects" group: the committed objects of the labels store at a glance.

A table of id, class, planes and pixels, kept up to date from the store's log (its pixel
counts: no plane is read, however large the volume). Selecting a row picks that object
and shows its middle plane; the class cell can be edited; *Delete* removes the selected
objects and *Merge* relabels them as the first one, each as one operation (undo reverts
it).
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .context import Context
from .panels import Section, row

__all__ = ["ObjectsPanel", "MAX_ROWS"]

#: Rows shown at most (a store from segment everything can hold thousands of objects).
MAX_ROWS = 2000
_COLUMNS = ("id", "class", "planes", "pixels")


class ObjectsPanel:
    """The objects table and its buttons, in a folding section."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        content = QWidget()
        lay = QVBoxLayout(content)
        lay.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setMaximumHeight(180)
        self.table.setToolTip("Select: pick the object and show it; double-click 'class' to "
                              "rename")
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.delete_btn = QPushButton("Delete")
        self.delete_btn.setToolTip("Remove the selected objects from every plane (undo: "
                                   "Ctrl+Z)")
        self.merge_btn = QPushButton("Merge")
        self.merge_btn.setToolTip("Relabel the selected objects as the first selected one")
        lay.addWidget(self.table)
        lay.addWidget(self.note)
        lay.addWidget(row(self.delete_btn, self.merge_btn))
        self.section = Section("Objects", content, open=True)
        self.buttons = (self.delete_btn, self.merge_btn)
        self._filling = False
        self.table.itemSelectionChanged.connect(self._on_selected)
        self.table.itemChanged.connect(self._on_edited)
        self.delete_btn.clicked.connect(self.delete_selected)
        self.merge_btn.clicked.connect(self.merge_selected)
        ctx.store_listeners.append(self.refresh)

    def refresh(self) -> None:
        """Fill the table from the store's object table."""
        ctx = self.ctx
        rows = []
        if ctx.session is not None and ctx.session.labels is not None:
            rows = [r for r in ctx.session.labels.object_table() if r.pixels]
        self._filling = True
        self.table.setRowCount(min(len(rows), MAX_ROWS))
        for n, r in enumerate(rows[:MAX_ROWS]):
            lead = bool(r.planes and r.planes[0])
            values = (r.id, r.class_name or "", len(r.planes) if lead else "2D", r.pixels)
            for c, v in enumerate(values):
                item = QTableWidgetItem(str(v))
                if c != 1:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                item.setData(Qt.ItemDataRole.UserRole, (r.id, r.planes))
                self.table.setItem(n, c, item)
        self._filling = False
        self.note.setText(f"{len(rows)} objects; the first {MAX_ROWS} are listed."
                          if len(rows) > MAX_ROWS else
                          "" if rows else "No objects committed yet.")

    def selected(self) -> list[int]:
        ids = []
        for index in self.table.selectionModel().selectedRows():
            item = self.table.item(index.row(), 0)
            ids.append(item.data(Qt.ItemDataRole.UserRole)[0])
        return ids

    def _on_selected(self) -> None:
        items = self.table.selectedItems()
        if not items or self.ctx.layers is None:
            return
        oid, planes = items[0].data(Qt.ItemDataRole.UserRole)
        self.ctx.ui.object_spin.setValue(oid)
        if planes and planes[0]:
            self.ctx.layers.go_to(tuple(planes[len(planes) // 2]))

    def _on_edited(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 1 or self.ctx.session is None:
            return
        oid = item.data(Qt.ItemDataRole.UserRole)[0]
        name = item.text().strip()
        try:
            self.ctx.session.labels.set_object(oid, class_name=name or None)
        except Exception as exc:
            return self.ctx.fail(exc, f"Renaming object {oid}")
        if self.ctx.ui.object_spin.value() == oid:
            self.ctx.ui.class_edit.setText(name)
        self.ctx.status(f"Object {oid} is now {name!r}." if name else
                        f"Object {oid} has no class now.")

    def delete_selected(self) -> None:
        ids = self.selected()
        if not ids:
            return self.ctx.warn("Select objects in the table first.")
        if not self.ctx.ready("Delete"):
            return
        store = self.ctx.session.labels
        try:
            with store.operation("delete", f"deletion of objects {ids}") as op:
                for i in ids:  # one operation for all (nested operations join it)
                    store.delete_object(i)
            pixels = op.pixels
        except Exception as exc:
            return self.ctx.fail(exc, "Delete")
        self.ctx.store_changed()
        self.ctx.status(f"Deleted objects {ids} ({pixels} pixels). Undo: Ctrl+Z.")

    def merge_selected(self) -> None:
        ids = self.selected()
        if len(ids) < 2:
            return self.ctx.warn("Select two or more objects to merge (Ctrl-click).")
        if not self.ctx.ready("Merge"):
            return
        into = ids[0]
        try:
            pixels = self.ctx.session.labels.merge_objects(ids[1:], into=into)
        except Exception as exc:
            return self.ctx.fail(exc, "Merge")
        self.ctx.store_changed()
        self.ctx.status(f"Merged objects {ids[1:]} into {into} ({pixels} pixels). Undo: "
                        "Ctrl+Z.")
