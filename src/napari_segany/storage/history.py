"""Undo, redo, recovery and the size of the history of a labels store.

The rules
---------
* Undo reverts this writer's last operation pixel-wise (:func:`~.journal.revert_pixels`):
  a pixel goes back to what it was before the operation only if it still holds what the
  operation left; pixels changed since (by a later operation, another writer or a napari
  edit) stay, and the result says how many. Registry changes (class names, deleted,
  merged or renamed objects) go back the same way: an entry returns to its previous value
  if it is still as the operation left it.
* An undo is itself an operation; redo undoes that undo, so it re-applies exactly the
  pixels the undo reverted. A new operation clears what can be redone.
* "This writer" is the open store; writers that have ended (closed, crashed, another
  session that was closed) hand their history on, so the history survives closing and
  reopening a store. Operations of writers that are still open are theirs to undo.
* Operations that changed nothing are not undo steps. The oldest operations' journals are
  dropped beyond ``store.history_ops`` operations or ``store.history_bytes`` bytes of old
  chunks; those operations can no longer be undone.
* When a store is opened for writing, operations of writers that died before finishing
  them are recovered: a short one is rolled back; a long one is kept as interrupted.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .journal import revert_pixels
from .lock import writer_alive
from .log import OpRecord

__all__ = ["UndoResult", "undo", "redo", "revert", "recover", "needs_recovery", "expire",
           "undo_stacks"]


def _plane_text(planes: list[tuple[int, ...]]) -> str:
    if not planes:
        return ""
    if len(planes) == 1:
        return f"plane {planes[0] or '(2D)'}"
    if all(len(p) == 1 for p in planes):
        return f"planes {min(p[0] for p in planes)}–{max(p[0] for p in planes)}"
    return f"{len(planes)} planes"


@dataclass
class UndoResult:
    """What :func:`undo` or :func:`redo` did.

    Attributes
    ----------
    action : {"undo", "redo"}
    op : OpRecord
        The operation undone (for a redo: the operation re-applied).
    by : str
        The id of the undo or redo operation itself.
    reverted, kept : int
        Pixels changed back, and pixels left as they were because something else changed
        them since.
    planes : list of plane keys
        Planes whose pixels changed.
    """

    action: str
    op: OpRecord
    by: str
    reverted: int
    kept: int
    planes: list[tuple[int, ...]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return True

    @property
    def message(self) -> str:
        verb = "Undid" if self.action == "undo" else "Redid"
        text = f"{verb} {self.op.what or self.op.kind}"
        if self.kept:
            text += (f"; {self.kept} pixel(s) changed since by other edits were left as they "
                     "are")
        return text + "."


def _mine(store: Any, st: Any) -> set[str]:
    folder = store.path / ".segany" / "writers"
    mine = {store.writer_id}
    for w in st.writers:
        if w != store.writer_id and not writer_alive(folder, w):
            mine.add(w)
    return mine


def undo_stacks(store: Any) -> tuple[list[str], list[str]]:
    """``(undo stack, redo stack)`` of operation ids for this writer, newest last."""
    st = store._state()
    mine = _mine(store, st)
    undos: list[str] = []
    redos: list[str] = []
    for oid in st.order:
        op = st.ops[oid]
        if op.writer not in mine or op.status not in ("done", "interrupted"):
            continue
        if op.kind == "undo":
            if op.target in undos:
                undos.remove(op.target)
                redos.append(op.id)
        elif op.kind == "redo":
            if op.target in redos:
                redos.remove(op.target)
                undos.append(op.id)
        elif op.chunks or op.objects:
            undos.append(op.id)
            redos.clear()
    return ([i for i in undos if not st.ops[i].expired],
            [i for i in redos if not st.ops[i].expired])


def _after(store: Any, st: Any, x: OpRecord, chunk: tuple[int, ...]) -> np.ndarray:
    """The chunk as operation ``x`` left it."""
    nxt = st.next_after(x.id, chunk)
    if nxt is not None and store.journal.has(nxt, chunk, "b"):
        return store.journal.image(nxt, chunk, "b")  # nothing wrote the chunk in between
    if nxt is None and x.status == "open":
        return store.journal.current(chunk)  # it died after its last write
    return store.journal.image(x.id, chunk, "a")


def revert(store: Any, x: OpRecord, *, into: Any) -> tuple[int, int, list[tuple[int, ...]]]:
    """Revert operation ``x`` pixel-wise; returns ``(reverted, kept, planes)``.

    With ``into`` (an undo or redo :class:`~.labels.Operation`) the writes are journaled
    as that operation; without (rolling back ``x`` itself) they are written directly.
    """
    reverted = kept = 0
    planes: list[tuple[int, ...]] = []
    for chunk in dict.fromkeys(x.chunks):
        with store._lock.hold(f"reverting {x.what}"):
            st = store._state()
            before = store.journal.image(x.id, chunk, "b")
            after = _after(store, st, x, chunk)
            current = store.journal.current(chunk)
            new, n, k = revert_pixels(current, before, after)
            reverted, kept = reverted + n, kept + k
            if not n:
                continue
            key, (ys, xs) = store.layout.region(chunk)
            store._write_chunk(into, chunk, key + (ys, xs), new, current)
            if into is not None:
                into.pixels += n
                if not into.planes or into.planes[-1] != key:
                    into.planes.append(key)
            else:
                store.journal.keep(x.id, chunk, "a")
            if not planes or planes[-1] != key:
                planes.append(key)
    with store._lock.hold(f"reverting {x.what}"):
        st = store._state()
        recs = []
        for rec in reversed(x.objects):
            oid = int(rec["id"])
            if st.objects.get(oid) == rec.get("info"):  # still as x left it
                recs.append({"t": "obj", "op": into.id if into is not None else None, "id": oid,
                             "info": rec.get("prev"), "prev": rec.get("info")})
        if recs:
            store._emit(into, *recs)
    return reverted, kept, planes


def _original(st: Any, x: OpRecord) -> OpRecord:
    """The operation a redo re-applied (a redo of a redo of ... of X names X)."""
    seen = set()
    while x.kind in ("redo", "undo") and x.target in st.ops and x.id not in seen:
        seen.add(x.id)
        x = st.ops[x.target]
        if x.kind == "undo" and x.target in st.ops:
            x = st.ops[x.target]
    return x


def _describe(store: Any, op: Any, x: OpRecord, planes: list[tuple[int, ...]]) -> None:
    where = _plane_text(planes)
    op.what = f"{op.kind} of {x.what}" + (f" ({where})" if where and where not in x.what else "")


def undo(store: Any) -> UndoResult | None:
    """Undo this writer's last operation; None when there is nothing to undo."""
    store._check_writable()
    with store._lock.hold("undo"):
        undos, _ = undo_stacks(store)
        if not undos:
            return None
        st = store._state()
        x = st.ops[undos[-1]]
        shown = _original(st, x)
    with store.operation("undo", f"undo of {shown.what}", target=x.id) as u:
        n, k, planes = revert(store, x, into=u)
        _describe(store, u, shown, planes)
    return UndoResult("undo", shown, u.id, n, k, planes)


