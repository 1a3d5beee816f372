"""Shared parts of the label exporters: the input wrapper, dtype helpers and the checks
of output targets (see :mod:`napari_segany.exports`); targets are written through
:func:`napari_segany.storage.replacing`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ExportError
from ..storage.atomic import replacing
from ..storage.labels import LabelsStore


# ------------------------------------------------------------------------------ inputs
class _Labels:
    """An integer ``(..., H, W)`` array read plane by plane, and its provenance, if any."""

    def __init__(self, source: Any) -> None:
        self.store: LabelsStore | None = None
        if isinstance(source, (str, os.PathLike)):
            source = LabelsStore.open(source, mode="r")
        if isinstance(source, LabelsStore):
            self.store, self.array = source, source.array
            self.provenance: dict[str, Any] = source.provenance
        else:
            self.array, self.provenance = source, {}
        shape = getattr(self.array, "shape", None)
        dtype = getattr(self.array, "dtype", None)
        if shape is None or dtype is None:
            self.array = np.asarray(self.array)
            shape, dtype = self.array.shape, self.array.dtype
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) < 2 or 0 in self.shape:
            raise ExportError(f"labels must have 2 or more non-empty axes (..., H, W), "
                              f"got shape {self.shape}")
        if np.dtype(dtype).kind not in "biu":
            raise ExportError(f"labels must be integers (0 = background), got dtype {dtype}")
        self.lead = self.shape[:-2]

    @property
    def path(self) -> Path | None:
        return None if self.store is None else Path(self.store.path)

    def planes(self) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
        """``(plane key, (H, W) labels)`` for every plane in C order."""
        for key in np.ndindex(*self.lead):
            plane = np.asarray(self.array[key] if key else self.array[...])
            if plane.dtype.kind == "i" and plane.size and int(plane.min()) < 0:
                raise ExportError(f"plane {key} holds negative labels ({int(plane.min())}); "
                                  "labels must be >= 0")
            yield key, plane

    def max_id(self) -> int:
        """The largest id in the labels (one pass over the planes)."""
        return max((int(p.max()) for _, p in self.planes()), default=0)

    def source(self) -> dict[str, Any]:
        """What the command line recorded about the image the labels were drawn on."""
        src = self.provenance.get("source")
        return src if isinstance(src, dict) else {}


def _smallest_uint(max_id: int, choices: Sequence[str] = ("uint8", "uint16", "uint32")) -> Any:
    for name in choices:
        if max_id <= np.iinfo(name).max:
            return np.dtype(name)
    raise ExportError(f"label id {max_id} does not fit {choices[-1]}")


def _key_text(key: tuple[int, ...]) -> str:
    return " ".join(str(k) for k in key)


# ------------------------------------------------------------------------------ targets
def _check_target(path: str | os.PathLike, overwrite: bool, labels: _Labels) -> Path:
    """Refuse an output that exists (without ``overwrite``), is the input, or has no folder."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ExportError(f"{path} already exists; choose another output or pass "
                          "overwrite=True (--overwrite) to replace it")
    if path.exists():
        if labels.path is not None:
            src, dst = labels.path.resolve(), path.resolve()
            if src == dst or dst in src.parents:
                raise ExportError(f"{path} holds the labels being exported; choose another "
                                  "output")
        zarr_dir = any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))
        if path.is_dir() and not zarr_dir:
            raise ExportError(f"{path} is a folder that is not a zarr store; it is not "
                              "replaced even with overwrite: choose another output")
    if not path.parent.is_dir():
        raise ExportError(f"folder {path.parent} does not exist; create it first")
    return path


@contextlib.contextmanager
def _target(path: str | os.PathLike, overwrite: bool, labels: _Labels) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; move it to ``path`` when the block succeeds."""
    target = _check_target(path, overwrite, labels)
    with replacing(target) as tmp:
        try:
            yield tmp
        except OSError as exc:  # a full disk, a read-only folder: name the file, say what to do
            short = re.search(r"\d+ requested and \d+ written", str(exc))
            why = ("the disk is full" if short or exc.errno == errno.ENOSPC
                   else exc.strerror or str(exc))
            raise OSError(exc.errno or (errno.ENOSPC if short else None),
                          f"could not write {target}: {why} (nothing was written there; free "
                          "some disk space or choose another output, and export again)") from exc
