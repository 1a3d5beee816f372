"""The class table a worklist shares: one id, name, colour and DICOM code per structure.

Every case of a worklist labels the same structure with the same id (object id = class
id in the labels store), so exports of all cases agree: segment "liver" is id 1 and SNOMED
CT 10200004 everywhere. The table is a JSON file (``classes.json``)::

    {"format": 1, "classes": [
        {"id": 1, "name": "liver", "color": "#e6194b",
         "code": {"scheme": "SCT", "value": "10200004", "meaning": "Liver"},
         "category": {"scheme": "SCT", "value": "91723000", "meaning": "Anatomical Structure"}}
    ]}

Codes and colours default to :func:`napari_segany.exports.code_for` and the export palette.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CasesError
from ..exports.dicom import PALETTE, code_for
from ..storage.atomic import replacing

__all__ = ["CasesError", "StructureClass", "ClassTable", "CLASSES_FORMAT"]

CLASSES_FORMAT = 1


Term = tuple[str, str, str]


def _term(value: Any, what: str) -> Term:
    if isinstance(value, dict):
        value = (value.get("scheme"), value.get("value"), value.get("meaning"))
    try:
        out = tuple(str(v) for v in value)
    except TypeError:
        out = ()
    if len(out) != 3 or not all(out):
        raise CasesError(f"{what} must be (scheme, value, meaning), e.g. ('SCT', '10200004', "
                         f"'Liver'), or a dict with those keys; got {value!r}")
    return out  # type: ignore[return-value]


def _color(value: Any, what: str) -> tuple[int, int, int]:
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        try:
            rgb = tuple(int(text[i:i + 2], 16) for i in (0, 2, 4)) if len(text) == 6 else ()
        except ValueError:
            rgb = ()
    else:
        try:
            rgb = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise CasesError(f"{what} must be '#rrggbb' or three values 0-255, got {value!r}")
    return rgb  # type: ignore[return-value]


@dataclass(frozen=True)
class StructureClass:
    """One structure of the class table.

    Attributes
    ----------
    id : int
        The object id every case uses for it in its labels store (>= 1).
    name : str
        E.g. ``"liver"``; unique in the table (case-insensitive).
    color : (int, int, int)
        RGB 0-255 (napari, DICOM-SEG and RTSTRUCT display colour).
    code, category : (scheme, value, meaning)
        DICOM segmented property type and category.
    """

    id: int
    name: str
    color: tuple[int, int, int]
    code: Term
    category: Term

    @property
    def hex_color(self) -> str:
        return "#" + "".join(f"{v:02x}" for v in self.color)

    def to_dict(self) -> dict[str, Any]:
        def term(t: Term) -> dict[str, str]:
            return {"scheme": t[0], "value": t[1], "meaning": t[2]}

        return {"id": self.id, "name": self.name, "color": self.hex_color,
                "code": term(self.code), "category": term(self.category)}


class ClassTable:
    """The structures shared by every case of a worklist (ids, names, colours, codes).

    Parameters
    ----------
    classes : iterable of StructureClass, optional
    """

    def __init__(self, classes: Iterable[StructureClass] = ()) -> None:
        self._by_id: dict[int, StructureClass] = {}
        for c in classes:
            self._put(c)

    # -- building -----------------------------------------------------------------------
    def _put(self, c: StructureClass) -> None:
        if c.id < 1:
            raise CasesError(f"class ids start at 1 (0 is background), got {c.id} for {c.name!r}")
        if c.id in self._by_id:
            raise CasesError(f"class id {c.id} is taken by {self._by_id[c.id].name!r}; "
                             f"choose another id for {c.name!r}")
        clash = self.find(c.name)
        if clash is not None:
            raise CasesError(f"class {c.name!r} is already in the table (id {clash.id})")
        self._by_id[c.id] = c

    def add(self, name: str, *, id: int | None = None,  # noqa: A002 - the table's own word
            color: Any = None, code: Any = None, category: Any = None) -> StructureClass:
        """Add a structure; id, colour and codes default to the next id, the palette and
        :func:`~napari_segany.exports.code_for` (SNOMED CT by name)."""
        name = str(name).strip()
        if not name:
            raise CasesError("a class needs a name")
        oid = int(id) if id is not None else max(self._by_id, default=0) + 1
        auto = code_for(name)
        c = StructureClass(
            id=oid, name=name,
            color=_color(color, f"colour of {name!r}") if color is not None
            else PALETTE[(oid - 1) % len(PALETTE)],
            code=_term(code, f"code of {name!r}") if code is not None else auto["type"],
            category=_term(category, f"category of {name!r}") if category is not None
            else auto["category"])
        self._put(c)
        return c

    @classmethod
    def from_names(cls, names: Iterable[str]) -> ClassTable:
        """A table with ids 1, 2, ... for ``names``, codes and colours by default."""
        table = cls()
        for n in names:
            table.add(n)
        return table

    # -- reading ------------------------------------------------------------------------
    def find(self, key: int | str) -> StructureClass | None:
        """The class of an id or a name (case-insensitive), or None."""
        if isinstance(key, str):
            low = key.strip().lower()
            return next((c for c in self._by_id.values() if c.name.lower() == low), None)
        return self._by_id.get(int(key))

    def __getitem__(self, key: int | str) -> StructureClass:
        found = self.find(key)
        if found is None:
            raise CasesError(f"no class {key!r} in the table; it holds {self.describe()}")
        return found

    def id_of(self, name: str) -> int:
        """The id of a class name (the object id to commit it as)."""
        return self[name].id

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (int, str)) and self.find(key) is not None

    def __iter__(self) -> Iterator[StructureClass]:
        return iter(sorted(self._by_id.values(), key=lambda c: c.id))

    def __len__(self) -> int:
        return len(self._by_id)

    def describe(self) -> str:
        return ", ".join(f"{c.id} {c.name}" for c in self) or "no classes"

    def as_export(self) -> dict[int, dict[str, Any]]:
        """``{id: {"name", "color", "code", "category"}}`` as the DICOM exports take it."""
        return {c.id: {"name": c.name, "color": c.color, "code": c.code,
                       "category": c.category} for c in self}

    def check(self, objects: dict[str, Any]) -> list[str]:
        """Problems of a labels store's ``objects`` record against the table (empty: none).

        An object id must be a class id, and a class name recorded for it must be that
        class's name.
        """
        problems = []
        for key, info in sorted(objects.items(), key=lambda kv: int(kv[0])):
            c = self.find(int(key))
            name = (info or {}).get("class_name")
            if c is None:
                problems.append(f"object {key}{f' ({name})' if name else ''} is not a class "
                                f"of the table ({self.describe()})")
            elif name and name.lower() != c.name.lower():
                problems.append(f"object {key} is named {name!r}, but class {key} is "
                                f"{c.name!r}")
        return problems

    # -- files --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": CLASSES_FORMAT, "classes": [c.to_dict() for c in self]}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "class table") -> ClassTable:
        items = data.get("classes") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise CasesError(f"{where}: expected {{'classes': [...]}} or a list of classes")
        table = cls()
        for i, item in enumerate(items):
            if isinstance(item, str):
                table.add(item)
                continue
            if not isinstance(item, dict) or "name" not in item:
                raise CasesError(f"{where}: class {i + 1} needs a 'name', got {item!r}")
            table.add(item["name"], id=item.get("id"), color=item.get("color"),
                      code=item.get("code"), category=item.get("category"))
        return table

    @classmethod
    def load(cls, path: str | os.PathLike) -> ClassTable:
        """Read a ``classes.json`` (or a text file with one class name per line)."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CasesError(f"class table not found: {p}") from None
        if p.suffix.lower() != ".json":
            return cls.from_names(line.strip() for line in text.splitlines() if line.strip())
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CasesError(f"class table {p} is not valid JSON: {exc}") from None
        return cls.from_dict(data, where=str(p))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON (to a temporary file first, then renamed)."""
        p = Path(path)
        with replacing(p) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return p
