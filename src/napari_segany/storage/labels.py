"""Labels stores: uint32 instance labels in a zarr (v3) array on disk, and their history.

Layout (format 2; see ``docs/formats.md``)
------------------------------------------
* ``zarr.json`` and ``c/...``: the array, shaped like the image without channels, e.g.
  ``(z, y, x)`` or ``(t, z, y, x)``, chunked by plane (planes larger than 2048 pixels a side
  in 2048 x 2048 tiles). Any zarr v3 reader opens it. ``zarr.json`` is written once, at
  creation: its attributes name the format and the chunk layout.
* ``.segany/log.jsonl``: the append-only event log (:mod:`.log`): the object registry
  (ids, class names), the planes written, the provenance of every run, and every
  operation that changed pixels or objects.
* ``.segany/journal/<operation>/``: the before- and after-images of the chunks each recent
  operation changed (:mod:`.journal`), to undo it pixel-wise.
* ``.segany/lock`` and ``.segany/writers/``: the write lock and the marks of open writers
  (:mod:`.lock`).

Guarantees
----------
* Every write is part of an operation (a commit, a propagation, a brush stroke, ...):
  :meth:`LabelsStore.operation`. Writes outside one are an operation each.
* A chunk is replaced whole (zarr writes a temporary file and renames it), under the
  store's write lock, after its before-image is in the journal: a crash or a cancel leaves
  every chunk either as it was or as written, and two processes writing one store
  interleave plane by plane without losing each other's work.
* An operation that did not finish because its process died is recovered when the store is
  next opened for writing: a short one (a commit, a stroke, an undo) is rolled back; a long
  one (a propagation, segment everything, boxes) is kept as interrupted, its planes intact
  and undoable as one operation.
* Undo reverts one operation pixel-wise: only pixels that still hold its after-value go
  back; redo re-applies exactly what undo reverted.

Object ids are positive integers up to 2**32 - 1; 0 is background. Overlap policy when an
object is painted (:meth:`LabelsStore.paint`): ``"keep"`` (default) paints only pixels that
are background or already belong to that object, so committed objects are never
overwritten; ``"replace"`` lets the new mask win.

Crash safety covers a process that dies (a kill, a crash, a closed laptop lid that ends the
process). It does not cover a power loss: neither zarr nor this module calls ``fsync``, so
the operating system may lose writes it had not yet put on disk.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import MAX_OBJECT_ID, check_plane, check_plane_pixels, iter_keys
from .._version import __version__
from ..errors import LabelsStoreError, LabelsStoreIOError
from . import history
from .array import StoreArray, plane_updates
from .chunks import ChunkLayout, default_chunks
from .journal import Journal
from .lock import StoreLock, WriterMark, holder_info
from .log import EventLog, LogState, OpRecord

__all__ = ["LabelsStore", "LabelsStoreError", "LabelsStoreIOError", "Operation", "ATTRS_KEY",
           "FORMAT_VERSION", "OVERLAP_POLICIES", "MAX_ID", "SHORT_KINDS", "is_labels_store",
           "check_object_id", "ObjectRow", "pixel_delta"]

ATTRS_KEY = "napari_segany"
FORMAT_VERSION = 2
OVERLAP_POLICIES = ("keep", "replace")
MAX_ID = MAX_OBJECT_ID
#: Operations rolled back when their process died before they finished.
SHORT_KINDS = frozenset({"commit", "edit", "delete", "rename", "merge", "objects", "undo",
                         "redo"})
META = ".segany"
#: Undo history kept by default: operations, and bytes of journal (old chunk files).
HISTORY_OPS = 200
HISTORY_BYTES = 2 << 30
#: Bytes of the plane written last kept in memory for its next write (a 4096 x 4096 plane).
BLOCK_BYTES = 64 << 20


def pixel_delta(old: np.ndarray, new: np.ndarray, changed: np.ndarray | None = None
                ) -> dict[str, int]:
    """Pixels gained (+) and lost (-) per object id between two blocks (0 left out);
    ``changed`` is ``old != new`` where the caller has it."""
    if changed is None:
        changed = old != new
    if not changed.any():
        return {}
    out: dict[str, int] = {}
    for values, sign in ((old[changed], -1), (new[changed], 1)):
        ids, counts = np.unique(values, return_counts=True)
        for i, c in zip(ids.tolist(), counts.tolist(), strict=True):
            if i:
                out[str(i)] = out.get(str(i), 0) + sign * c
    return {k: v for k, v in out.items() if v}


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)``: the bounding box of a 2D boolean mask (None: empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[y0:y1].any(axis=0))
    return y0, y1, int(cols[0]), int(cols[-1]) + 1


def _union(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None
           ) -> tuple[int, int, int, int] | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


@dataclass
class _Block:
    """A chunk as this store last wrote it (see :meth:`LabelsStore._current`)."""

    op: str  # the operation whose journal links the file as its after-image
    stat: tuple[int, int, int, int]  # (device, inode, size, mtime_ns) of the chunk file
    data: np.ndarray


def _file_id(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _check_zarr() -> None:
    """The journal keeps old chunk files as hard links: zarr must replace chunks through a
    new file (3.1.3 and later), never write them in place."""
    import zarr

    version = tuple(int(p) for p in zarr.__version__.split(".")[:3] if p.isdigit())
    if version < (3, 1, 3):
        raise LabelsStoreError(f"zarr {zarr.__version__} writes chunks in place; writing a "
                               "labels store needs zarr>=3.1.3 (pip install 'zarr>=3.1.3,<4')")


def is_labels_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr array written by napari-segany (reads only its metadata)."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and ATTRS_KEY in attrs


def check_object_id(obj_id: Any) -> int:
    try:
        oid = int(obj_id)
    except (TypeError, ValueError):
        raise LabelsStoreError(f"object ids are integers, got {obj_id!r}") from None
    if isinstance(obj_id, bool) or oid != obj_id or not 1 <= oid <= MAX_ID:
        raise LabelsStoreError(f"object ids are integers from 1 to {MAX_ID} (uint32), got "
                               f"{obj_id!r}")
    return oid


@dataclass
class ObjectRow:
    """One object of :meth:`LabelsStore.object_table`."""

    id: int
    info: dict[str, Any]
    planes: list[tuple[int, ...]]
    pixels: int

    @property
    def class_name(self) -> str | None:
        return self.info.get("class_name")


class Operation:
    """One operation on a store while it runs (see :meth:`LabelsStore.operation`).

    Attributes
    ----------
    id, kind : str
    what : str
        How the history names it ("commit of object 3 on plane (5,)"); may be set while the
        operation runs (e.g. once the planes a propagation reached are known).
    short : bool
        Rolled back (rather than kept as interrupted) if it does not finish.
    planes : list of plane keys
        Planes whose pixels it changed, in order.
    pixels : int
        Pixels it changed.
    """

    def __init__(self, store: LabelsStore, kind: str, what: str, short: bool,
                 target: str | None) -> None:
        self.store, self.kind, self.what, self.short, self.target = store, kind, what, short, target
        self.id = uuid.uuid4().hex[:12]
        self.touched: set[tuple[int, ...]] = set()
        self.planes: list[tuple[int, ...]] = []
        self.pixels = 0
        self.status = "open"
        self.begun = False  # its begin record is written at its first change

    def __repr__(self) -> str:
        return f"<Operation {self.id} {self.kind}: {self.what}>"


class LabelsStore:
    """A zarr-backed uint32 labels volume, written operation by operation.

    Use :meth:`create`, :meth:`open` or :meth:`open_or_create` rather than the constructor.
    A store opened for writing registers itself as a writer until :meth:`close` (or until
    the object is garbage-collected, or the process ends).
    """

    def __init__(self, array: Any, path: Path, *, mode: str = "r+",
                 lock_timeout: float | None = None, on_wait: Callable[[str], Any] | None = None,
                 history_ops: int = HISTORY_OPS, history_bytes: int = HISTORY_BYTES) -> None:
        self.array = array
        self.path = Path(path)
        self.mode = mode
        self.history_ops, self.history_bytes = int(history_ops), int(history_bytes)
        meta = dict(array.attrs.get(ATTRS_KEY, {}))
        self.format = int(meta.get("format", 1))
        self._v1_attrs = meta if self.format < 2 else None
        chunks = tuple(int(c) for c in array.chunks)
        self.layout = ChunkLayout(self.path, self.shape, chunks,
                                  (self.path / "zarr.json").read_bytes())
        meta_dir = self.path / META
        self.journal = Journal(meta_dir / "journal", chunk_path=self.layout.path,
                               decode=self.layout.decode, block_shape=self.layout.block_shape)
        self._log = EventLog(meta_dir / "log.jsonl")
        self._lock = StoreLock(meta_dir / "lock", on_wait=on_wait, timeout=lock_timeout)
        self._local = threading.local()
        #: The chunks of the plane written last, as written (see :meth:`_current`).
        self._blocks: dict[tuple[int, ...], _Block] = {}
        self.writer_id: str | None = None
        self._mark: WriterMark | None = None
        self._closed = mode == "r"

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        shape: tuple[int, ...],
        *,
        overwrite: bool = False,
        provenance: dict[str, Any] | None = None,
        chunk_size: int | None = None,
        **options: Any,
    ) -> LabelsStore:
        """Create an empty store of ``shape`` (ndim >= 2; the last two axes are y, x).

        Parameters
        ----------
        overwrite : bool
            Replace an existing napari-segany labels store at ``path`` (anything else at
            ``path`` is refused, never deleted).
        provenance : dict, optional
            Fields of the first run's provenance.
        chunk_size : int, optional
            Side of the 2D chunk tiles (default 2048; planes up to that are one chunk).
        **options
            ``lock_timeout``, ``history_ops``, ``history_bytes`` (see :meth:`open`).
        """
        import zarr

        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise LabelsStoreError(f"labels shape must have >= 2 non-empty axes, got {shape}")
        path = Path(path)
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise LabelsStoreError(
                    f"{path} already exists; open it with LabelsStore.open(...) to continue, or "
                    "pass overwrite=True to replace it")
            if not is_labels_store(path):
                raise LabelsStoreError(
                    f"{path} exists and is not a napari-segany labels store; it is not replaced "
                    "(even with overwrite): choose another path")
        chunks = default_chunks(shape, chunk_size)
        meta = {"format": FORMAT_VERSION, "version": __version__, "chunks": list(chunks),
                "log": f"{META}/log.jsonl"}
        try:
            if path.exists():
                import shutil

                shutil.rmtree(path)
            arr = zarr.create_array(store=str(path), shape=shape, chunks=chunks, dtype="uint32",
                                    fill_value=0, zarr_format=3, attributes={ATTRS_KEY: meta})
        except OSError as exc:
            raise LabelsStoreIOError(exc.errno, f"could not create the labels store {path}: "
                                                f"{exc.strerror or exc}") from exc
        store = cls(arr, path, **options)
        store._start_writer(provenance or {})
        return store

    @classmethod
    def open(cls, path: str | os.PathLike, *, mode: str = "r+", **options: Any) -> LabelsStore:
        """Open an existing store (``mode="r"`` for read-only).

        Parameters
        ----------
        mode : {"r+", "r"}
        lock_timeout : float, optional
            Seconds a write waits for another writer before :class:`TimeoutError`
            (default: as long as it takes, saying whom it waits for).
        history_ops, history_bytes : int
            Undo history kept: the oldest operations' journals are dropped beyond this
            many operations (200) or bytes of old chunks (2 GiB).

        Opening for writing recovers what a writer that died left unfinished, and turns a
        store of format 1 (everything in ``zarr.json``) into format 2.
        """
        import zarr

        path = Path(path)
        if mode not in ("r", "r+"):
            raise LabelsStoreError(f"mode must be 'r' or 'r+', got {mode!r}")
        if not path.exists():
            raise LabelsStoreError(f"no labels store at {path}")
        try:
            arr = zarr.open_array(str(path), mode=mode)
        except Exception as exc:
            raise LabelsStoreError(f"{path} is not a zarr array: {exc}") from exc
        if arr.dtype != np.uint32 or arr.ndim < 2:
            raise LabelsStoreError(
                f"{path} holds a {arr.ndim}D {arr.dtype} array; a labels store is uint32, ndim >= 2"
            )
        if ATTRS_KEY not in arr.attrs:
            raise LabelsStoreError(
                f"{path} was not written by napari-segany (no {ATTRS_KEY!r} attributes)"
            )
        fmt = int(dict(arr.attrs[ATTRS_KEY]).get("format", 1))
        if fmt > FORMAT_VERSION:
            raise LabelsStoreError(f"{path} was written by a newer napari-segany (format {fmt}); "
                                   "update napari-segany to open it")
        store = cls(arr, path, mode=mode, **options)
        if mode == "r+":
            store._start_writer({})
        return store

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, shape: tuple[int, ...],
                       **kw: Any) -> LabelsStore:
        """Reopen ``path`` if it exists (its shape must equal ``shape``), else create it."""
        if Path(path).exists():
            options = {k: v for k, v in kw.items() if k not in ("provenance", "chunk_size")}
            store = cls.open(path, **options)
            if store.shape != tuple(shape):
                store.close()
                raise LabelsStoreError(
                    f"{path} holds labels of shape {store.shape}, but the image has shape "
                    f"{tuple(shape)}; choose another output path"
                )
            return store
        return cls.create(path, shape, **kw)

    def _start_writer(self, provenance: dict[str, Any]) -> None:
        """Open for writing: migrate format 1 and recover what dead writers left open.

        Opening changes nothing on disk unless there is something to migrate or recover:
        the writer registers itself (its mark, a ``writer`` record) at its first write.
        """
        _check_zarr()
        self.writer_id = uuid.uuid4().hex[:12]
        self._closed = False
        try:
            if self.format < 2 or provenance or history.needs_recovery(self):
                with self._lock.hold("opening"):
                    if self.format < 2:
                        self._migrate()
                    self._register()
                    if provenance:
                        self._log.append({"t": "run", "w": self.writer_id, "fields": provenance})
                    history.recover(self)
        except OSError as exc:
            self.close()
            raise LabelsStoreIOError(
                exc.errno, f"could not open the labels store {self.path} for writing: "
                           f"{exc.strerror or exc} (check write permission, or open it with "
                           "mode='r' to read)") from exc

    def _register(self) -> None:
        """Become a writer (call under the lock): the mark, then the ``writer`` record."""
        if self._mark is not None:
            return
        meta_dir = self.path / META
        (meta_dir / "journal").mkdir(parents=True, exist_ok=True)
        self._mark = WriterMark(meta_dir / "writers", self.writer_id, "labels store")
        fresh = not self._log.path.exists() or not self._log.path.stat().st_size
        self._log.append({"t": "writer", "w": self.writer_id, "version": __version__,
                          **{k: v for k, v in holder_info().items() if k != "what"}})
        if fresh:  # nothing written before: the px records count every pixel
            self._log.append({"t": "counts", "complete": True})

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """Hold the write lock, as a registered writer, with the log read up to now."""
        with self._lock.hold(what):
            self._register()
            yield

    def _migrate(self) -> None:
        """Format 1 -> 2: objects, planes and provenance move from zarr.json to the log."""
        meta = dict(self._v1_attrs or {})
        log = self._log.path
        if not log.exists():  # written whole, then renamed: a crash here leaves format 1
            fields = {k: v for k, v in meta.items()
                      if k not in ("objects", "planes", "format", "version")}
            recs = [{"t": "writer", "w": "format-1", "version": meta.get("version")}]
            if fields:
                recs.append({"t": "run", "w": "format-1", "fields": fields})
            recs += [{"t": "obj", "id": int(k), "info": v, "prev": None}
                     for k, v in sorted(meta.get("objects", {}).items(), key=lambda kv: int(kv[0]))]
            if meta.get("planes"):
                recs.append({"t": "planes", "keys": meta["planes"]})
            log.parent.mkdir(parents=True, exist_ok=True)
            tmp = log.with_name(log.name + ".migrating")
            EventLog(tmp).append(*recs)
            os.replace(tmp, log)
        new = {"format": FORMAT_VERSION, "version": meta.get("version", __version__),
               "chunks": list(self.layout.chunks), "log": f"{META}/log.jsonl",
               "migrated_by": __version__}
        self.array.attrs[ATTRS_KEY] = new
        self.format, self._v1_attrs = FORMAT_VERSION, None
        self.layout = ChunkLayout(self.path, self.shape, self.layout.chunks,
                                  (self.path / "zarr.json").read_bytes())

    def close(self) -> None:
        """Stop being a writer of this store (unfinished operations are then recovered by
        the next writer). Reading still works."""
        self._closed = True
        self._blocks.clear()
        if self._mark is not None:
            self._mark.close()
            self._mark = None

    def __enter__(self) -> LabelsStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- properties ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    @property
    def chunks(self) -> tuple[int, ...]:
        """The chunk shape ``(1, ..., 1, ch, cw)``."""
        return self.layout.chunks

    def _state(self) -> LogState:
        return self._log.refresh()

    @property
    def provenance(self) -> dict[str, Any]:
        """The store's provenance (a copy: editing it does not change the store).

        ``format``, ``version`` (of the package that created the store), ``chunks``, the
        latest value of every provenance field any run recorded (``model``, ``source``,
        ``prompts``, ...), ``objects`` (id -> info, e.g. ``class_name``), ``planes`` (the
        planes written) and ``runs`` (every run: writer, time, package version, user,
        host and the fields it recorded, in order).
        """
        if self._v1_attrs is not None:
            return copy.deepcopy(self._v1_attrs)
        st = self._state()
        out = {"format": self.format, "version": dict(self.array.attrs[ATTRS_KEY]).get("version"),
               "chunks": list(self.chunks)}
        out.update(copy.deepcopy(st.fields))
        out["objects"] = {str(k): dict(v) for k, v in sorted(st.objects.items())}
        out["planes"] = sorted(list(p) for p in st.planes)
        out["runs"] = copy.deepcopy(st.runs)
        return out

    @property
    def objects(self) -> dict[int, dict[str, Any]]:
        """The object registry: id -> info (a copy)."""
        if self._v1_attrs is not None:
            return {int(k): dict(v) for k, v in self._v1_attrs.get("objects", {}).items()}
        return copy.deepcopy(self._state().objects)

    def _check_writable(self) -> None:
        if self.mode == "r" or getattr(self.array, "read_only", False):
            raise LabelsStoreError(
                f"{self.path} was opened read-only (mode='r'); reopen it with mode='r+' to write"
            )
        if self._closed:
            raise LabelsStoreError(f"{self.path} was closed for writing; open it again")

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Re-raise an OSError of the storage as a LabelsStoreIOError naming this store."""
        try:
            yield
        except (LabelsStoreIOError, TimeoutError):
            raise
        except OSError as exc:
            msg = (f"could not write {what} of the labels store {self.path}: "
                   f"{exc.strerror or exc} (check free disk space and write permission)")
            err = LabelsStoreIOError(msg) if exc.errno is None else LabelsStoreIOError(
                exc.errno, msg)
            raise err from exc

    # -- operations ---------------------------------------------------------------------------
    @property
    def current_operation(self) -> Operation | None:
        """The operation running in this thread, if any."""
        return getattr(self._local, "op", None)

    @contextlib.contextmanager
    def operation(self, kind: str, what: str = "", *, short: bool | None = None,
                  target: str | None = None) -> Iterator[Operation]:
        """Group writes into one operation (one undo step).

        Parameters
        ----------
        kind : str
            ``"commit"``, ``"propagate"``, ``"auto"``, ``"boxes"``, ``"edit"`` (a napari
            brush stroke or fill), ``"delete"``, ``"rename"``, ``"merge"``, ``"objects"``,
            ``"import"``, ``"undo"``, ``"redo"``.
        what : str
            How the history names it.
        short : bool, optional
            Roll it back if it does not finish (default: for the kinds in
            :data:`SHORT_KINDS`); a long operation is kept as interrupted instead.

        Nested calls in one thread join the outer operation. An exception inside rolls back
        a short operation and ends a long one as ``interrupted`` (its planes are kept).
        """
        current = self.current_operation
        if current is not None:
            yield current
            return
        self._check_writable()
        op = Operation(self, kind, what, kind in SHORT_KINDS if short is None else bool(short),
                       target)
        self._local.op = op
        try:
            yield op
        except BaseException:
            self._local.op = None
            self._abort(op)
            raise
        self._local.op = None
        self._end(op, "done")

    def _emit(self, op: Operation | None, *records: dict[str, Any]) -> None:
        """Append records of ``op`` (its begin record first, at its first change)."""
        with self._transaction(op.what if op is not None else "writing"):
            if op is not None and not op.begun:
                self._log.append({"t": "begin", "op": op.id, "w": self.writer_id,
                                  "kind": op.kind, "what": op.what, "short": op.short,
                                  "target": op.target})
                op.begun = True
            self._log.append(*records)

    def _end(self, op: Operation, status: str) -> None:
        op.status = status
        if not op.begun:
            return  # it changed nothing: no trace in the log
        with self._writing("the operation log"), self._lock.hold(op.what or op.kind):
            self._log.append({"t": "end", "op": op.id, "status": status, "what": op.what,
                              "pixels": op.pixels, "planes": len(op.planes),
                              "at": list(op.planes[-1]) if op.planes else None})
            history.expire(self)

    def _abort(self, op: Operation) -> None:
        """An exception inside ``op``: roll back a short one, keep a long one as interrupted."""
        try:
            if op.short and op.begun:
                with self._lock.hold(f"rolling back {op.what}"):
                    history.revert(self, self._state().ops[op.id], into=None)
                self._end(op, "rolled back")
            else:
                self._end(op, "rolled back" if op.short else "interrupted")
        except Exception:  # the store may be unwritable (the reason of the abort)
            with contextlib.suppress(Exception):
                self._log.append({"t": "end", "op": op.id, "status": "failed"})

    # -- objects ------------------------------------------------------------------------------
    def update_provenance(self, **fields: Any) -> None:
        """Record provenance fields of this writer's run (earlier runs are kept)."""
        self._check_writable()
        with self._writing("the provenance"), self._transaction("provenance"):
            self._log.append({"t": "run", "w": self.writer_id, "fields": fields})

    def record_written(self, counts: dict[tuple[int, ...], dict[str, int]],
                       **provenance: Any) -> None:
        """Record chunks written straight into the zarr array by other processes (a cluster
        run filling a new store, one task per chunk): the planes, each object's pixels per
        plane (``{plane: {str(id): pixels}}``) and provenance fields, in one append, so that
        a writer killed here records all or nothing. Not an operation: undoing such a run
        is removing the store it created."""
        self._check_writable()
        recs: list[dict[str, Any]] = [
            {"t": "planes", "op": None, "keys": [list(k) for k in sorted(counts)]},
            *({"t": "px", "op": None, "plane": list(k), "d": d}
              for k, d in sorted(counts.items()) if d)]
        if provenance:
            recs.append({"t": "run", "w": self.writer_id, "fields": provenance})
        with self._writing("the record of external writes"), \
                self._transaction("recording writes"):
            self._log.append(*recs)

    def set_object(self, obj_id: int, **info: Any) -> None:
        """Record metadata of one object (e.g. ``class_name="nucleus"``)."""
        self.set_objects({obj_id: info})

    def set_objects(self, infos: dict[int, dict[str, Any]]) -> None:
        """Record metadata of many objects; entries merge into what is recorded."""
        self._check_writable()
        checked = {check_object_id(k): dict(v) for k, v in infos.items()}
        with self._lock.local:  # not the file lock: other processes only ever append
            st = self._state()
            known = all(oid in st.objects and {**st.objects[oid], **info} == st.objects[oid]
                        for oid, info in checked.items())
        if known:
            # Already recorded (propagation calls this for every plane it writes): what the
            # log said a moment ago is a valid answer; a change by another writer since
            # is ordered after this call.
            return
        with self._writing("the object registry"), self._transaction("objects"):
            st = self._state()
            changes = {oid: {**st.objects.get(oid, {}), **info} for oid, info in checked.items()
                       if oid not in st.objects or {**st.objects[oid], **info} != st.objects[oid]}
            if not changes:
                return  # already recorded: propagation calls this for every plane it writes
            with self.operation("objects", f"objects {sorted(changes)}") as op:
                self._emit(op, *({"t": "obj", "op": op.id, "id": oid, "info": new,
                                  "prev": st.objects.get(oid)} for oid, new in changes.items()))

    def next_object_id(self) -> int:
        """One more than the largest id ever registered (ids are not reused)."""
        if self._v1_attrs is not None:
            return max((int(k) for k in self._v1_attrs.get("objects", {})), default=0) + 1
        st = self._state()
        return max(st.reserved, max(st.objects, default=0)) + 1

    def reserve_object_ids(self, n: int = 1, info: dict[str, Any] | None = None, *,
                           above: int = 0) -> list[int]:
        """Register ``n`` new object ids (all above ``above``) at once, safely with other
        writers; returns them."""
        self._check_writable()
        if int(n) < 0:
            raise LabelsStoreError(f"cannot reserve {n} object ids")
        with self._writing("the object registry"), self._transaction("allocating object ids"):
            start = max(self.next_object_id(), int(above) + 1)
            ids = list(range(start, start + int(n)))
            if ids and ids[-1] > MAX_ID:
                raise LabelsStoreError(f"the store has no free object ids left below {MAX_ID}")
            self._log.append(*({"t": "obj", "id": i, "info": dict(info or {}), "prev": None}
                               for i in ids))
        return ids

    def delete_object(self, obj_id: int) -> int:
        """Remove an object: its pixels on every plane and its registry entry (one
        operation); returns the number of pixels cleared."""
        oid = check_object_id(obj_id)
        with self.operation("delete", f"deletion of object {oid}") as op:
            for key in sorted(self._state().planes):
                self._apply(key, lambda cur: np.where(cur == oid, 0, cur).astype(np.uint32))
            self._registry(op, {oid: None})
        return op.pixels

    def merge_objects(self, ids: list[int], into: int) -> int:
        """Relabel objects ``ids`` as ``into`` on every plane (one operation; also a rename
        with one id). Registry entries merge into ``into``'s; returns pixels changed."""
        into = check_object_id(into)
        ids = [check_object_id(i) for i in ids if int(i) != into]
        kind = "merge" if len(ids) > 1 or into in self.objects else "rename"
        with self.operation(kind, f"{kind} of objects {ids} into {into}") as op:
            lut_ids = np.asarray(ids, np.uint32)
            for key in sorted(self._state().planes):
                self._apply(key, lambda cur: np.where(np.isin(cur, lut_ids), into, cur
                                                       ).astype(np.uint32))
            objs = self._state().objects
            merged: dict[str, Any] = {}
            for i in [*ids, into]:
                merged.update(objs.get(i, {}))
            self._registry(op, {**{i: None for i in ids}, into: merged})
        return op.pixels

    def _registry(self, op: Operation, entries: dict[int, dict[str, Any] | None]) -> None:
        with self._writing("the object registry"), self._transaction("objects"):
            st = self._state()
            self._emit(op, *({"t": "obj", "op": op.id, "id": oid, "info": info,
                              "prev": st.objects.get(oid)} for oid, info in entries.items()))

    # -- planes -------------------------------------------------------------------------------
    def _key(self, plane: tuple[int, ...] | int) -> tuple[int, ...]:
        return check_plane(plane, self.shape[:-2], error=LabelsStoreError,
                           what=f"the labels store {self.path} (shape {self.shape})")

    def read_plane(self, plane: tuple[int, ...] | int = ()) -> np.ndarray:
        """The ``(H, W)`` uint32 labels of one plane."""
        key = self._key(plane)
        check_plane_pixels(self.shape, f"the labels store {self.path}", error=LabelsStoreError,
                           itemsize=4)
        return np.asarray(self.array[key])

    def _checked(self, key: tuple[int, ...], labels: Any) -> np.ndarray:
        arr = np.asarray(labels)
        if arr.shape != self.plane_shape:
            raise LabelsStoreError(
                f"plane {key}: got labels of shape {arr.shape}, the store's planes are "
                f"{self.plane_shape}"
            )
        if arr.dtype.kind not in "biu":
            raise LabelsStoreError(
                f"plane {key}: labels must be non-negative integers, got dtype {arr.dtype}")
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > MAX_ID:
            raise LabelsStoreError(
                f"plane {key}: labels must be integers in 0..{MAX_ID}, got values from {lo} to "
                f"{hi}")
        return arr.astype(np.uint32, copy=False)

    def _current(self, key: tuple[int, ...]) -> np.ndarray:
        """Plane ``key`` as it is now (call under the lock): a new array.

        A chunk without a file holds only background. A chunk this store wrote last (in
        :meth:`_write_chunk`) is taken from memory instead of decoded, when its file is
        still the one written: the same inode, size and time, with the writing operation's
        journal still linking that inode as its after-image (so the inode cannot have been
        freed and reused by another file meanwhile). Any other chunk is read from zarr.
        """
        if not self.layout.plain:
            return self.read_plane(key)
        parts = []
        for chunk, region in self.layout.plane_chunks(key):
            try:
                st = os.stat(self.layout.path(chunk))
            except FileNotFoundError:
                parts.append((region, None))
                continue
            kept = self._blocks.get(chunk)
            if kept is None or kept.stat != _file_id(st):
                return self.read_plane(key)
            try:
                linked = os.stat(self.journal.file(kept.op, chunk, "a"))
            except OSError:
                return self.read_plane(key)
            if (linked.st_dev, linked.st_ino) != kept.stat[:2]:
                return self.read_plane(key)
            parts.append((region, kept.data))
        out = np.empty(self.plane_shape, np.uint32)
        for (ys, xs), data in parts:
            if data is None:
                out[ys, xs] = 0
            else:
                out[ys, xs] = data
        return out

    def _apply(self, key: tuple[int, ...], change: Callable[[np.ndarray], Any],
               *, mark: bool = True, trusted: bool = False) -> np.ndarray:
        """Read a plane under the lock, change it, write the chunks that differ (journaled).

        ``change(current)`` returns the new plane, or ``(new plane, (y0, y1, x0, x1))``
        when it changed nothing outside that box (only the box is then compared and
        counted). ``trusted``: the new plane is uint32 of the plane's shape with valid ids
        (built by this module), so it is not checked again.
        """
        with self._writing(f"plane {key}"), self.operation("edit", f"edit of plane {key}") as op, \
                self._transaction(op.what):
            st = self._state()
            current = self._current(key)
            out = change(current)
            box = None
            if isinstance(out, tuple):
                out, box = out
            new = out if trusted else self._checked(key, out)
            changed = 0
            for chunk, (ys, xs) in self.layout.plane_chunks(key):
                if box is None:
                    sub = (ys, xs)
                else:  # the part of the box inside this chunk
                    y0, y1 = max(ys.start, box[0]), min(ys.stop, box[1])
                    x0, x1 = max(xs.start, box[2]), min(xs.stop, box[3])
                    if y0 >= y1 or x0 >= x1:
                        continue
                    sub = (slice(y0, y1), slice(x0, x1))
                a, b = current[sub], new[sub]
                differs = a != b
                diff = int(np.count_nonzero(differs))
                if diff:
                    self._write_chunk(op, chunk, key + (ys, xs), new[ys, xs], None,
                                      delta=pixel_delta(a, b, differs))
                    changed += diff
            op.pixels += changed
            if changed and (not op.planes or op.planes[-1] != key):
                op.planes.append(key)
            if mark and key not in st.planes:
                self._emit(op, {"t": "planes", "op": op.id, "keys": [list(key)]})
            return new

    def _write_chunk(self, op: Operation | None, chunk: tuple[int, ...], region: tuple,
                     block: np.ndarray, old: np.ndarray | None, *,
                     delta: dict[str, int] | None = None) -> None:
        """Write one chunk's block (``old``: what it holds now, or ``delta``: its pixel
        changes per object), journaled as part of ``op`` (None: a roll-back of an
        operation, written directly). Pixel counts per object go into the log, so the
        object table never rescans the volume."""
        self._blocks.pop(chunk, None)
        if op is not None and chunk not in op.touched:
            self._emit(op)  # the begin record, before anything changes
            self.journal.keep(op.id, chunk, "b")
            self._log.append({"t": "touch", "op": op.id, "chunk": list(chunk)})
            op.touched.add(chunk)
        self.array[region] = block
        if delta is None:
            delta = pixel_delta(old, block)
        if delta:
            self._log.append({"t": "px", "op": None if op is None else op.id,
                              "plane": list(chunk[:-2]), "d": delta})
        if op is not None:
            self.journal.keep(op.id, chunk, "a")
            self._remember(op, chunk, block)

    def _remember(self, op: Operation, chunk: tuple[int, ...], block: np.ndarray) -> None:
        """Keep the block just written (and linked as ``op``'s after-image) in memory, for
        the next write of its plane; only the plane written last is kept."""
        if any(c[:-2] != chunk[:-2] for c in self._blocks):
            self._blocks.clear()
        if block.nbytes + sum(b.data.nbytes for b in self._blocks.values()) > BLOCK_BYTES:
            return  # a plane too large to keep: read again next time
        try:
            st = os.stat(self.layout.path(chunk))
        except OSError:  # background only: no file, nothing to keep
            return
        self._blocks[chunk] = _Block(op.id, _file_id(st), np.array(block, np.uint32))

    def write_plane(self, plane: tuple[int, ...] | int, labels: np.ndarray) -> None:
        """Replace one whole plane with ``labels`` (``(H, W)``, integers in 0..2**32-1)."""
        self._check_writable()
        key = self._key(plane)
        arr = self._checked(key, labels)
        self._apply(key, lambda _cur: arr)

    def merge_plane(self, plane: tuple[int, ...] | int, labels: np.ndarray) -> np.ndarray:
        """Write ``labels`` into the background pixels of one plane; returns the new plane.

        Pixels that already hold an object keep it (the ``"keep"`` policy for a whole
        labels image, e.g. automatic results).
        """
        self._check_writable()
        key = self._key(plane)
        arr = self._checked(key, labels)
        return self._apply(key, lambda cur: np.where(cur > 0, cur, arr).astype(np.uint32))

    def paint(
        self,
        plane: tuple[int, ...] | int,
        mask: np.ndarray,
        obj_id: int,
        *,
        overlap: str = "keep",
    ) -> np.ndarray:
        """Paint ``mask`` as object ``obj_id`` on one plane; returns the new plane.

        Pixels of ``obj_id`` outside ``mask`` are cleared first, so painting replaces the
        object's previous mask on that plane. The plane is read and written under the
        store's lock, so another writer's pixels painted meanwhile are respected.
        """
        self._check_writable()
        if overlap not in OVERLAP_POLICIES:
            raise LabelsStoreError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
        oid = check_object_id(obj_id)
        key = self._key(plane)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.plane_shape:
            raise LabelsStoreError(
                f"mask of shape {mask.shape} does not fit planes of shape {self.plane_shape}"
            )

        def change(current: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
            # Only the box around the mask and the object's current pixels can change.
            ours = current == oid
            box = _union(_box(mask), _box(ours))
            if box is None:
                return current, (0, 0, 0, 0)
            y, x = slice(box[0], box[1]), slice(box[2], box[3])
            new = current.copy()
            sub, m = new[y, x], mask[y, x]
            sub[ours[y, x]] = 0
            sub[m if overlap == "replace" else m & (sub == 0)] = oid
            return new, box

        return self._apply(key, change, trusted=True)

    def write_region(self, index: tuple, values: Any) -> None:
        """Write ``values`` at ``index`` (a region of any planes; napari's brush and fill)."""
        self._check_writable()
        for key, change in plane_updates(self, index, values):
            self._apply(key, change)

    def paint_labels(self, plane: tuple[int, ...] | int, labels: np.ndarray, ids: Any, *,
                     mapping: dict[int, int] | None = None) -> np.ndarray:
        """Paint objects ``ids`` of a labels image onto one plane (``"keep"`` policy).

        Each object replaces its own earlier pixels on that plane and takes only background
        (other objects keep theirs); ``mapping`` renames ids on the way (``{old: new}``).
        Returns the new plane.
        """
        self._check_writable()
        key = self._key(plane)
        arr = self._checked(key, labels)
        mapping = {int(k): check_object_id(v) for k, v in (mapping or {}).items()}
        wanted = [int(i) for i in ids if (arr == int(i)).any()]

        def change(current: np.ndarray) -> np.ndarray:
            new = current.copy()
            for i in wanted:
                j = mapping.get(i, i)
                new[new == j] = 0
                new[(arr == i) & (new == 0)] = j
            return new

        return self._apply(key, change)

    # -- objects at a glance ---------------------------------------------------------------------
    def object_table(self) -> list[ObjectRow]:
        """Every object: id, registry info, the planes it is on and its pixels.

        Kept up to date from the log's pixel counts (no plane is read); a store written
        before the counts existed is counted once, the first time (and the counts are
        recorded when the store is open for writing).
        """
        st = self._state()
        if not st.counted:
            self._count_all()
            st = self._state()
        ids = set(st.objects)
        for counts in st.pixels.values():
            ids.update(i for i, n in counts.items() if n > 0)
        rows = []
        for oid in sorted(ids):
            planes = sorted(p for p, c in st.pixels.items() if c.get(oid, 0) > 0)
            rows.append(ObjectRow(oid, dict(st.objects.get(oid, {})), planes,
                                  int(sum(st.pixels[p][oid] for p in planes))))
        return rows

    def _count_all(self) -> None:
        counts: dict[tuple[int, ...], dict[str, int]] = {}
        for key in self.written_planes():
            ids, n = np.unique(self.read_plane(key), return_counts=True)
            counts[key] = {str(i): int(c) for i, c in zip(ids.tolist(), n.tolist(), strict=True)
                           if i}
        if self.mode == "r+" and not self._closed:
            with self._writing("the pixel counts"), self._transaction("counting objects"):
                if not self._state().counted:
                    self._log.append(*({"t": "px", "op": None, "plane": list(k), "d": d}
                                       for k, d in counts.items() if d),
                                     {"t": "counts", "complete": True})
        else:  # read-only: count in memory only
            st = self._state()
            st.pixels = {k: {int(i): v for i, v in d.items()} for k, d in counts.items()}
            st.counted = True

    def record_prompts(self, prompts: dict[tuple[tuple[int, ...], int], Any]) -> None:
        """Record the prompts objects were segmented from (``(plane, id) -> ObjectPrompt``),
        so that a session reopening the store can show them again."""
        self._check_writable()
        recs = []
        for (plane, oid), p in prompts.items():
            recs.append({"t": "prompt", "plane": list(self._key(plane)), "id": check_object_id(oid),
                         "prompt": None if p is None else {
                             "points": np.asarray(p.points).tolist(),
                             "labels": np.asarray(p.labels).tolist(),
                             "box": None if p.box is None else np.asarray(p.box).tolist()}})
        if recs:
            op = self.current_operation
            with self._writing("the prompts"), self._transaction("prompts"):
                if op is not None:
                    self._emit(op, *({**r, "op": op.id} for r in recs))
                else:
                    self._log.append(*recs)

    def recorded_prompts(self, *, present: bool = True
                         ) -> dict[tuple[tuple[int, ...], int], dict[str, Any]]:
        """``(plane, id) -> {"points", "labels", "box"}``: the last prompt recorded for each
        object on each plane.

        With ``present`` (default) only prompts of objects that still have pixels on their
        plane (an undone or deleted object's prompts are left out)."""
        if self._v1_attrs is not None:
            return {}
        st = self._state()
        if present and not st.counted:
            self._count_all()
            st = self._state()
        return {k: copy.deepcopy(v) for k, v in st.prompts.items()
                if not present or st.pixels.get(k[0], {}).get(k[1], 0) > 0}

    # -- history ------------------------------------------------------------------------------
    def history(self) -> list[OpRecord]:
        """Every operation the log knows, oldest first (all writers)."""
        st = self._state()
        return [st.ops[i] for i in st.order]

    def undo(self) -> Any:
        """Undo this writer's last operation: an :class:`~.history.UndoResult`, or None when
        there is nothing to undo (see :mod:`.history` for the rules)."""
        return history.undo(self)

    def redo(self) -> Any:
        """Redo what this writer undid last: an :class:`~.history.UndoResult`, or None."""
        return history.redo(self)

    def as_array(self) -> Any:
        """An array view whose writes go through the store (for napari Labels layers)."""
        return StoreArray(self)

    def written_planes(self) -> list[tuple[int, ...]]:
        """Planes written so far, sorted."""
        if self._v1_attrs is not None:
            return sorted(tuple(p) for p in self._v1_attrs.get("planes", []))
        return sorted(self._state().planes)

    def all_planes(self) -> list[tuple[int, ...]]:
        return list(iter_keys(self.shape[:-2]))

    def __repr__(self) -> str:
        return f"<LabelsStore {self.path} shape={self.shape}>"

