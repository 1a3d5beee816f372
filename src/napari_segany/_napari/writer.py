"""The npe2 writer: a Labels layer saved as a napari-segany labels store or a TIFF (no Qt).

Labels -> ``.zarr`` (a napari-segany labels store, one chunk per plane) or ``.tif``/
``.tiff`` (zlib-compressed up to 256 MiB). Data are read plane by plane and written into
a temporary sibling that replaces the target only when complete
(:func:`napari_segany.storage.replacing`), so a failed write never leaves a half-written
file, and an existing store is only replaced once the new one is whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import iter_keys
from ..io import IN_MEMORY_MAX_BYTES
from ..storage.atomic import replacing
from ..storage.labels import LabelsStore, is_labels_store
from .reader import fits

__all__ = ["write_labels"]

_TIFF = (".tif", ".tiff")


def _base_data(data: Any, meta: dict[str, Any]) -> Any:
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        return data[0]
    return data


def _planes(data: Any) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(plane key, (H, W) uint32 plane)`` in C order, checked to fit uint32."""
    for key in iter_keys(tuple(data.shape[:-2])):
        plane = np.asarray(data[key])
        if plane.dtype.kind not in "biu":
            raise ValueError(f"labels must be integers, got dtype {plane.dtype}")
        if plane.size and (plane.min() < 0 or plane.max() > np.iinfo(np.uint32).max):
            raise ValueError(f"plane {key} holds labels outside 0..{np.iinfo(np.uint32).max}")
        yield key, plane.astype(np.uint32, copy=False)


def _layer_info(meta: dict[str, Any], ndim: int) -> dict[str, Any]:
    info: dict[str, Any] = {"name": meta.get("name")}
    for key in ("scale", "translate"):
        vals = fits(list(np.ravel(meta[key])) if meta.get(key) is not None else None, ndim)
        if vals is not None:
            info[key] = vals
    return info


def _write_zarr(path: Path, data: Any, meta: dict[str, Any]) -> None:
    if path.exists() and not is_labels_store(path):
        raise ValueError(f"{path} exists and is not a napari-segany labels store; choose "
                         "another file name (it was left untouched)")
    with replacing(path) as tmp:
        store = LabelsStore.create(tmp, tuple(data.shape),
                                   provenance={"layer": _layer_info(meta, data.ndim)})
        ids: set[int] = set()
        for key, plane in _planes(data):
            if plane.any():
                store.write_plane(key, plane)
                ids.update(int(i) for i in np.unique(plane) if i)
        store.set_objects({oid: {} for oid in sorted(ids)})


def _write_tiff(path: Path, data: Any, meta: dict[str, Any]) -> None:
    """Compressed (zlib) up to 256 MiB; larger labels are streamed plane by plane, raw."""
    import tifffile

    dtype = data.dtype if np.dtype(data.dtype).kind == "u" and data.dtype.itemsize <= 4 \
        else np.dtype(np.uint32)
    nbytes = int(np.prod(data.shape)) * np.dtype(dtype).itemsize
    info = _layer_info(meta, data.ndim)
    extra = {k: info[k] for k in ("scale", "translate") if k in info}
    planes = (p.astype(dtype, copy=False) for _, p in _planes(data))
    small = nbytes <= IN_MEMORY_MAX_BYTES
    with replacing(path) as tmp:
        tifffile.imwrite(
            tmp, np.stack(list(planes)).reshape(data.shape) if small else planes,
            shape=tuple(data.shape), dtype=dtype, bigtiff=nbytes > 2**32 - 2**25,
            compression="zlib" if small else None, photometric="minisblack",
            metadata={"napari_segany_labels": True, **extra})


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Labels: ``.zarr`` (labels store) or ``.tif``/``.tiff``.

    Parameters
    ----------
    path : str
        Target file; its extension picks the format.
    data : array-like
        ``(..., H, W)`` non-negative integer labels (numpy, zarr, dask; read plane by plane).
    meta : dict
        The layer's attributes (``name``, ``scale``, ``translate`` are recorded).

    Returns
    -------
    list of str
        The path written.
    """
    p = Path(path)
    data = _base_data(data, meta)
    if getattr(data, "ndim", 0) < 2:
        raise ValueError(f"labels need 2 or more axes, got shape {getattr(data, 'shape', None)}")
    name = p.name.lower()
    if name.endswith(".zarr"):
        _write_zarr(p, data, meta)
    elif name.endswith(_TIFF):
        _write_tiff(p, data, meta)
    else:
        raise ValueError(f"cannot write labels as {p.name!r}: use a .zarr or .tif/.tiff name")
    return [str(p)]
