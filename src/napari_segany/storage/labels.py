"""Labels stores: uint32 instance labels in a zarr (v3) store on disk, one chunk per plane.

Layout and guarantees
---------------------
* The array has the image's shape without channels, e.g. ``(z, y, x)`` or ``(t, z, y, x)``;
  chunks are one 2D plane (``(1, ..., 1, H, W)``), so writing a plane touches no other plane.
* A plane is written as one chunk file, and zarr writes each file to a temporary name and
  renames it into place, so a crash or cancel leaves every plane either fully written or
  untouched. Empty planes are not stored at all (they read as 0).
* Object ids are positive integers; 0 is background.
* Overlap policy when an object is painted (:meth:`LabelsStore.paint`): ``"keep"`` (default)
  paints only pixels that are background or already belong to that object, so committed
  objects are never overwritten; ``"replace"`` lets the new mask win.
* Provenance lives in the array's attributes under ``"napari_segany"``: format version,
  package version, model signature, prompts, settings, per-object metadata (class names)
  and the planes written.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import check_plane
from .._version import __version__
from ..errors import LabelsStoreError, LabelsStoreIOError

__all__ = ["LabelsStore", "LabelsStoreError", "LabelsStoreIOError", "ATTRS_KEY", "FORMAT_VERSION",
           "is_labels_store"]

ATTRS_KEY = "napari_segany"
FORMAT_VERSION = 1
OVERLAP_POLICIES = ("keep", "replace")


def is_labels_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr array written by napari-segany (reads only its metadata)."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and ATTRS_KEY in attrs


class LabelsStore:
    """A zarr-backed uint32 labels volume written plane by plane.

    Use :meth:`create`, :meth:`open` or :meth:`open_or_create` rather than the constructor.
    """

    def __init__(self, array: Any, path: Path) -> None:
        self.array = array
        self.path = path

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        shape: tuple[int, ...],
        *,
        overwrite: bool = False,
        provenance: dict[str, Any] | None = None,
    ) -> LabelsStore:
        """Create an empty store of ``shape`` (ndim >= 2; the last two axes are y, x)."""
        import zarr

        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise LabelsStoreError(f"labels shape must have >= 2 non-empty axes, got {shape}")
        path = Path(path)
        if path.exists() and not overwrite:
            raise LabelsStoreError(
                f"{path} already exists; open it with LabelsStore.open(...) to continue, or "
                "pass overwrite=True to replace it"
            )
        chunks = (1,) * (len(shape) - 2) + shape[-2:]
        arr = zarr.create_array(
            store=str(path), shape=shape, chunks=chunks, dtype="uint32", fill_value=0,
            overwrite=overwrite, zarr_format=3,
        )
        meta = {"format": FORMAT_VERSION, "version": __version__, "objects": {}, "planes": []}
        meta.update(provenance or {})
        arr.attrs[ATTRS_KEY] = meta
        return cls(arr, path)

    @classmethod
    def open(cls, path: str | os.PathLike, *, mode: str = "r+") -> LabelsStore:
        """Open an existing store (``mode="r"`` for read-only)."""
        import zarr

        path = Path(path)
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
        return cls(arr, path)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, shape: tuple[int, ...],
                       **kw: Any) -> LabelsStore:
        """Reopen ``path`` if it exists (its shape must equal ``shape``), else create it."""
        if Path(path).exists():
            store = cls.open(path)
            if store.shape != tuple(shape):
                raise LabelsStoreError(
                    f"{path} holds labels of shape {store.shape}, but the image has shape "
                    f"{tuple(shape)}; choose another output path"
                )
            return store
        return cls.create(path, shape, **kw)

    # -- properties ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.shape[-2], self.shape[-1]

    @property
    def provenance(self) -> dict[str, Any]:
        """A deep copy of the provenance attributes (editing it does not change the store)."""
        return copy.deepcopy(dict(self.array.attrs[ATTRS_KEY]))

    def _check_writable(self) -> None:
        if getattr(self.array, "read_only", False):
            raise LabelsStoreError(
                f"{self.path} was opened read-only (mode='r'); reopen it with mode='r+' to write"
            )

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Re-raise an OSError of the storage as a LabelsStoreIOError naming this store."""
        try:
            yield
        except LabelsStoreIOError:
            raise
        except OSError as exc:
            msg = (f"could not write {what} of the labels store {self.path}: "
                   f"{exc.strerror or exc} (check free disk space and write permission)")
            err = LabelsStoreIOError(msg) if exc.errno is None else LabelsStoreIOError(
                exc.errno, msg)
            raise err from exc

    def _set_attrs(self, meta: dict[str, Any]) -> None:
        with self._writing("the provenance attributes"):
            self.array.attrs[ATTRS_KEY] = meta

    def update_provenance(self, **fields: Any) -> None:
        """Merge JSON-serialisable ``fields`` into the provenance attributes."""
        self._check_writable()
        meta = self.provenance
        meta.update(fields)
        self._set_attrs(meta)

    def set_object(self, obj_id: int, **info: Any) -> None:
        """Record metadata of one object (e.g. ``class_name="nucleus"``)."""
        self._check_writable()
        meta = self.provenance
        objects = dict(meta.get("objects", {}))
        key = str(int(obj_id))
        merged = {**objects.get(key, {}), **info}
        if key in objects and objects[key] == merged:
            return  # already recorded: propagation calls this for every plane it writes
        objects[key] = merged
        meta["objects"] = objects
        self._set_attrs(meta)

    def set_objects(self, infos: dict[int, dict[str, Any]]) -> None:
        """Record metadata of many objects in one attribute write (as :meth:`set_object`)."""
        self._check_writable()
        meta = self.provenance
        objects = dict(meta.get("objects", {}))
        for oid, info in infos.items():
            objects[str(int(oid))] = {**objects.get(str(int(oid)), {}), **info}
        meta["objects"] = objects
        self._set_attrs(meta)

    def next_object_id(self) -> int:
        """One more than the largest id recorded in the provenance."""
        ids = [int(k) for k in self.provenance.get("objects", {})]
        return max(ids, default=0) + 1

    # -- planes -------------------------------------------------------------------------------
    def _key(self, plane: tuple[int, ...] | int) -> tuple[int, ...]:
        return check_plane(plane, self.shape[:-2], error=LabelsStoreError,
                           what=f"the labels store {self.path} (shape {self.shape})")

    def read_plane(self, plane: tuple[int, ...] | int = ()) -> np.ndarray:
        """The ``(H, W)`` uint32 labels of one plane."""
        return np.asarray(self.array[self._key(plane)])

    def write_plane(self, plane: tuple[int, ...] | int, labels: np.ndarray) -> None:
        """Replace one whole plane with ``labels`` (``(H, W)``, non-negative integers)."""
        self._check_writable()
        key = self._key(plane)
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
        if lo < 0 or hi > np.iinfo(np.uint32).max:
            raise LabelsStoreError(
                f"plane {key}: labels must be integers in 0..{np.iinfo(np.uint32).max}, got "
                f"values from {lo} to {hi}")
        with self._writing(f"plane {key}"):
            self.array[key] = arr.astype(np.uint32, copy=False)
        self._mark_written(key)

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
        object's previous mask on that plane.
        """
        self._check_writable()
        if overlap not in OVERLAP_POLICIES:
            raise LabelsStoreError(f"overlap must be one of {OVERLAP_POLICIES}, got {overlap!r}")
        if int(obj_id) < 1:
            raise LabelsStoreError(f"object ids start at 1, got {obj_id}")
        mask = np.asarray(mask, dtype=bool)
        current = self.read_plane(plane)
        if mask.shape != current.shape:
            raise LabelsStoreError(
                f"mask of shape {mask.shape} does not fit planes of shape {current.shape}"
            )
        new = current.copy()
        new[new == obj_id] = 0
        target = mask if overlap == "replace" else mask & (new == 0)
        new[target] = obj_id
        self.write_plane(plane, new)
        return new

    def merge_plane(self, plane: tuple[int, ...] | int, labels: np.ndarray) -> np.ndarray:
        """Write ``labels`` into the background pixels of one plane; returns the new plane.

        Pixels that already hold an object keep it (the ``"keep"`` policy for a whole
        labels image, e.g. automatic results).
        """
        existing = self.read_plane(plane)
        new = np.where(existing > 0, existing, np.asarray(labels)).astype(np.uint32)
        self.write_plane(plane, new)
        return new

    def _mark_written(self, key: tuple[int, ...]) -> None:
        meta = self.provenance
        planes = {tuple(p) for p in meta.get("planes", [])}
        if key not in planes:
            planes.add(key)
            meta["planes"] = sorted(list(p) for p in planes)
            self._set_attrs(meta)

    def __repr__(self) -> str:
        return f"<LabelsStore {self.path} shape={self.shape}>"
