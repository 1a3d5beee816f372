"""The append-only event log of a labels store: objects, planes, provenance, operations.

``.segany/log.jsonl`` holds one JSON record per line; records are only ever appended
(under the store's write lock), so two writers never lose each other's updates and the
store's ``zarr.json`` never changes after creation. A record's ``t`` says what it is:

``writer``  a writer opened the store (``w`` its id, ``pid``, ``host``, ``user``, ``version``)
``run``     provenance fields of a writer's run (``fields``: model, source, prompts, ...)
``obj``     an object's registry entry set (``id``, ``info``; ``info`` null: deleted),
            with ``prev``, the entry before (undo restores it), and ``op``
``planes``  planes written for the first time (``keys``)
``begin``   an operation starts (``op``, ``w``, ``kind``, ``what``, ``short``, ``target``)
``touch``   an operation changes a chunk for the first time (``op``, ``chunk``); its
            before-image is then in the journal
``end``     an operation ends (``op``, ``status``: done, interrupted, rolled back, failed;
            ``planes``, ``pixels``, ``bytes``, ``at``: the last plane written)
``expire``  the journal of old operations was dropped (``ops``): they cannot be undone
``px``      pixels gained or lost per object on a plane by one chunk write (``plane``, ``d``)
``counts``  from here on the ``px`` records count every pixel of the store
``prompt``  the prompt an object was segmented from on a plane (``plane``, ``id``,
            ``prompt``: points, labels, box), so that a reopened store restores them

A writer killed while appending can leave a torn last line; it is ignored (and the next
record starts on a line of its own). :class:`LogState` is the state folded from the
records, read incrementally: only bytes appended since the last read are parsed.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EventLog", "LogState", "OpRecord"]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _json_safe(value: Any) -> Any:
    """Non-finite floats become strings: the log stays valid JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _json_safe(value.tolist())
    return value


@dataclass
class OpRecord:
    """What the log says about one operation."""

    id: str
    kind: str
    what: str
    writer: str
    short: bool
    target: str | None = None
    status: str = "open"  # open, done, interrupted, rolled back, failed
    chunks: list[tuple[int, ...]] = field(default_factory=list)
    planes: list[tuple[int, ...]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)  # its obj records
    pixels: int = 0
    bytes: int = 0
    time: str = ""
    expired: bool = False

    @property
    def finished(self) -> bool:
        return self.status != "open"


class LogState:
    """Objects, planes, provenance runs and operations, folded from the log's records."""

    def __init__(self) -> None:
        self.objects: dict[int, dict[str, Any]] = {}
        self.reserved = 0  # the largest id ever registered (ids are never reused)
        self.planes: set[tuple[int, ...]] = set()
        self.runs: list[dict[str, Any]] = []
        self.fields: dict[str, Any] = {}
        self.writers: dict[str, dict[str, Any]] = {}
        self.ops: dict[str, OpRecord] = {}
        self.order: list[str] = []  # operation ids in the order they began
        self.touched: dict[tuple[int, ...], list[str]] = {}  # chunk -> ops, in order
        #: plane -> object id -> pixels, from the ``px`` records (see :attr:`counted`)
        self.pixels: dict[tuple[int, ...], dict[int, int]] = {}
        #: Whether :attr:`pixels` covers every pixel of the store (``counts`` record)
        self.counted = False
        #: (plane, object id) -> the prompt record last given for it
        self.prompts: dict[tuple[tuple[int, ...], int], dict[str, Any]] = {}

    def apply(self, rec: dict[str, Any]) -> None:
        t = rec.get("t")
        if t == "obj":
            oid = int(rec["id"])
            self.reserved = max(self.reserved, oid)
            if rec.get("info") is None:
                self.objects.pop(oid, None)
            else:
                self.objects[oid] = dict(rec["info"])
            op = self.ops.get(rec.get("op") or "")
            if op is not None:
                op.objects.append(rec)
        elif t == "planes":
            keys = [tuple(int(v) for v in k) for k in rec["keys"]]
            self.planes.update(keys)
            op = self.ops.get(rec.get("op") or "")
            if op is not None:
                op.planes += keys
        elif t == "run":
            fields = dict(rec.get("fields") or {})
            self.fields.update(fields)
            run = next((r for r in self.runs if r["writer"] == rec.get("w")), None)
            if run is None:
                writer = self.writers.get(rec.get("w"), {})
                run = {"writer": rec.get("w"), "time": rec.get("time"),
                       "version": writer.get("version"), "user": writer.get("user"),
                       "host": writer.get("host")}
                self.runs.append(run)
            run.update(fields)
        elif t == "writer":
            self.writers[rec["w"]] = {k: v for k, v in rec.items() if k not in ("t",)}
        elif t == "begin":
            op = OpRecord(rec["op"], rec["kind"], rec.get("what", ""), rec.get("w", ""),
                          bool(rec.get("short")), rec.get("target"), time=rec.get("time", ""))
            self.ops[op.id] = op
            self.order.append(op.id)
        elif t == "touch":
            op = self.ops.get(rec["op"])
            chunk = tuple(int(v) for v in rec["chunk"])
            if op is not None:
                op.chunks.append(chunk)
            self.touched.setdefault(chunk, []).append(rec["op"])
        elif t == "end":
            op = self.ops.get(rec["op"])
            if op is not None:
                op.status = rec.get("status", "done")
                op.what = rec.get("what") or op.what
                op.pixels = int(rec.get("pixels", 0))
                op.bytes = int(rec.get("bytes", 0))
        elif t == "px":
            plane = self.pixels.setdefault(tuple(int(v) for v in rec["plane"]), {})
            for k, v in rec["d"].items():
                n = plane.get(int(k), 0) + int(v)
                if n:
                    plane[int(k)] = n
                else:
                    plane.pop(int(k), None)
        elif t == "counts":
            self.counted = True
        elif t == "prompt":
            key = (tuple(int(v) for v in rec["plane"]), int(rec["id"]))
            if rec.get("prompt") is None:
                self.prompts.pop(key, None)
            else:
                self.prompts[key] = rec["prompt"]
        elif t == "expire":
            for oid in rec.get("ops", []):
                if oid in self.ops:
                    self.ops[oid].expired = True

    def next_after(self, op_id: str, chunk: tuple[int, ...]) -> str | None:
        """The first operation after ``op_id`` that touched ``chunk`` (None: none since)."""
        ops = self.touched.get(tuple(chunk), [])
        try:
            i = ops.index(op_id)
        except ValueError:
            return None
        return ops[i + 1] if i + 1 < len(ops) else None


class EventLog:
    """Appending records to, and reading them from, one ``log.jsonl`` file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.state = LogState()
        self._offset = 0
        self._tail = b""

    def refresh(self) -> LogState:
        """Fold the records appended since the last call (by any writer)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self.state
        if not data:
            return self.state
        self._offset += len(data)
        data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()  # an unfinished last line (a writer appending, or torn)
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:  # a torn line from a killed writer: skip it
                continue
            if isinstance(rec, dict):
                self.state.apply(rec)
        return self.state

    def append(self, *records: dict[str, Any]) -> None:
        """Append records (call under the store's write lock) and fold them."""
        if not records:
            return
        stamped = [_json_safe({"time": _now(), **r}) for r in records]
        text = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n"
                       for r in stamped)
        self.refresh()
        lead = b"\n" if self._tail else b""  # start on a fresh line after a torn one
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, lead + text.encode())
        finally:
            os.close(fd)
        self.refresh()
