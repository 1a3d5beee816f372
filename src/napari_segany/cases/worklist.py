"""A worklist of cases: per case its source image, labels store and status, kept on disk.

A worklist lives in a folder of its own (the *workdir*)::

    WORKDIR/worklist.json          where the cases come from, their order, the default series
    WORKDIR/classes.json           the class table every case shares (ids, names, colours, codes)
    WORKDIR/cases/<id>/case.json   one case: source, series, status and its history
    WORKDIR/cases/<id>/labels.zarr its labels store (unless the case names another)

Cases come from a folder (each DICOM series folder, NIfTI, TIFF, zarr or ``.npy`` in it is
a case) or from a CSV with a ``source`` column (and optional ``case``, ``series``,
``labels``, ``status``). A case's status is one of :data:`STATUSES`; every change is kept
with who made it and when. One small file per case means annotators working on different
cases never write the same file. Nothing here opens a session: the front-ends annotate a
case with :class:`~napari_segany.session.Session` on :meth:`Worklist.image` and
:attr:`Case.labels`, committing each structure as the object id of its class.
"""

from __future__ import annotations

import csv
import datetime
import os
import re
from pathlib import Path
from typing import Any

from ..io import ImageData, file_stem, is_dicom, read_image
from ..storage.labels import LabelsStore, is_labels_store
from .case import STATUSES, Case, normalise_status, now, read_json, user_name, write_json
from .classes import CasesError, ClassTable

__all__ = ["Worklist", "WORKLIST_FORMAT"]

#: Version of the worklist's files.
WORKLIST_FORMAT = 1
_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".tif", ".tiff", ".npy", ".dcm", ".zarr")


