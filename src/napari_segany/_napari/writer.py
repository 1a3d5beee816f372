"""The npe2 writer: a Labels layer saved as a napari-segany labels store, an OME-Zarr or a
TIFF (no Qt).

Labels -> ``.zarr`` (a napari-segany labels store, one chunk per plane), ``.ome.zarr``
(OME-Zarr labels, NGFF 0.4, see :func:`napari_segany.exports.export_ome_zarr`) or
``.tif``/``.tiff`` (zlib-compressed up to 256 MiB). Data are read plane by plane and written into
a temporary sibling that replaces the target only when complete
(:func:`napari_segany.storage.replacing`), so a failed write never leaves a half-written
file, and an existing store is only replaced once the new one is whole.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import iter_keys
from ..exports import export_ome_zarr
from ..io import IN_MEMORY_MAX_BYTES
from ..storage.atomic import replacing
from ..storage.labels import LabelsStore, is_labels_store
from .reader import LABELS_TAG, fits

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


def _ome_zarr_holds_more(path: Path, name: str) -> str | None:
    """What an existing OME-Zarr holds besides labels ``name`` (an image, other labels), or
    None when replacing it loses nothing but those labels."""
    def attrs(folder: Path) -> dict[str, Any]:
        for file in (".zattrs", "zarr.json"):
            with contextlib.suppress(OSError, ValueError, TypeError):
                found = json.loads((folder / file).read_text())
                found = found.get("attributes", found) if file == "zarr.json" else found
                return found.get("ome", found) if isinstance(found, dict) else {}
        return {}

    if not path.is_dir():
        return None
    if attrs(path).get("multiscales"):
        return "an image"
    others = [str(n) for n in attrs(path / "labels").get("labels") or [] if n != name]
    return f"other labels ({', '.join(others)})" if others else None


def _write_ome_zarr(path: Path, data: Any, meta: dict[str, Any]) -> None:
    """OME-Zarr labels named after the layer. An existing OME-Zarr of these labels alone is
    replaced (napari has asked); one that holds an image or other labels never is, nor a
    folder that is not a zarr store."""
    info = _layer_info(meta, data.ndim)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(info.get("name") or "labels")).lstrip(".-")
    name = name or "labels"
    more = _ome_zarr_holds_more(path, name)
    if more is not None:
        raise ValueError(f"{path} holds {more}, which saving these labels would delete; it "
                         "was left untouched: choose another file name")
    export_ome_zarr(data, path, name=name, spacing=info.get("scale"),
                    translate=info.get("translate"), overwrite=True)


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
            metadata={LABELS_TAG: True, **extra})


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Labels: ``.zarr`` (labels store), ``.ome.zarr`` (OME-Zarr
    labels) or ``.tif``/``.tiff``.

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
    if name.endswith(".ome.zarr"):
        _write_ome_zarr(p, data, meta)
    elif name.endswith(".zarr"):
        _write_zarr(p, data, meta)
    elif name.endswith(_TIFF):
        _write_tiff(p, data, meta)
    else:
        raise ValueError(f"cannot write labels as {p.name!r}: use a .zarr, .ome.zarr or "
                         ".tif/.tiff name")
    return [str(p)]