def redo(store: Any) -> UndoResult | None:
    """Re-apply what this writer's last undo reverted; None when there is nothing to redo."""
    store._check_writable()
    with store._lock.hold("redo"):
        _, redos = undo_stacks(store)
        if not redos:
            return None
        st = store._state()
        u = st.ops[redos[-1]]
        x = _original(st, st.ops.get(u.target or "") or u)
    with store.operation("redo", f"redo of {x.what}", target=u.id) as r:
        n, k, planes = revert(store, u, into=r)
        _describe(store, r, x, planes)
    return UndoResult("redo", x, r.id, n, k, planes)


def needs_recovery(store: Any) -> bool:
    """Whether opening ``store`` for writing has anything to recover (reads only)."""
    if store.layout.partial_files():
        return True
    st = store._state()
    folder = store.path / ".segany" / "writers"
    return any(op.status == "open" and not writer_alive(folder, op.writer)
               for op in st.ops.values())


def recover(store: Any) -> list[OpRecord]:
    """Finish what writers that died left open (call under the store's lock at open).

    Leftover temporary chunk files are removed; a short open operation is rolled back
    pixel-wise, a long one is ended as ``interrupted`` at its last plane. Returns the
    operations recovered.
    """
    for f in store.layout.partial_files():
        with contextlib.suppress(OSError):
            f.unlink()
    st = store._state()
    folder = store.path / ".segany" / "writers"
    done: list[OpRecord] = []
    for oid in list(st.order):
        x = st.ops[oid]
        if x.status != "open" or x.writer == store.writer_id or writer_alive(folder, x.writer):
            continue
        if x.short:
            revert(store, x, into=None)
            store._log.append({"t": "end", "op": x.id, "status": "rolled back",
                               "what": x.what, "recovered": True})
        else:
            at = list(x.chunks[-1][:-2]) if x.chunks else None
            store._log.append({"t": "end", "op": x.id, "status": "interrupted", "at": at,
                               "what": f"{x.what} (interrupted at plane {at})",
                               "recovered": True})
        done.append(x)
    for w in list(st.writers):  # the marks of writers that are gone
        if w != store.writer_id and (folder / w).exists() and not writer_alive(folder, w):
            with contextlib.suppress(OSError):
                (folder / w).unlink()
    return done


def expire(store: Any) -> list[str]:
    """Drop the journals of the oldest operations beyond the history limits (under lock).

    ``store.history_ops`` counts undo steps (undo and redo operations ride along with the
    operation they belong to); ``store.history_bytes`` bounds the old chunk data kept.
    """
    st = store._state()
    live = [st.ops[i] for i in st.order
            if st.ops[i].finished and not st.ops[i].expired and st.ops[i].chunks]
    steps = [op for op in live if op.kind not in ("undo", "redo")]
    keep_from = 0
    if len(steps) > max(1, int(store.history_ops)):
        oldest_kept = steps[-max(1, int(store.history_ops))]
        keep_from = live.index(oldest_kept)
    held = store.journal.held_bytes()
    total = sum(held.get(op.id, 0) for op in live[keep_from:])
    while keep_from < len(live) - 1 and total > int(store.history_bytes):
        total -= held.get(live[keep_from].id, 0)
        keep_from += 1
    drop = [op.id for op in live[:keep_from]]
    for oid in drop:
        store.journal.drop(oid)
    if drop:
        store._log.append({"t": "expire", "ops": drop})
    return drop