def _case_id(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "case"
    out, n = base, 2
    while out in taken:
        out, n = f"{base}_{n}", n + 1
    taken.add(out)
    return out


def _folder_sources(folder: Path, workdir: Path) -> list[Path]:
    """The images of a folder of cases, sorted by name (labels stores and the workdir not)."""
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.resolve() == workdir.resolve():
            continue
        if entry.is_dir():
            if is_labels_store(entry):
                continue
            zarr_array = (entry / "zarr.json").exists() or (entry / ".zarray").exists()
            if zarr_array or is_dicom(entry):
                out.append(entry)
        elif entry.name.lower().endswith(_IMAGE_SUFFIXES) or entry.name.upper() == "DICOMDIR":
            out.append(entry)
    return out


def _csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise CasesError(f"cannot read the case list {path}: {exc}") from None
    if not rows or "source" not in {k.strip().lower() for k in rows[0]}:
        raise CasesError(f"the case list {path} needs a header row with a 'source' column "
                         "(and optionally case, series, labels, status)")
    return [{k.strip().lower(): (v or "").strip() for k, v in r.items() if k} for r in rows]


class Worklist:
    """Cases, their statuses and one class table, kept in ``workdir``.

    Use :meth:`create` (first time) or :meth:`open`.
    """

    def __init__(self, workdir: Path, meta: dict[str, Any]) -> None:
        self.workdir = Path(workdir)
        self.meta = meta
        self.classes = ClassTable.load(self.workdir / "classes.json") \
            if (self.workdir / "classes.json").exists() else ClassTable()

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def create(cls, source: str | os.PathLike, workdir: str | os.PathLike, *,
               classes: ClassTable | list[str] | None = None,
               series: str | None = None) -> Worklist:
        """Make a worklist over a folder or CSV of cases (reopens it if ``workdir`` has one).

        Parameters
        ----------
        source : str or path
            A folder whose entries are the cases, or a CSV with a ``source`` column.
        workdir : str or path
            Where the worklist keeps its files and the labels stores (created).
        classes : ClassTable or list of str, optional
            The class table (names get ids 1, 2, ... and default codes/colours).
        series : str, optional
            The DICOM series to open in every case (UID, number or description) when
            cases hold several; a CSV's ``series`` column overrides it per case.
        """
        src, wd = Path(source).resolve(), Path(workdir)
        if not src.exists():
            raise CasesError(f"no folder or case list at {src}")
        if (wd / "worklist.json").exists():
            wl = cls.open(wd)
            if wl.source.resolve() != src:
                raise CasesError(f"{wd} already holds a worklist over {wl.source}; "
                                 "choose another workdir")
        else:
            wd.mkdir(parents=True, exist_ok=True)
            meta = {"format": WORKLIST_FORMAT, "source": str(src),
                    "source_from_workdir": os.path.relpath(src, wd.resolve()),
                    "kind": "folder" if src.is_dir() else "csv", "series": series,
                    "created": now(), "order": []}
            wl = cls(wd, meta)
        if classes is not None:
            table = classes if isinstance(classes, ClassTable) else \
                ClassTable.from_names(classes)
            changed = [f"{c.id} {c.name}" for c in wl.classes
                       if table.find(c.id) is None or table[c.id].name != c.name]
            if changed:
                raise CasesError(f"the worklist's class table already has {', '.join(changed)}; "
                                 "a new table may add classes but not change or drop these "
                                 "(cases use their ids)")
            wl.classes = table
            wl.save_classes()
        wl.refresh()
        return wl

    @classmethod
    def open(cls, workdir: str | os.PathLike) -> Worklist:
        """Reopen the worklist kept in ``workdir``."""
        wd = Path(workdir)
        meta = read_json(wd / "worklist.json", "worklist")
        if int(meta.get("format", 0)) > WORKLIST_FORMAT:
            raise CasesError(f"{wd} was written by a newer napari-segany; update it")
        return cls(wd, meta)

    def refresh(self) -> list[str]:
        """Add the cases that appeared in the source since; returns their ids."""
        src = self.source
        order: list[str] = list(self.meta.get("order", []))
        known = {str(self.case(i).source) for i in order}
        taken = set(order)
        added = []
        if self.meta["kind"] == "folder":
            rows = [{"source": str(p)} for p in _folder_sources(src, self.workdir)]
        else:
            rows = _csv_rows(src)
        for row in rows:
            path = Path(row["source"])
            path = path if path.is_absolute() else (src.parent / path)
            path = path.resolve()
            if str(path) in known:
                continue
            cid = _case_id(row.get("case") or file_stem(path), taken)
            labels = row.get("labels")
            case = Case(id=cid, source=path, series=row.get("series") or self.meta.get("series"),
                        labels=Path(labels).resolve() if labels else
                        (self._case_dir(cid) / "labels.zarr").resolve(),
                        status=normalise_status(row.get("status") or "todo"))
            self._save_case(case)
            order.append(cid)
            known.add(str(path))
            added.append(cid)
        if added or not (self.workdir / "worklist.json").exists():
            self.meta["order"] = order
            write_json(self.workdir / "worklist.json", self.meta)
        return added

    # -- cases ------------------------------------------------------------------------------
    def _case_dir(self, case_id: str) -> Path:
        return self.workdir / "cases" / case_id

    @property
    def source_root(self) -> Path:
        """The folder of cases, or the folder of the CSV (relative case paths start there)."""
        src = Path(self.meta["source"])
        if not src.exists() and self.meta.get("source_from_workdir"):
            moved = (self.workdir / self.meta["source_from_workdir"]).resolve()
            src = moved if moved.exists() else src
        return src if self.meta.get("kind") == "folder" else src.parent

    @property
    def source(self) -> Path:
        """The folder of cases or the CSV the worklist was made over (where it is now)."""
        root = self.source_root
        return root if self.meta.get("kind") == "folder" else \
            root / Path(self.meta["source"]).name

    def _save_case(self, case: Case) -> None:
        write_json(self._case_dir(case.id) / "case.json",
                    case.to_dict(source_root=self.source_root, workdir=self.workdir))

    @property
    def ids(self) -> list[str]:
        return list(self.meta.get("order", []))

    def case(self, case_id: str | Case) -> Case:
        """A case by id, as on disk now."""
        cid = case_id.id if isinstance(case_id, Case) else str(case_id)
        path = self._case_dir(cid) / "case.json"
        if not path.exists():
            more = " ..." if len(self) > 10 else ""
            raise CasesError(f"no case {cid!r} in the worklist {self.workdir} "
                             f"(cases: {', '.join(self.ids[:10])}{more})")
        return Case.from_dict(read_json(path, f"case {cid!r}"), source_root=self.source_root,
                              workdir=self.workdir)

    @property
    def cases(self) -> list[Case]:
        """Every case, in worklist order (read from disk)."""
        return [self.case(i) for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        return iter(self.cases)

    def summary(self) -> dict[str, int]:
        """How many cases have each status."""
        counts = dict.fromkeys(STATUSES, 0)
        for c in self.cases:
            counts[c.status] += 1
        return counts

    def image(self, case: str | Case) -> ImageData:
        """Open a case's image (lazily; a DICOM series with its affine and spacing)."""
        c = self.case(case)
        try:
            return read_image(c.source, series=c.series)
        except (FileNotFoundError, ValueError) as exc:
            raise CasesError(f"case {c.id!r}: {exc}") from exc

    # -- statuses ---------------------------------------------------------------------------
    def set_status(self, case: str | Case, status: str, *, user: str | None = None,
                   note: str | None = None, force: bool = False) -> Case:
        """Record a status change of ``case`` by ``user`` (default: the login name).

        Marking a case ``done`` needs its labels store, and every object in it must be a
        class of the table under that class's name (``force=True`` skips these checks).
        """
        c = self.case(case)
        status = normalise_status(status)
        if status == "done" and not force:
            problems = self.check(c)
            if problems:
                raise CasesError(f"case {c.id!r} cannot be marked done: {'; '.join(problems)}")
        c.status = status
        c.history.append({"status": status, "user": user_name(user), "time": now(),
                          **({"note": note} if note else {})})
        self._save_case(c)
        return c

    def next_case(self, *, user: str | None = None, claim: bool = True) -> Case | None:
        """The case to work on next: ``user``'s own case in progress, else the first todo.

        With ``claim`` (default) a todo case is marked ``in progress`` by ``user``. None
        when nothing is left.
        """
        who = user_name(user)
        cases = self.cases
        mine = next((c for c in cases if c.status == "in progress" and c.user == who), None)
        if mine is not None:
            return mine
        for c in cases:
            if c.status == "todo":
                if not claim:
                    return c
                fresh = self.case(c.id)  # another annotator may have claimed it meanwhile
                if fresh.status == "todo":
                    return self.set_status(fresh, "in progress", user=who)
        return None

    # -- what the labels say ------------------------------------------------------------------
    def labels_info(self, case: str | Case) -> dict[str, Any]:
        """What the case's labels store holds: objects, planes, last edit (who, when)."""
        c = self.case(case)
        if not c.labels.exists():
            return {"exists": False}
        try:
            store = LabelsStore.open(c.labels, mode="r")
        except (ValueError, OSError) as exc:
            return {"exists": True, "error": str(exc)}
        try:
            prov, shape = store.provenance, store.shape
        finally:
            getattr(store, "close", lambda: None)()
        runs = [r for r in prov.get("runs") or [] if isinstance(r, dict)]
        last = runs[-1] if runs else {}
        files = [p for p in (c.labels / "zarr.json", c.labels / ".segany" / "log.jsonl")
                 if p.exists()]
        mtime = datetime.datetime.fromtimestamp(max(p.stat().st_mtime for p in files)) \
            .astimezone().isoformat(timespec="seconds") if files else None
        return {"exists": True, "shape": list(shape),
                "objects": {int(k): (v or {}).get("class_name")
                            for k, v in (prov.get("objects") or {}).items()},
                "planes": len(prov.get("planes") or []),
                "edited_by": last.get("user"), "edited": last.get("time") or mtime}

    def check(self, case: str | Case) -> list[str]:
        """Problems that keep ``case`` from being done (empty: none)."""
        c = self.case(case)
        if not c.labels.exists():
            return [f"it has no labels store yet ({c.labels})"]
        info = self.labels_info(c)
        if "error" in info:
            return [f"its labels store cannot be read: {info['error']}"]
        if not len(self.classes):
            return []
        objects = {str(k): {"class_name": v} if v else {} for k, v in info["objects"].items()}
        return self.classes.check(objects)

    def save_classes(self) -> Path:
        """Write the class table to ``classes.json`` (after editing :attr:`classes`)."""
        return self.classes.save(self.workdir / "classes.json")

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.summary().items() if n)
        return f"<Worklist {self.workdir}: {len(self)} cases ({counts or 'none'})>"
