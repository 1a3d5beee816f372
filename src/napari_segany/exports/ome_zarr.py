"""OME-Zarr labels (NGFF 0.4 ``image-label``), optionally with the image under them.

Layout of ``seg.ome.zarr`` (zarr format 2, ``/``-separated chunk keys)::

    .zattrs              the image's "multiscales" and "omero" (when an image is written)
    0/ 1/ ...            the image's levels (when an image is written)
    labels/.zattrs       {"labels": [NAME]}
    labels/NAME/.zattrs  "multiscales" (axes, scale per level) and "image-label" (colours,
                         properties per object id, the source image)
    labels/NAME/0/ 1/    the labels' levels, uint32, one chunk per plane (tiles of 1024 px)

Why NGFF 0.4 (zarr format 2) and not 0.5 (zarr format 3): every reader the annotators use
opens 0.4 today, napari-ome-zarr, vizarr, Fiji's N5/OME-Zarr importer, BigDataViewer and
MoBIE; MoBIE and Fiji's importer cannot open zarr format 3 yet (mobie-viewer-fiji issue
1250, the 0.5 support of mobie-utils-python is still pending), while every 0.5 reader also
reads 0.4.

The metadata are written by ome-zarr-py (the OME reference implementation, which also
checks axes and transformations); the pixels are written here, one plane at a time from
the labels store, so a volume larger than memory exports in bounded memory. Levels halve
``y`` and ``x`` by taking every other pixel (labels must not be averaged, and striding
keeps each level's pixel centres on level-0 centres, so one translation serves all
levels); leading axes (``z``, ``t``) are never downsampled (anisotropic volumes).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import zarr

from ..io import file_stem, read_image
from .common import ExportError, _Labels, _target
from .dicom import _rgb
from .tables import _class_names
from .volumes import _spacing

__all__ = ["export_ome_zarr", "NGFF_VERSION"]

#: The NGFF version written (see the module docstring for why).
NGFF_VERSION = "0.4"
_TILE = 1024  # chunk side of a plane
_SMALLEST = 512  # automatic levels stop when a level's longest side is at most this
_MAX_LEVELS = 8
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_UNITS = {"um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer",
          "microns": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter",
          "m": "meter", "a": "angstrom", "å": "angstrom"}
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _ome() -> SimpleNamespace:
    """ome-zarr-py's NGFF 0.4 format and metadata writers (imported when first needed)."""
    with warnings.catch_warnings():  # ome-zarr 0.18 warns of its own Scaler at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.axes import KNOWN_SPATIAL_UNITS
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_label_metadata, write_multiscales_metadata
    return SimpleNamespace(FormatV04=FormatV04, write_label_metadata=write_label_metadata,
                           write_multiscales_metadata=write_multiscales_metadata,
                           KNOWN_SPATIAL_UNITS=KNOWN_SPATIAL_UNITS)


def _default_axes(lab: _Labels) -> str:
    n = len(lab.shape)
    if not 2 <= n <= 5:
        raise ExportError(f"OME-Zarr holds 2 to 5 axes (t, c, z, y, x); labels have {n}")
    src = lab.source()
    if n == 3 and (src.get("format") in ("frames", "video")
                   or str(src.get("path", "")).lower().endswith((".mp4", ".mov", ".avi",
                                                                  ".mkv", ".m4v", ".webm"))):
        return "tyx"  # a time series the command line read from frames or a video
    return {2: "yx", 3: "zyx", 4: "tzyx", 5: "tczyx"}[n]


def _check_axes(axes: str, ndim: int) -> str:
    axes = axes.lower()
    order = "tczyx"
    if (len(axes) != ndim or len(set(axes)) != ndim or not axes.endswith("yx")
            or any(a not in order for a in axes) or list(axes) != sorted(axes, key=order.index)):
        raise ExportError(f"axes {axes!r} must name each of the {ndim} labels axes once, in the "
                          "order t, c, z, y, x and ending with 'yx' (e.g. 'zyx', 'tyx', "
                          "'tzyx')")
    return axes


def _unit(unit: str | None) -> str | None:
    if not unit:
        return None
    name = _UNITS.get(unit.strip().lower(), unit.strip().lower())
    if name not in _ome().KNOWN_SPATIAL_UNITS:
        raise ExportError(f"unknown unit {unit!r}: use an NGFF unit such as micrometer (um), "
                          "nanometer (nm) or millimeter (mm)")
    return name


def _levels(levels: int | None, shape: tuple[int, ...]) -> int:
    side = max(shape[-2:])
    most = min(_MAX_LEVELS, int(math.log2(min(shape[-2:]))) + 1)
    if levels is None:
        n = 1
        while n < most and math.ceil(side / 2 ** (n - 1)) > _SMALLEST:
            n += 1
        return n
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) \
            or not 1 <= levels <= most:
        raise ExportError(f"levels must be a whole number from 1 to {most} for planes of "
                          f"{shape[-2]} x {shape[-1]} pixels, got {levels!r}")
    return int(levels)


