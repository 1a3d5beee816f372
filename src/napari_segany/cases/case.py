"""One case of a worklist, its statuses, and the small JSON files a worklist keeps.

A :class:`Case` is its source image, its labels store and its status (one of
:data:`STATUSES`) with the history of every change (who, when, a note). On disk its paths
are kept relative to the folder of cases and to the worklist folder where they lie under
them, so a worklist on a share mounted elsewhere still finds its files.
"""

from __future__ import annotations

import datetime
import getpass
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..storage.atomic import replacing
from .classes import CasesError

__all__ = ["Case", "STATUSES", "normalise_status", "now", "user_name", "write_json",
           "read_json"]

#: A case's status, in the order a case goes through them.
STATUSES = ("todo", "in progress", "done", "needs review")
_ALIASES = {"in-progress": "in progress", "in_progress": "in progress",
            "inprogress": "in progress", "started": "in progress", "needs-review": "needs review",
            "needs_review": "needs review", "review": "needs review", "finished": "done",
            "to do": "todo", "to-do": "todo", "new": "todo"}


def now() -> str:
    """The time now, ISO 8601 with the local time zone."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def user_name(user: str | None) -> str:
    """``user``, else the login name."""
    if user:
        return str(user)
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def normalise_status(status: str) -> str:
    """A status of :data:`STATUSES` (aliases such as ``in-progress`` accepted)."""
    s = str(status).strip().lower()
    s = _ALIASES.get(s, s)
    if s not in STATUSES:
        raise CasesError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    return s


def write_json(path: Path, data: Any) -> None:
    """Write JSON whole or not at all (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def read_json(path: Path, what: str) -> Any:
    """Read JSON; a missing or broken file is a :class:`CasesError` naming ``what``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CasesError(f"{what} not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CasesError(f"{what} {path} cannot be read: {exc}") from None


@dataclass
class Case:
    """One case of a worklist.

    Attributes
    ----------
    id : str
        Unique within the worklist (a file or folder name, or the CSV's ``case``).
    source : Path
        The image: a DICOM series folder, NIfTI, TIFF, zarr, ``.npy``.
    series : str or None
        Which DICOM series of ``source`` (UID, number or description), when it holds several.
    labels : Path
        Its labels store (``cases/<id>/labels.zarr`` unless the CSV named another).
    status : str
        One of :data:`STATUSES`.
    history : list of dict
        Every status change: ``{"status", "user", "time", "note"}``, oldest first.
    """

    id: str
    source: Path
    series: str | None
    labels: Path
    status: str = "todo"
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def user(self) -> str | None:
        """Who made the last status change."""
        return self.history[-1].get("user") if self.history else None

    @property
    def updated(self) -> str | None:
        """When the last status change was made (ISO 8601 with time zone)."""
        return self.history[-1].get("time") if self.history else None

    def to_dict(self, *, source_root: Path | None = None,
                workdir: Path | None = None) -> dict[str, Any]:
        """JSON form; paths under ``source_root`` / ``workdir`` are kept relative to them
        (a worklist on a share mounted elsewhere still finds its files)."""
        return {"id": self.id, "source": _relative(self.source, source_root),
                "series": self.series, "labels": _relative(self.labels, workdir),
                "status": self.status, "history": self.history}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source_root: Path | None = None,
                  workdir: Path | None = None) -> Case:
        return cls(id=str(d["id"]), source=_absolute(d["source"], source_root),
                   series=d.get("series"), labels=_absolute(d["labels"], workdir),
                   status=normalise_status(d.get("status", "todo")),
                   history=list(d.get("history", [])))


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def _absolute(text: str, root: Path | None) -> Path:
    p = Path(text)
    return p if p.is_absolute() or root is None else (Path(root) / p)
