"""napari reader and writer contributions (npe2); plain Python, no Qt, no napari import.

Reader
    * a labels store written by napari-segany (a zarr directory whose array attributes
      hold ``"napari_segany"``) -> a Labels layer backed by the zarr array itself: planes
      are read on demand, never the whole volume; edits made in napari go straight to
      the store (one plane chunk at a time);
    * TIFF (lazy above 256 MiB, see :func:`napari_segany.io.read_image`) -> an Image
      layer, with the voxel size from ImageJ metadata or from this plugin's TIFF writer;
    * NIfTI (``.nii``, ``.nii.gz``) -> an Image layer ``(z, y, x)`` (the file's axes
      reversed) with ``scale`` = voxel spacing; the file's affine is kept in metadata.

Writer
    Labels -> ``.zarr`` (a napari-segany labels store, one chunk per plane) or
    ``.tif``/``.tiff`` (zlib-compressed up to 256 MiB). Data are read plane by plane and
    written into a temporary sibling that replaces the target only when complete, so a
    failed write never leaves a half-written file, and an existing store is only
    replaced once the new one is whole.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["get_reader", "read_labels_store", "read_tiff", "read_nifti", "write_labels",
           "is_labels_store"]

LayerData = list[tuple[Any, dict[str, Any], str]]
_TIFF = (".tif", ".tiff")
_NIFTI = (".nii", ".nii.gz")
#: TIFF labels up to this size are written compressed from memory (tifffile cannot
#: compress a stream of planes); larger ones are streamed uncompressed.
_TIFF_IN_MEMORY = 256 * 2**20


# ---------------------------------------------------------------------------------- reading
def is_labels_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr array written by napari-segany (reads only its metadata)."""
    from .labels import ATTRS_KEY

    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(attrs, dict) and ATTRS_KEY in attrs


def get_reader(path: str | list[str]) -> Callable[[Any], LayerData] | None:
    """npe2 reader: a reader function for ``path``, or None when this plugin cannot read it."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    name = p.name.lower()
    if name.endswith(_NIFTI) and p.is_file():
        return read_nifti
    if name.endswith(_TIFF) and p.is_file():
        return read_tiff
    if p.is_dir() and is_labels_store(p):
        return read_labels_store
    return None


def _one(path: Any) -> Path:
    return Path(path[0] if isinstance(path, (list, tuple)) else path)


def _stem(p: Path) -> str:
    name = p.name
    for ext in (".nii.gz", ".nii", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".zarr"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return p.stem


def _fits(values: Any, ndim: int) -> list[float] | None:
    if not isinstance(values, (list, tuple)) or len(values) != ndim:
        return None
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(np.isfinite(out)) else None


def read_labels_store(path: str | os.PathLike | list) -> LayerData:
    """A napari-segany labels store as a lazy Labels layer (zarr array, no copy).

    The layer's ``scale``/``translate`` come from the store's provenance (the image layer
    the widget segmented), its ``metadata`` holds the provenance and the store path.
    """
    from .labels import ATTRS_KEY, LabelsStore, LabelsStoreError

    p = _one(path)
    try:
        store = LabelsStore.open(p, mode="r+")
    except (LabelsStoreError, OSError, PermissionError):
        store = LabelsStore.open(p, mode="r")
    prov = store.provenance
    kwargs: dict[str, Any] = {"name": _stem(p),
                              "metadata": {ATTRS_KEY: prov, "path": str(p)}}
    layer = prov.get("layer") or {}
    for key in ("scale", "translate"):
        vals = _fits(layer.get(key), len(store.shape))
        if vals is not None:
            kwargs[key] = vals
    return [(store.array, kwargs, "labels")]


def _tiff_scale(p: Path, ndim: int, rgb: bool) -> list[float] | None:
    """Voxel size along the data axes from ImageJ metadata or this plugin's writer."""
    import tifffile

    with tifffile.TiffFile(p) as tif:
        shaped = tif.shaped_metadata[0] if tif.shaped_metadata else None
        if shaped and _fits(shaped.get("scale"), ndim - rgb):
            return _fits(shaped.get("scale"), ndim - rgb)
        ij = tif.imagej_metadata
        if not ij:
            return None
        axes = tif.series[0].axes  # e.g. "TZYX", "ZCYX", "YXS"
        page = tif.pages.first
        sizes: dict[str, float] = {}
        for axis, tag in (("X", "XResolution"), ("Y", "YResolution")):
            t = page.tags.get(tag)
            if t is not None:
                num, den = t.value
                if num and den:
                    sizes[axis] = den / num
        if ij.get("spacing"):
            sizes["Z"] = float(ij["spacing"])
    if len(axes) != ndim:
        return None
    scale = [sizes.get(a, 1.0) for a in axes if a != "S"]
    return scale if any(s != 1.0 for s in scale) and all(s > 0 for s in scale) else None


