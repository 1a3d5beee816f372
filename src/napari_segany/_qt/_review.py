"""The "Review" group: automatic results staged before they become annotations.

With *review* ticked, segment everything, boxes to masks and propagation write into the
session's review area (:class:`napari_segany.session.ReviewArea`, a zarr store beside the
labels store: a crash does not lose a finished run awaiting review), shown as the
``<image> review`` layer in outlines of their own colours. The list shows the staged
objects; selecting one jumps to it. *Accept* moves the chosen objects (or all) into the
labels store as one operation (one undo step), *Discard* drops them. The review layer is
not editable: fix pixels after accepting, where every edit is an operation that undo
reverts.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
)

from .context import Context
from .panels import row
from .shortcuts import bind_on_layer

__all__ = ["Review"]


class Review:
    """The review group's widgets and what its buttons do."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.box = QGroupBox("Review (automatic results)")
        lay = QVBoxLayout(self.box)
        self.stage_check = QCheckBox("stage automatic results for review before they are "
                                     "annotated")
        self.stage_check.setChecked(True)
        self.stage_check.setToolTip("Propagation, segment everything and boxes to masks write "
                                    "into the review layer; Accept moves them into the labels")
        self.summary = QLabel("Nothing staged.")
        self.summary.setWordWrap(True)
        self.list = QListWidget()
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setMaximumHeight(130)
        self.list.setToolTip("Staged objects: select to see them (Ctrl/Shift: several)")
        self.accept_all_btn = QPushButton("Accept all")
        self.accept_btn = QPushButton("Accept selected")
        self.discard_btn = QPushButton("Discard selected")
        self.discard_all_btn = QPushButton("Discard all")
        for w in (self.stage_check, self.summary, self.list,
                  row(self.accept_all_btn, self.accept_btn),
                  row(self.discard_btn, self.discard_all_btn)):
            lay.addWidget(w)
        self.buttons = (self.accept_all_btn, self.accept_btn, self.discard_btn,
                        self.discard_all_btn)
        self.accept_all_btn.clicked.connect(self.accept_all)
        self.accept_btn.clicked.connect(lambda: self.accept(self.selected()))
        self.discard_btn.clicked.connect(lambda: self.discard(self.selected()))
        self.discard_all_btn.clicked.connect(lambda: self.discard(None))
        self.list.itemSelectionChanged.connect(self._on_selected)
        ctx.store_listeners.append(self.refresh)
        self.refresh()

    def staging(self) -> bool:
        """Whether automatic results go to the review area now."""
        return self.stage_check.isChecked()

    def show_layer(self) -> None:
        """Show the review area as the staging layer (creating the area when needed)."""
        ctx = self.ctx
        if ctx.session is None or ctx.layers is None or ctx.session.review is None:
            return
        store = ctx.session.review.store()
        layer = ctx.layers.show_review(store.as_array())
        layer.editable = False
        _bind_history(ctx, layer)

    def refresh(self) -> None:
        """List the staged objects (from the review area's log; no plane is read)."""
        ctx = self.ctx
        self.list.blockSignals(True)
        self.list.clear()
        rows = []
        if ctx.session is not None and ctx.session.review is not None:
            try:
                rows = ctx.session.review.objects()
            except Exception as exc:  # a damaged review area: say so, keep the widget going
                self.summary.setText(f"The review area cannot be read: {exc}")
                rows = []
        for r in rows:
            cls = r.info.get("class_name")
            span = (f"plane {_plane(r.planes[0])}" if len(r.planes) == 1 else
                    f"{len(r.planes)} planes") if r.planes and r.planes[0] else "2D"
            item = QListWidgetItem(f"{r.id}{f' ({cls})' if cls else ''}: {span}, "
                                   f"{r.pixels} px")
            item.setData(Qt.ItemDataRole.UserRole, (r.id, r.planes))
            self.list.addItem(item)
        self.list.blockSignals(False)
        if rows:
            self.summary.setText(f"{len(rows)} object(s) staged: accept them into the labels "
                                 "(one undo step) or discard them.")
        elif not self.summary.text().startswith("The review area cannot"):
            self.summary.setText("Nothing staged.")
        for b in self.buttons:
            b.setEnabled(bool(rows) and not ctx.jobs.busy)

    def selected(self) -> list[int]:
        return [it.data(Qt.ItemDataRole.UserRole)[0] for it in self.list.selectedItems()]

    def _on_selected(self) -> None:
        items = self.list.selectedItems()
        if not items or self.ctx.layers is None:
            return
        oid, planes = items[-1].data(Qt.ItemDataRole.UserRole)
        if planes and planes[0]:
            self.ctx.layers.go_to(tuple(planes[len(planes) // 2]))
        layer = self.ctx.layers.review
        if layer is not None:
            layer.selected_label = oid
            layer.show_selected_label = len(items) == 1

    def accept_all(self) -> None:
        self.accept(None)

    def accept(self, ids: list[int] | None) -> None:
        ctx = self.ctx
        if not ctx.ready("Accept"):
            return
        if ids is not None and not ids:
            return ctx.warn("Select staged objects in the list first (or press Accept all).")
        try:
            result = ctx.session.accept(ids)
        except Exception as exc:
            return ctx.fail(exc, "Accept")
        ctx.store_changed()
        ctx.status(result.message + (" Undo: Ctrl+Z." if result else ""))

    def discard(self, ids: list[int] | None) -> None:
        ctx = self.ctx
        if not ctx.ready("Discard"):
            return
        if ids is not None and not ids:
            return ctx.warn("Select staged objects in the list first (or press Discard all).")
        try:
            n = ctx.session.discard(ids)
        except Exception as exc:
            return ctx.fail(exc, "Discard")
        ctx.store_changed()
        ctx.status(f"Discarded {n} staged object(s)." if n else "Nothing to discard.")


def _plane(key: Any) -> str:
    return str(key[0]) if len(key) == 1 else str(tuple(key))


def _bind_history(ctx: Context, layer: Any) -> None:
    """Ctrl+Z on the review layer: the session's undo (its own history is in-memory only)."""
    bind_on_layer(layer, ("undo", "redo", "commit", "new_object", "accept_review"),
                  ctx.viewer)