def _geometry(lab: _Labels, spacing: Sequence[float] | None,
              translate: Sequence[float] | None) -> tuple[list[float], list[float]]:
    """Voxel size and offset per labels axis: given, or the source's, or the napari layer's."""
    layer = lab.provenance.get("layer") if isinstance(lab.provenance.get("layer"), dict) else {}
    n = len(lab.shape)
    sp = _spacing(lab, spacing)
    if sp is None and isinstance(layer.get("scale"), (list, tuple)) and len(layer["scale"]) == n:
        sp = _spacing(lab, layer["scale"])
    if translate is not None:
        offset = [float(v) for v in translate]
        if len(offset) != n or not all(math.isfinite(v) for v in offset):
            raise ExportError(f"translate must be {n} finite numbers, one per labels axis "
                              f"{lab.shape}, got {list(translate)}")
        return list(sp or [1.0] * n), offset
    offset = layer.get("translate")
    ok = isinstance(offset, (list, tuple)) and len(offset) == n and all(
        isinstance(v, (int, float)) and math.isfinite(v) for v in offset)
    return list(sp or [1.0] * n), [float(v) for v in offset] if ok else [0.0] * n


def _image(image: Any, lab: _Labels) -> tuple[Any, str | None, bool]:
    """``(array, name, rgb)`` of the image to write, or ``(None, None, False)``."""
    if image is None or image is False:
        return None, None, False
    name = "image"
    if image is True:
        src = lab.source().get("path")
        if not src or not Path(src).exists():
            raise ExportError("image=True takes the source image the store recorded, but "
                              + ("it records none" if not src else f"{src} no longer exists")
                              + "; pass the image itself (image=, --image PATH) or leave it out")
        image = src
    if isinstance(image, (str, os.PathLike)):
        name = file_stem(image)
        image = read_image(image).data
    shape = tuple(int(s) for s in image.shape)
    rgb = len(shape) == len(lab.shape) + 1 and shape[-1] in (3, 4)
    if (shape[:-1] if rgb else shape) != lab.shape:
        raise ExportError(f"the image {shape} does not fit the labels {lab.shape}: it needs "
                          "the labels' shape (RGB channels last allowed)")
    if np.dtype(image.dtype).kind not in "buif":
        raise ExportError(f"cannot write an image of dtype {image.dtype} to OME-Zarr")
    return image, re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "image", rgb


def _objects(lab: _Labels, seen: dict[int, int], class_names: Any,
             classes: Mapping[int, Any] | None) -> tuple[list[dict], list[dict]] | None:
    """``(colors, properties)`` of ``image-label`` for every object present or registered."""
    registry = {int(k): v for k, v in (lab.provenance.get("objects") or {}).items()
                if isinstance(v, dict)}
    names, _ = _class_names(lab, None if isinstance(class_names, str) else class_names)
    table = {int(k): ({"name": v} if isinstance(v, str) else dict(v))
             for k, v in (classes or {}).items()}
    by_name = {str(v.get("name", "")).lower(): v for v in table.values() if v.get("name")}
    ids = sorted(set(seen) | set(registry))
    colors, props = [], []
    for oid in ids:
        name = class_names if isinstance(class_names, str) else (
            names.get(oid) or table.get(oid, {}).get("name"))
        entry = by_name.get(str(name).lower(), table.get(oid, {})) if name else table.get(oid, {})
        colors.append({"label-value": oid, "rgba": [*_rgb(entry.get("color"), oid), 255]})
        prop: dict[str, Any] = {"label-value": oid}
        if name:
            prop["class"] = str(name)
        if oid in seen:
            prop["pixels"] = seen[oid]
        prop.update({k: v for k, v in registry.get(oid, {}).items() if k != "class_name"
                     and k not in prop and isinstance(v, (str, int, float, bool))})
        props.append(prop)
    classy = bool(class_names or classes or any(p.get("class") for p in props))
    return (colors if classy else [], props) if ids else None


def _create(group: zarr.Group, path: str, shape: tuple[int, ...], dtype: Any, fmt: Any,
            channel_at: int | None = None) -> zarr.Array:
    from numcodecs import Blosc

    chunks = [1] * (len(shape) - 2) + [min(shape[-2], _TILE), min(shape[-1], _TILE)]
    # blosc-zstd: the codec ome-zarr-py writes by default, which every reader decodes
    return group.create_array(path, shape=shape, chunks=tuple(chunks), dtype=dtype,
                              fill_value=0, chunk_key_encoding=fmt.chunk_key_encoding,
                              compressors=Blosc(cname="zstd", clevel=5,
                                                shuffle=Blosc.SHUFFLE))


