"""The prompt model: :class:`ObjectPrompt` (one object on one plane) and :class:`PromptSet`
(prompts per plane and object), in SAM's convention and JSON-serialisable."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._planes import MAX_POINTS, plane_key
from ..errors import PromptError
from .geometry import _object_id, _parse_labels

__all__ = ["ObjectPrompt", "PromptSet", "merge_prompts"]

_FORMAT = "napari-segany.prompts"


# ----------------------------------------------------------------------------------- prompts
@dataclass(eq=False)
class ObjectPrompt:
    """Prompts for one object on one 2D plane, in SAM convention (arrays are copied).

    Attributes
    ----------
    points : ndarray, shape (N, 2), float64
        ``(x, y) = (column, row)`` in image pixel coordinates (pixel centres at integers).
    labels : ndarray, shape (N,), int32
        1 positive / 0 negative; ``None`` at construction means all positive.
    box : ndarray, shape (4,), float64, or None
        ``(x0, y0, x1, y1)`` with ``x0 <= x1`` and ``y0 <= y1``.
    mask : ndarray, shape (H, W), bool or float32, or None
        Optional SAM mask input: a bool mask or low-resolution float32 logits. Integer
        masks become bool (non-zero is inside); float arrays are taken as logits.
    """

    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        pts = np.array([] if self.points is None else self.points, dtype=np.float64)
        pts = pts.reshape(0, 2) if pts.size == 0 else pts
        if pts.ndim != 2 or pts.shape[1] != 2 or not np.all(np.isfinite(pts)):
            raise PromptError(f"ObjectPrompt points must be finite (N, 2) (x, y), got {pts.shape}")
        if len(pts) > MAX_POINTS:
            raise PromptError(
                f"an object's prompt holds {len(pts)} points; at most {MAX_POINTS} per object "
                "(SAM's decoder attends over every pair of points, so memory grows with the "
                "square of their number): use fewer points, or a box")
        self.points, self.labels = pts, _parse_labels(self.labels, len(pts))
        if self.box is not None:
            b = np.array(self.box, dtype=np.float64).ravel()
            if b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] < b[0] or b[3] < b[1]:
                raise PromptError(f"ObjectPrompt box must be finite XYXY, x0<=x1, y0<=y1; got {b}")
            self.box = b
        if self.mask is not None:
            m = np.array(self.mask)
            if m.ndim != 2:
                raise PromptError(f"ObjectPrompt mask must be 2D (H, W), got shape {m.shape}")
            # integer masks (e.g. a slice of a Labels layer) are binary masks, not logits
            self.mask = (m if m.dtype == bool else m != 0 if m.dtype.kind in "iu"
                         else m.astype(np.float32))

    def is_empty(self) -> bool:
        """True when there are no points, no box and no mask."""
        return len(self.points) == 0 and self.box is None and self.mask is None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectPrompt):
            return NotImplemented
        return all(_same(getattr(self, f), getattr(other, f))
                   for f in ("points", "labels", "box", "mask"))


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.dtype == b.dtype and np.array_equal(a, b)


def _combine(a: ObjectPrompt, b: ObjectPrompt, key: tuple, oid: int) -> ObjectPrompt:
    """Concatenate points/labels; refuse two different boxes (or masks)."""
    for name in ("box", "mask"):
        x, y = getattr(a, name), getattr(b, name)
        if x is not None and y is not None and not _same(x, y):
            what = f"boxes {x.tolist()} and {y.tolist()}" if name == "box" else "masks"
            raise PromptError(f"object {oid} on plane {key} would get two different {what}; SAM "
                              f"takes one {name} per object: give one of them another object id.")
    return ObjectPrompt(np.concatenate([a.points, b.points]), np.concatenate([a.labels, b.labels]),
                        a.box if b.box is None else b.box, a.mask if b.mask is None else b.mask)


def _plane_key(key: Any) -> tuple[int, ...]:
    bad = PromptError(f"plane key must be a tuple of integers >= 0 (() for 2D), got {key!r}")
    if not isinstance(key, (tuple, list, np.ndarray)):
        raise bad
    try:
        out = plane_key(key, error=PromptError)
    except PromptError:
        raise bad from None
    if any(k < 0 for k in out):
        raise bad
    return out


class PromptSet:
    """Prompts per plane: plane key -> {object id (int >= 1) -> :class:`ObjectPrompt`}.

    A plane key is the tuple of indices along the image's leading (non-spatial) axes,
    ``()`` for a 2D image. Iteration, :meth:`planes` and :meth:`items` are sorted by
    plane key; ``len`` is the number of planes; objects are sorted by id.
    """

    def __init__(self) -> None:
        self._planes: dict[tuple[int, ...], dict[int, ObjectPrompt]] = {}

    def add(self, key: Any, obj_id: int, prompt: ObjectPrompt) -> None:
        """Add ``prompt`` for object ``obj_id`` on plane ``key``, merging with what is there.

        Points and labels are concatenated; two different boxes (or masks) for the same
        object on the same plane raise :class:`PromptError`.
        """
        key, obj_id = _plane_key(key), _object_id(obj_id)
        if not isinstance(prompt, ObjectPrompt):
            raise PromptError(f"prompt must be an ObjectPrompt, got {type(prompt).__name__}")
        first = next(iter(self._planes), key)
        if len(key) != len(first):
            raise PromptError(f"plane key {key} has {len(key)} indices but this set has keys like "
                              f"{first}; prompts for different images cannot be mixed")
        objs = self._planes.setdefault(key, {})
        old = objs.get(obj_id)
        objs[obj_id] = (ObjectPrompt(prompt.points, prompt.labels, prompt.box, prompt.mask)
                        if old is None else _combine(old, prompt, key, obj_id))

    def planes(self) -> list[tuple[int, ...]]:
        """Sorted plane keys that have prompts."""
        return sorted(self._planes)

    def object_ids(self) -> list[int]:
        """Sorted ids of all objects on any plane."""
        return sorted(set().union(*self._planes.values()))

    def for_plane(self, key: Any) -> dict[int, ObjectPrompt]:
        """Objects on plane ``key`` as ``{id: ObjectPrompt}``, sorted by id."""
        key = _plane_key(key)
        if key not in self._planes:
            where = f"planes with prompts: {self.planes()}" if self._planes else "the set is empty"
            raise PromptError(f"no prompts on plane {key}; {where}")
        return dict(sorted(self._planes[key].items()))

    def items(self) -> list[tuple[tuple[int, ...], dict[int, ObjectPrompt]]]:
        """``[(plane key, {id: ObjectPrompt}), ...]`` sorted by plane key."""
        return [(k, self.for_plane(k)) for k in self.planes()]

    def __len__(self) -> int:
        return len(self._planes)

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        return iter(self.planes())

    def __contains__(self, key: object) -> bool:
        try:
            return _plane_key(key) in self._planes
        except PromptError:
            return False

    def __eq__(self, other: object) -> bool:
        return self.items() == other.items() if isinstance(other, PromptSet) else NotImplemented

    def __repr__(self) -> str:
        return f"PromptSet(planes={self.planes()}, object_ids={self.object_ids()})"

    def to_dict(self, *, include_masks: bool = True) -> dict[str, Any]:
        """JSON-serialisable dict (e.g. for zarr attributes); masks dropped if not included."""
        def obj(oid: int, p: ObjectPrompt) -> dict[str, Any]:
            keep = p.mask is not None and include_masks
            return {"id": oid, "points": p.points.tolist(), "labels": p.labels.tolist(),
                    "box": None if p.box is None else p.box.tolist(),
                    "mask": {"dtype": str(p.mask.dtype), "data": p.mask.tolist()} if keep else None}

        planes = [{"plane": list(k), "objects": [obj(i, p) for i, p in o.items()]}
                  for k, o in self.items()]
        return {"format": _FORMAT, "version": 1, "planes": planes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptSet:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT or data.get("version") != 1:
            raise PromptError(f"not a {_FORMAT} version 1 dictionary (made by PromptSet.to_dict)")
        out = cls()
        planes = data.get("planes")
        if not isinstance(planes, list):
            raise PromptError(f"malformed {_FORMAT} dictionary: 'planes' must be a list")
        for n, plane in enumerate(planes):
            where = f"planes[{n}]"
            if not isinstance(plane, dict) or not isinstance(plane.get("objects"), list):
                raise PromptError(f"malformed {_FORMAT} dictionary: {where} must be "
                                  "{'plane': [...], 'objects': [...]}")
            for k, o in enumerate(plane["objects"]):
                at = f"{where}.objects[{k}]"
                if not isinstance(o, dict):
                    raise PromptError(f"malformed {_FORMAT} dictionary: {at} is not an object")
                m = o.get("mask")
                if m is not None and not (isinstance(m, dict) and "data" in m and "dtype" in m):
                    raise PromptError(f"malformed {_FORMAT} dictionary: {at}.mask must be "
                                      "{'dtype': ..., 'data': [[...]]} (as to_dict writes it)")
                try:
                    mask = None if m is None else np.asarray(m["data"], dtype=m["dtype"])
                    pts = np.asarray(o.get("points", []), dtype=np.float64)
                    prompt = ObjectPrompt(pts, o.get("labels"), o.get("box"), mask)
                    out.add(plane.get("plane"), o.get("id"), prompt)
                except PromptError as exc:
                    raise PromptError(f"{at}: {exc}") from None
                except (KeyError, TypeError, ValueError) as exc:
                    raise PromptError(f"malformed {_FORMAT} dictionary at {at}: {exc}") from exc
        return out


def merge_prompts(*sets: PromptSet) -> PromptSet:
    """Merge prompt sets (e.g. points and boxes) with :meth:`PromptSet.add` semantics."""
    out = PromptSet()
    for n, s in enumerate(sets):
        if not isinstance(s, PromptSet):
            raise PromptError(f"argument {n} of merge_prompts is a {type(s).__name__}, "
                              "not a PromptSet")
        for key, objs in s.items():
            for oid, prompt in objs.items():
                out.add(key, oid, prompt)
    return out
