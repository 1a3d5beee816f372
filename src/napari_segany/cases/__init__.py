"""Worklists of cases for annotation campaigns (e.g. 300 CT scans by several radiologists).

* :mod:`.worklist`: :class:`Worklist` over a folder or CSV of cases;
  :meth:`Worklist.next_case` opens the next one.
* :mod:`.case`: :class:`Case`, its source image, labels store, status (todo / in progress
  / done / needs review) and the history of changes (who, when).
* :mod:`.classes`: :class:`ClassTable`, the structures every case shares (one id, name,
  colour and DICOM code each), kept as ``classes.json``.
* :mod:`.export`: :func:`export_finished`, one DICOM-SEG (or RTSTRUCT, NIfTI) per
  finished case.

An algorithms-layer package: it reads images and labels stores and writes its own files,
but never opens a session; the front-ends annotate a case with a
:class:`~napari_segany.session.Session` on :meth:`Worklist.image` and :attr:`Case.labels`.
"""

from .case import STATUSES, Case, normalise_status
from .classes import CLASSES_FORMAT, CasesError, ClassTable, StructureClass
from .export import EXPORT_ENDINGS, CaseExport, export_finished
from .worklist import WORKLIST_FORMAT, Worklist

__all__ = ["Worklist", "Case", "STATUSES", "normalise_status", "ClassTable", "StructureClass",
           "CasesError", "export_finished", "CaseExport", "EXPORT_ENDINGS", "CLASSES_FORMAT",
           "WORKLIST_FORMAT"]
