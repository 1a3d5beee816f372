"""Exporting the finished cases of a worklist: one file per case, each written whole or not.

:func:`export_finished` writes every ``done`` case's labels as DICOM-SEG (default),
RTSTRUCT or NIfTI onto its own source series, with the worklist's class table (names,
colours, codes) and the annotator who finished it as the content creator. A case that
fails (no DICOM source, a store of another shape) is reported and the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..exports import export_labels, resolve_format
from .case import Case
from .classes import CasesError
from .worklist import Worklist

__all__ = ["CaseExport", "export_finished", "EXPORT_ENDINGS"]

#: The file name ending each export format gets (``<case id><ending>``).
EXPORT_ENDINGS = {"dicom-seg": ".seg.dcm", "rtstruct": ".rtstruct.dcm", "nii": ".nii.gz",
                  "tif": ".tif", "zarr": ".zarr"}


@dataclass
class CaseExport:
    """What exporting one case gave: the file written, or why it was not."""

    case: str
    path: Path | None
    error: str | None = None


def _done_by(case: Case) -> str | None:
    return next((h.get("user") for h in reversed(case.history) if h.get("status") == "done"),
                None)


def export_finished(
    worklist: Worklist,
    *,
    format: str = "dicom-seg",  # noqa: A002 - the natural name for users
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    segments: str = "object",
    progress: Callable[[int, int], None] | None = None,
) -> list[CaseExport]:
    """Export every case marked ``done``, one file each.

    Parameters
    ----------
    worklist : Worklist
    format : {"dicom-seg", "rtstruct", "nii", "tif", "zarr"}
        DICOM formats refer to each case's source series (its ``series`` choice).
    out : str or path, optional
        Folder of the files (default ``WORKDIR/exports``), named ``<case id>.seg.dcm``,
        ``.rtstruct.dcm``, ``.nii.gz``, ...
    overwrite : bool
        Replace files of an earlier export (else such cases are reported and skipped).
    segments : {"object", "class"}
        DICOM: one segment per object or per class.
    progress : callable, optional
        ``progress(done, total)`` after each case.

    Returns
    -------
    list of CaseExport
        One per finished case, in worklist order.
    """
    fmt = resolve_format(format, "x")
    if fmt not in EXPORT_ENDINGS:
        raise CasesError(f"a worklist exports to {', '.join(EXPORT_ENDINGS)}, not {format!r}")
    folder = Path(out) if out is not None else worklist.workdir / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    done = [c for c in worklist.cases if c.status == "done"]
    classes = worklist.classes.as_export() if len(worklist.classes) else None
    results: list[CaseExport] = []
    for i, case in enumerate(done):
        target = folder / f"{case.id}{EXPORT_ENDINGS[fmt]}"
        options: dict = {}
        if fmt in ("dicom-seg", "rtstruct"):
            options = {"reference": case.source, "series": case.series, "classes": classes,
                       "segments": segments, "creator": _done_by(case)}
        elif fmt == "nii":
            image = worklist.image(case)
            options = {"affine": image.affine} if image.affine is not None else \
                {"spacing": image.spacing}
        try:
            if not case.labels.exists():
                raise CasesError(f"no labels store at {case.labels}")
            export_labels(case.labels, target, format=fmt, overwrite=overwrite, **options)
            results.append(CaseExport(case.id, target))
        except (ValueError, OSError) as exc:
            results.append(CaseExport(case.id, None, f"{exc}"))
        if progress is not None:
            progress(i + 1, len(done))
    return results