def _datasets(n: int, scale: list[float], offset: list[float], yx: tuple[int, int]) -> list:
    out = []
    for k in range(n):
        s = list(scale)
        for i in yx:
            s[i] = scale[i] * 2**k
        ct: list[dict] = [{"type": "scale", "scale": s}]
        if any(offset):
            ct.append({"type": "translation", "translation": list(offset)})
        out.append({"path": str(k), "coordinateTransformations": ct})
    return out


class _ImageLevels:
    """The image's levels at the root of the OME-Zarr, written plane by plane with the labels.

    An RGB(A) image gets a ``c`` axis at ``ci`` (after ``t``, before the space axes), as
    NGFF orders axes; each channel's range is tracked for the ``omero`` display windows.
    """

    def __init__(self, root: zarr.Group, image: Any, rgb: bool, ci: int,
                 label_levels: list[zarr.Array], fmt: Any) -> None:
        self.image, self.rgb, self.ci, self.fmt, self.root = image, rgb, ci, fmt, root
        nch = int(image.shape[-1]) if rgb else 0
        dtype = np.uint8 if image.dtype == bool else image.dtype
        self.levels = [_create(root, str(k), (out.shape[:ci] + (nch,) + out.shape[ci:])
                               if rgb else out.shape, dtype, fmt)
                       for k, out in enumerate(label_levels)]
        self.lo = np.full(max(nch, 1), np.inf)
        self.hi = np.full(max(nch, 1), -np.inf)

    def write(self, key: tuple[int, ...]) -> None:
        pix = np.asarray(self.image[key] if key else self.image[...])
        if pix.dtype == bool:
            pix = pix.astype(np.uint8)
        pix = np.moveaxis(pix, -1, 0) if self.rgb else pix
        with warnings.catch_warnings():  # an all-NaN plane
            warnings.simplefilter("ignore", RuntimeWarning)
            over = (1, 2) if self.rgb else None
            self.lo = np.fmin(self.lo, np.nanmin(pix, axis=over))
            self.hi = np.fmax(self.hi, np.nanmax(pix, axis=over))
        where = (key[: self.ci] + (slice(None),) + key[self.ci:]) if self.rgb else key
        for k, out in enumerate(self.levels):
            out[where if where else ...] = pix[..., :: 2**k, :: 2**k]

    def write_metadata(self, name: str, n_levels: int, scale: list[float],
                       offset: list[float], axes_md: list[dict]) -> None:
        ci, rgb = self.ci, self.rgb
        axes = axes_md[:ci] + [{"name": "c", "type": "channel"}] + axes_md[ci:] if rgb \
            else axes_md
        if rgb:
            scale, offset = scale[:ci] + [1.0] + scale[ci:], offset[:ci] + [0.0] + offset[ci:]
        colours = ["FF0000", "00FF00", "0000FF", "FFFFFF"] if rgb else ["FFFFFF"]
        channels = []
        for c in range(len(self.lo)):
            lo, hi = float(self.lo[c]), float(self.hi[c])
            lo, hi = (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else (0.0, 1.0)
            channels.append({"label": "RGBA"[c] if rgb else "intensity", "color": colours[c],
                             "active": True,
                             "window": {"min": lo, "max": hi, "start": lo, "end": hi}})
        omero = {"name": name, "version": NGFF_VERSION, "channels": channels,
                 "rdefs": {"model": "color" if rgb else "greyscale"}}
        _ome().write_multiscales_metadata(
            self.root, _datasets(n_levels, scale, offset, (len(axes) - 2, len(axes) - 1)),
            fmt=self.fmt, axes=axes, name=name, metadata={"omero": omero})


def export_ome_zarr(
    labels: Any,
    path: str | os.PathLike,
    *,
    image: Any = None,
    name: str | None = None,
    axes: str | None = None,
    spacing: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    unit: str | None = None,
    levels: int | None = None,
    class_names: Mapping[int, str] | str | None = None,
    classes: Mapping[int, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write labels as OME-Zarr (NGFF 0.4 image-label), plane by plane, with levels.

    Parameters
    ----------
    labels : LabelsStore, path of one, or integer array, shape (..., H, W)
        Non-negative ids up to 2**32 - 1 (written as uint32); 2 to 5 axes.
    path : str or path
        The folder to create, e.g. ``seg.ome.zarr``.
    image : bool, array-like or path, optional
        The image under the labels, written at the root so the whole folder opens as an
        image with its labels: an array or file (:func:`~napari_segany.io.read_image`) of
        the labels' shape (RGB channels last allowed, written as a ``c`` axis), or True for
        the source image the store recorded. Default: labels only (open
        ``PATH/labels/NAME``).
    name : str, optional
        The labels' name (``labels/NAME``); default the store's folder name, else "labels".
    axes : str, optional
        Axis names in NGFF order, e.g. ``"zyx"``, ``"tyx"``, ``"tzyx"``; default by
        dimension ``yx``, ``zyx``, ``tzyx``, ``tczyx`` (``tyx`` for a store the command line
        made from frames or a video).
    spacing : sequence of float, optional
        Voxel size per labels axis (the level-0 ``scale``); default the source image's
        recorded spacing, else the napari layer's scale, else 1.
    translate : sequence of float, optional
        Position of the first voxel per labels axis (a ``translation``); default the napari
        layer's recorded offset, else none.
    unit : str, optional
        Unit of the space axes (``um``, ``nm``, ``mm`` or an NGFF name such as
        ``micrometer``); default the source's recorded unit, else none.
    levels : int, optional
        Number of resolution levels, each halving ``y`` and ``x``; default enough levels for
        the smallest plane to be at most 512 pixels a side (1 for small planes).
    class_names : mapping or str, optional
        ``{id: class}`` or one class for every object (overrides the store's class names).
    classes : mapping, optional
        Class table ``{id: {"name", "color": "#rrggbb" or (r, g, b)}}`` (a worklist's
        ``ClassTable.as_export()``): colours of the objects of each class.
    overwrite : bool
        Replace an existing OME-Zarr (never a folder that is not a zarr store).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    ``image-label`` holds, for every object present or registered, its ``properties``
    (``label-value``, ``class`` when known, ``pixels`` it covers, and the store's scalar
    object fields) and, when any class is known, its ``colors`` (the class table's colour,
    else a fixed palette by id, as in the DICOM-SEG export).
    """
    ome = _ome()
    lab = _Labels(labels)
    ax = _check_axes(axes or _default_axes(lab), len(lab.shape))
    name = name or (file_stem(lab.path) if lab.path is not None else "labels")
    if not _NAME.match(name):
        raise ExportError(f"labels name {name!r} must be letters, digits, '_', '-' or '.' "
                          "(no '/'), e.g. 'cells'")
    n_levels = _levels(levels, lab.shape)
    scale, offset = _geometry(lab, spacing, translate)
    unit = _unit(unit if unit is not None else lab.source().get("unit"))
    img, img_name, rgb = _image(image, lab)
    if rgb and "c" in ax:
        raise ExportError(f"labels with axes {ax!r} already have a channel axis; an RGB image "
                          "cannot be written with them (pass a grey image or none)")
    fmt, yx = ome.FormatV04(), (len(ax) - 2, len(ax) - 1)
    axes_md = [{"name": a, "type": _AXIS_TYPES[a], **({"unit": unit} if unit and
               _AXIS_TYPES[a] == "space" else {})} for a in ax]
    ci = 1 if ax.startswith("t") else 0  # where an RGB image's channel axis goes
    limit = np.iinfo(np.uint32).max
    seen: dict[int, int] = {}
    with _target(path, overwrite, lab) as tmp:
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=fmt.zarr_format)
        group = root.create_group("labels").create_group(name)
        outs = [_create(group, str(k), lab.shape[:-2] + tuple(
            math.ceil(s / 2**k) for s in lab.shape[-2:]), np.uint32, fmt)
            for k in range(n_levels)]
        pixels = None if img is None else _ImageLevels(root, img, rgb, ci, outs, fmt)
        for key, plane in lab.planes():
            if plane.size and int(plane.max()) > limit:
                raise ExportError(f"plane {key} holds id {int(plane.max())}, above uint32")
            plane = plane.astype(np.uint32, copy=False)
            ids, counts = np.unique(plane[plane != 0], return_counts=True)
            for i, c in zip(ids.tolist(), counts.tolist(), strict=True):
                seen[i] = seen.get(i, 0) + c
            for k, out in enumerate(outs):
                out[key if key else ...] = plane[:: 2**k, :: 2**k]
            if pixels is not None:
                pixels.write(key)
        ome.write_multiscales_metadata(group, _datasets(n_levels, scale, offset, yx), fmt=fmt,
                                       axes=axes_md, name=name)
        label_md: dict[str, Any] = {}
        if img is not None:
            label_md["source"] = {"image": "../../"}
        objects = _objects(lab, seen, class_names, classes)
        if objects is not None:
            colors, props = objects
            if colors:
                label_md["colors"] = colors
            label_md["properties"] = props
        ome.write_label_metadata(root["labels"], name, fmt=fmt, **label_md)
        if pixels is not None:
            pixels.write_metadata(img_name, n_levels, scale, offset, axes_md)
    return Path(path)
