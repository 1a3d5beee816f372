"""``napari-segany cases``: a worklist of cases (init, list, next, set, classes, export).

The worklist keeps its files in WORKDIR (see :mod:`napari_segany.cases`): one class table
for all cases, and per case its source, labels store and status with who and when.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..cases import STATUSES, ClassTable, Worklist, export_finished, normalise_status
from ..errors import UsageError
from ._common import Progress

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    cases = sub.add_parser(
        "cases", help="a worklist of cases: statuses, one class table, export finished cases",
        description="Keep a worklist of cases (a folder or CSV of images, e.g. one DICOM "
                    "series folder per patient) in WORKDIR: per case its labels store and "
                    "status (todo, in progress, done, needs review) with who and when, one "
                    "class table shared by all cases (ids, names, colours, DICOM codes), the "
                    "next case to open, and one DICOM-SEG / RTSTRUCT / NIfTI per finished case.")
    acts = cases.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = acts.add_parser("init", help="create (or refresh) a worklist over a folder or CSV")
    init.add_argument("source", type=Path,
                      help="folder of cases (each DICOM folder, NIfTI, TIFF, zarr in it), or "
                           "a CSV with a 'source' column (optional: case, series, labels, "
                           "status)")
    init.add_argument("workdir", type=Path, help="where the worklist keeps its files")
    init.add_argument("--class", dest="class_names", action="append", default=[],
                      metavar="NAME", help="a structure of the class table (repeatable; ids "
                                           "1, 2, ... in order), e.g. --class liver")
    init.add_argument("--classes", type=Path, default=None,
                      help="class table file: classes.json, or text with one name per line")
    init.add_argument("--series", default=None,
                      help="DICOM series to open in every case (UID, number or description)")
    ls = acts.add_parser("list", help="the cases with status, who and when")
    ls.add_argument("workdir", type=Path)
    ls.add_argument("--status", default=None, help=f"only cases with this status ({STATUSES})")
    ls.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    nxt = acts.add_parser("next", help="claim the next case (your own in progress, else the "
                                       "first todo) and say how to open it")
    nxt.add_argument("workdir", type=Path)
    nxt.add_argument("--user", default=None, help="annotator (default: login name)")
    nxt.add_argument("--peek", action="store_true", help="show it without claiming it")
    st = acts.add_parser("set", help="set the status of a case")
    st.add_argument("workdir", type=Path)
    st.add_argument("case", help="case id")
    st.add_argument("status", help="todo | in-progress | done | needs-review")
    st.add_argument("--user", default=None, help="annotator (default: login name)")
    st.add_argument("--note", default=None, help="a note kept with the change")
    st.add_argument("--force", action="store_true",
                    help="mark done even without a labels store or with objects that are "
                         "not in the class table")
    cl = acts.add_parser("classes", help="show or extend the class table")
    cl.add_argument("workdir", type=Path)
    cl.add_argument("--add", action="append", default=[], metavar="NAME",
                    help="add a structure (next free id; code and colour by default)")
    ex = acts.add_parser("export", help="export every finished case, one file each")
    ex.add_argument("workdir", type=Path)
    ex.add_argument("--format", default="dicom-seg",
                    help="dicom-seg (default) | rtstruct | nii | tif | zarr")
    ex.add_argument("--out", type=Path, default=None, help="folder (default WORKDIR/exports)")
    ex.add_argument("--segments", choices=["object", "class"], default="object",
                    help="DICOM: one segment per object (default) or per class")
    ex.add_argument("--overwrite", action="store_true", help="replace earlier exports")
    ex.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    cases.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    return {"init": _init, "list": _list, "next": _next, "set": _set, "classes": _classes,
            "export": _export}[args.action](args)


def _open(workdir: Path) -> Worklist:
    if not (workdir / "worklist.json").exists():
        raise UsageError(f"{workdir} holds no worklist; create one with 'napari-segany cases "
                         "init SOURCE WORKDIR'")
    return Worklist.open(workdir)


def _init(args: argparse.Namespace) -> int:
    if args.class_names and args.classes:
        raise UsageError("give --class names or a --classes file, not both")
    table = ClassTable.load(args.classes) if args.classes else (
        ClassTable.from_names(args.class_names) if args.class_names else None)
    had = (args.workdir / "worklist.json").exists()
    before = len(Worklist.open(args.workdir)) if had else 0
    wl = Worklist.create(args.source, args.workdir, classes=table, series=args.series)
    print(f"{'refreshed' if had else 'created'} {wl.workdir}: {len(wl)} cases "
          f"({len(wl) - before} new); classes: {wl.classes.describe()}")
    return 0


def _when(text: str | None) -> str:
    return (text or "")[:16].replace("T", " ")


def _list(args: argparse.Namespace) -> int:
    wl = _open(args.workdir)
    cases = wl.cases
    if args.status:
        wanted = normalise_status(args.status)
        cases = [c for c in cases if c.status == wanted]
    for c in cases:
        info = wl.labels_info(c)
        if args.json:
            print(json.dumps({**c.to_dict(), "labels_info": info}))
            continue
        labels = "no labels yet" if not info.get("exists") else (
            f"{len(info.get('objects', {}))} objects, edited {_when(info.get('edited'))}"
            + (f" by {info['edited_by']}" if info.get("edited_by") else ""))
        who = f"{c.user}, {_when(c.updated)}" if c.history else ""
        print(f"{c.id:<20} {c.status:<13} {who:<30} {labels}")
    if not args.json:
        counts = ", ".join(f"{n} {s}" for s, n in wl.summary().items())
        print(f"{len(wl)} cases: {counts}; classes: {wl.classes.describe()}")
    return 0


def _next(args: argparse.Namespace) -> int:
    wl = _open(args.workdir)
    case = wl.next_case(user=args.user, claim=not args.peek)
    if case is None:
        print("no case left to do: " + ", ".join(f"{n} {s}" for s, n in wl.summary().items()))
        return 0
    series = f" --series {json.dumps(case.series)}" if case.series else ""
    print(f"case {case.id} ({case.status}{', ' + case.user if case.user else ''})")
    print(f"  image:   {case.source}{'  series ' + case.series if case.series else ''}")
    print(f"  labels:  {case.labels}")
    print(f"  classes: {wl.classes.describe()} (commit each structure as its class id)")
    print(f"  open:    napari {case.source}   (then Plugins > napari-segany; output "
          f"{case.labels})")
    print(f"  or:      napari-segany propagate {case.source}{series} --out {case.labels} "
          "--box ... --plane ...")
    print(f"  finish:  napari-segany cases set {args.workdir} {case.id} done")
    return 0


def _set(args: argparse.Namespace) -> int:
    wl = _open(args.workdir)
    case = wl.set_status(args.case, args.status, user=args.user, note=args.note,
                         force=args.force)
    print(f"case {case.id}: {case.status} ({case.user}, {_when(case.updated)})")
    return 0


def _classes(args: argparse.Namespace) -> int:
    wl = _open(args.workdir)
    for name in args.add:
        wl.classes.add(name)
    if args.add:
        wl.save_classes()
    for c in wl.classes:
        print(f"{c.id:>3}  {c.name:<24} {c.hex_color}  {c.code[0]} {c.code[1]} "
              f"({c.code[2]})")
    if not len(wl.classes):
        print("no classes yet; add them with --add NAME")
    return 0


def _export(args: argparse.Namespace) -> int:
    wl = _open(args.workdir)
    with Progress("exporting cases", quiet=args.quiet, unit="case") as bar:
        results = export_finished(wl, format=args.format, out=args.out,
                                  overwrite=args.overwrite, segments=args.segments,
                                  progress=bar)
    failed = [r for r in results if r.error]
    for r in results:
        print(f"{r.case}: {r.path}" if r.path else f"{r.case}: not exported: {r.error}")
    print(f"exported {len(results) - len(failed)} of {len(results)} finished cases"
          + (f"; {len(failed)} failed" if failed else ""))
    return 1 if failed else 0