def read_tiff(path: str | os.PathLike | list) -> LayerData:
    """A TIFF file as an Image layer (lazy for large files), with its voxel size."""
    from .io import read_image

    p = _one(path)
    img = read_image(p)
    kwargs: dict[str, Any] = {"name": _stem(p), "rgb": bool(img.rgb),
                              "metadata": {"path": str(p)}}
    try:
        scale = _tiff_scale(p, len(img.data.shape), img.rgb)
    except Exception:  # metadata is a bonus: never fail to open the pixels because of it
        scale = None
    if scale is not None:
        kwargs["scale"] = scale
    return [(img.data, kwargs, "image")]


def read_nifti(path: str | os.PathLike | list) -> LayerData:
    """A NIfTI file as an Image layer ``(z, y, x)`` (``(t, z, y, x)`` for 4D) with scale."""
    from .io import read_image

    p = _one(path)
    img = read_image(p)
    kwargs: dict[str, Any] = {"name": _stem(p), "rgb": False,
                              "metadata": {"path": str(p), "nifti_affine": img.affine.tolist()
                                           if img.affine is not None else None}}
    if img.spacing is not None:
        scale = [float(s) if s and s > 0 else 1.0 for s in img.spacing]
        if len(scale) == img.data.ndim:
            kwargs["scale"] = scale
    return [(img.data, kwargs, "image")]


# ---------------------------------------------------------------------------------- writing
def _base_data(data: Any, meta: dict[str, Any]) -> Any:
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        return data[0]
    return data


def _planes(data: Any) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(plane key, (H, W) uint32 plane)`` in C order, checked to fit uint32."""
    for key in np.ndindex(*tuple(data.shape[:-2])):
        plane = np.asarray(data[key])
        if plane.dtype.kind not in "biu":
            raise ValueError(f"labels must be integers, got dtype {plane.dtype}")
        if plane.size and (plane.min() < 0 or plane.max() > np.iinfo(np.uint32).max):
            raise ValueError(f"plane {key} holds labels outside 0..{np.iinfo(np.uint32).max}")
        yield key, plane.astype(np.uint32, copy=False)


def _layer_info(meta: dict[str, Any], ndim: int) -> dict[str, Any]:
    info: dict[str, Any] = {"name": meta.get("name")}
    for key in ("scale", "translate"):
        vals = _fits(list(np.ravel(meta[key])) if meta.get(key) is not None else None, ndim)
        if vals is not None:
            info[key] = vals
    return info


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink(missing_ok=True)


def _write_zarr(path: Path, data: Any, meta: dict[str, Any]) -> None:
    from .labels import LabelsStore

    if path.exists() and not is_labels_store(path):
        raise ValueError(f"{path} exists and is not a napari-segany labels store; choose "
                         "another file name (it was left untouched)")
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    _remove(tmp)
    try:
        store = LabelsStore.create(tmp, tuple(data.shape),
                                   provenance={"layer": _layer_info(meta, data.ndim)})
        ids: set[int] = set()
        for key, plane in _planes(data):
            if plane.any():
                store.write_plane(key, plane)
                ids.update(int(i) for i in np.unique(plane) if i)
        for oid in sorted(ids):
            store.set_object(oid)
        old = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    except BaseException:
        _remove(tmp)
        raise


def _write_tiff(path: Path, data: Any, meta: dict[str, Any]) -> None:
    """Compressed (zlib) up to 256 MiB; larger labels are streamed plane by plane, raw."""
    import tifffile

    dtype = data.dtype if np.dtype(data.dtype).kind == "u" and data.dtype.itemsize <= 4 \
        else np.dtype(np.uint32)
    nbytes = int(np.prod(data.shape)) * np.dtype(dtype).itemsize
    tmp = path.with_name(f".{path.name}.writing-{os.getpid()}")
    info = _layer_info(meta, data.ndim)
    extra = {k: info[k] for k in ("scale", "translate") if k in info}
    planes = (p.astype(dtype, copy=False) for _, p in _planes(data))
    small = nbytes <= _TIFF_IN_MEMORY
    try:
        tifffile.imwrite(
            tmp, np.stack(list(planes)).reshape(data.shape) if small else planes,
            shape=tuple(data.shape), dtype=dtype, bigtiff=nbytes > 2**32 - 2**25,
            compression="zlib" if small else None, photometric="minisblack",
            metadata={"napari_segany_labels": True, **extra})
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


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
