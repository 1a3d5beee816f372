"""Labels as DICOM Segmentation objects (DICOM-SEG, through highdicom) on a source series.

A DICOM export refers to the DICOM image series the labels were drawn on (its UIDs,
frame of reference, geometry): ``reference=`` (a folder, DICOMDIR or file, with
``series=`` when it holds several), else the source the command line recorded in the
store's provenance. The labels must have that series' ``(z, y, x)`` shape.

Segments: one per object (``segments="object"``, the default) or one per class name
(``"class"``: the objects of one class merged). Each segment has a label, a colour and
coded terms (segmented property category and type): from the class table (``classes=``,
``{id: {"name", "color", "code"}}`` as :class:`napari_segany.cases.ClassTable` keeps
it), else looked up by name in DICOM's SNOMED CT codes (:func:`code_for`: "liver",
"spleen", "left kidney", "lesion", ...), else the generic "Tissue". :mod:`.rtstruct`
writes RT Structure Sets from the same segments.

highdicom and pydicom are imported inside the functions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..io.dicom import DicomError, DicomVolume, read_dicom
from .common import ExportError, _check_target, _Labels, _target

__all__ = ["export_dicom_seg", "code_for", "Segment", "segments_of", "reference_volume",
           "present_ids", "source_datasets", "PALETTE"]

#: Default segment colours (RGB 0-255), by segment number (cycled).
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
           (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
           (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128)]
_ABNORMAL = ("lesion", "tumor", "tumour", "neoplasm", "mass", "nodule", "cyst", "metastasis",
             "carcinoma", "abscess", "hematoma", "haemorrhage", "hemorrhage", "infarct")


@dataclass
class Segment:
    """One output segment: its number (1, 2, ...), the labels ids it holds, its terms."""

    number: int
    ids: tuple[int, ...]
    label: str
    color: tuple[int, int, int]
    category: tuple[str, str, str]  # (scheme designator, code value, code meaning)
    type: tuple[str, str, str]


# ------------------------------------------------------------------------------ terms
def _camel(name: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", name) if w)


def code_for(name: str) -> dict[str, tuple[str, str, str]]:
    """DICOM coded terms for a structure name, from pydicom's SNOMED CT dictionary.

    Parameters
    ----------
    name : str
        E.g. ``"liver"``, ``"spinal cord"``, ``"left kidney"`` (laterality is dropped when
        only the organ has a code), ``"lesion"``.

    Returns
    -------
    dict
        ``{"category": (scheme, value, meaning), "type": (scheme, value, meaning)}``:
        category "Anatomical Structure" (or "Morphologically Abnormal Structure" for
        lesions, tumours, nodules, ...); type the structure's own code (for "liver
        lesion": Lesion), or "Tissue" when the name has none.
    """
    from pydicom.sr.codedict import codes

    def term(code: Any) -> tuple[str, str, str]:
        return (str(code.scheme_designator), str(code.value), str(code.meaning))

    words = name.strip().lower()
    abnormal = any(w in words for w in _ABNORMAL)
    category = (codes.cid7150.MorphologicallyAbnormalStructure if abnormal
                else codes.cid7150.AnatomicalStructure)
    found = None
    candidates = [words, re.sub(r"^(left|right|l|r)[\s_-]+", "", words)]
    candidates += [w for w in _ABNORMAL if w in words]  # "liver lesion": a Lesion
    for candidate in candidates:
        key = _camel(candidate)
        if not key:
            continue
        try:
            found = getattr(codes.SCT, key)
            break
        except AttributeError:
            continue
    if found is None:
        return {"category": term(codes.cid7150.Tissue), "type": term(codes.SCT.Tissue)}
    return {"category": term(category), "type": term(found)}


def _rgb(value: Any, number: int) -> tuple[int, int, int]:
    if value is None:
        return PALETTE[(number - 1) % len(PALETTE)]
    if isinstance(value, str):
        text = value.lstrip("#")
        if len(text) != 6:
            raise ExportError(f"colour {value!r} is not #rrggbb")
        return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    rgb = tuple(int(v) for v in value)
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ExportError(f"colour {value!r} is not three values 0-255")
    return rgb  # type: ignore[return-value]


def _term(value: Any, fallback: tuple[str, str, str]) -> tuple[str, str, str]:
    if value is None:
        return fallback
    if isinstance(value, dict):
        value = (value.get("scheme"), value.get("value"), value.get("meaning"))
    out = tuple(str(v) for v in value)
    if len(out) != 3 or not all(out):
        raise ExportError(f"a code is (scheme, value, meaning), e.g. ('SCT', '10200004', "
                          f"'Liver'); got {value!r}")
    return out  # type: ignore[return-value]


def segments_of(lab: _Labels, ids: list[int], *, classes: Any = None, class_names: Any = None,
                segments: str = "object") -> list[Segment]:
    """The output segments for the object ids present, named, coloured and coded.

    A name comes from ``class_names`` (``{id: name}`` or one name), else the store's
    object record (``class_name``), else the class table entry of that id, else
    ``"object <id>"``; the colour and codes from the class table entry of that name (or
    id), else :data:`PALETTE` and :func:`code_for`.
    """
    if segments not in ("object", "class"):
        raise ExportError(f"segments must be 'object' or 'class', got {segments!r}")
    table = {int(k): {"id": int(k), **dict(v)} for k, v in (classes or {}).items()}
    by_name = {str(v.get("name", "")).lower(): v for v in table.values() if v.get("name")}
    objects = lab.provenance.get("objects", {}) if lab.provenance else {}
    named: list[tuple[int, str, dict]] = []
    for oid in ids:
        if isinstance(class_names, str):
            name = class_names
        elif isinstance(class_names, dict) and oid in class_names:
            name = str(class_names[oid])
        else:
            name = ((objects.get(str(oid)) or {}).get("class_name")
                    or table.get(oid, {}).get("name") or f"object {oid}")
        entry = by_name.get(name.lower())
        if entry is None and table.get(oid, {}).get("name") in (None, "", name):
            entry = table.get(oid)
        named.append((oid, name, entry or {}))
    groups: dict[Any, list[tuple[int, str, dict]]] = {}
    for item in named:
        groups.setdefault(item[0] if segments == "object" else item[1].lower(), []).append(item)
    out = []
    for number, members in enumerate(groups.values(), start=1):
        oid, name, entry = members[0]
        auto = code_for(name)
        out.append(Segment(
            number=number, ids=tuple(m[0] for m in members), label=name,
            color=_rgb(entry.get("color"), int(entry.get("id") or oid)),
            category=_term(entry.get("category"), auto["category"]),
            type=_term(entry.get("code"), auto["type"])))
    return out


# ------------------------------------------------------------------------------ reference
def reference_volume(lab: _Labels, reference: str | os.PathLike | None,
                     series: str | None) -> DicomVolume:
    """The DICOM series the labels lie on: ``reference`` or the recorded source's."""
    src = lab.source()
    if reference is None:
        if src.get("format") != "dicom" or not src.get("path"):
            raise ExportError("a DICOM export needs the source DICOM series: pass reference= "
                              "(--reference DICOM_FOLDER); the store records no DICOM source")
        reference = src["path"]
        series = series or src.get("series_uid")
    if not Path(reference).exists():
        raise ExportError(f"reference DICOM series not found: {reference}")
    try:
        vol = read_dicom(reference, series=series)
    except DicomError as exc:
        raise ExportError(f"reference {reference}: {exc}") from exc
    if vol.affine_lps is None or vol.ndim != 3 or vol.rgb:
        raise ExportError(f"reference {reference} is not a volume with positions ({vol.shape})")
    if tuple(vol.shape) != lab.shape:
        raise ExportError(f"the labels have shape {lab.shape} but the reference series "
                          f"{vol.series.label()} has {tuple(vol.shape)} (z, y, x); export onto "
                          "the series the labels were drawn on")
    return vol


def present_ids(lab: _Labels) -> list[int]:
    """Every non-zero id in the labels (one pass over the planes)."""
    ids: set[int] = set()
    for _, plane in lab.planes():
        ids.update(int(v) for v in np.unique(plane) if v)
    return sorted(ids)


def source_datasets(vol: DicomVolume) -> tuple[list[Any], list[int]]:
    """The source images' headers, and for each array plane its frame in that order.

    Single-frame series: one dataset per plane, in array order. A multi-frame object: the
    one dataset, and the frame number of every plane (frames are in the file's order).
    """
    import pydicom

    files = list(dict.fromkeys(s.path for s in vol.slices))
    if vol.slices[0].frame is None:
        return [pydicom.dcmread(s.path, stop_before_pixels=True) for s in vol.slices], \
            list(range(len(vol.slices)))
    if len(files) != 1:
        raise ExportError(f"{vol.series.label()} spreads its frames over {len(files)} "
                          "multi-frame files; a DICOM export refers to one")
    return [pydicom.dcmread(files[0], stop_before_pixels=True)], \
        [int(s.frame) for s in vol.slices]  # type: ignore[arg-type]


def _person(name: str | None) -> str | None:
    if not name:
        return None
    return name if "^" in name else f"{name}^"


# ------------------------------------------------------------------------------ DICOM-SEG
def export_dicom_seg(
    labels: Any,
    path: str | os.PathLike,
    *,
    reference: str | os.PathLike | None = None,
    series: str | None = None,
    classes: Any = None,
    class_names: Any = None,
    segments: str = "object",
    labelmap: bool = False,
    creator: str | None = None,
    series_description: str = "napari-segany segmentation",
    overwrite: bool = False,
) -> Path:
    """Write labels as a DICOM Segmentation object (highdicom) referencing its source series.

    Parameters
    ----------
    labels : LabelsStore, path of one, or integer array, shape (z, y, x)
        On the grid of the reference series (planes in the series' order along the slice
        normal, as :func:`~napari_segany.io.read_dicom` returns them).
    path : str or path
        The ``.dcm`` file to write (e.g. ``case.seg.dcm``).
    reference : str or path, optional
        The source DICOM series (folder, DICOMDIR or file); default: the store's recorded
        source (``provenance["source"]`` with ``format == "dicom"``).
    series : str, optional
        Which series of ``reference`` (UID, number or description) when it holds several.
    classes : mapping, optional
        Class table ``{id: {"name": str, "color": "#rrggbb" or (r, g, b),
        "code": (scheme, value, meaning), "category": (...)}}``.
    class_names : dict or str, optional
        ``{id: name}`` or one name for all objects (overrides the store's class names).
    segments : {"object", "class"}
        One segment per object id, or per class name (objects of one class merged).
    labelmap : bool
        Write the LABELMAP segmentation type (one frame per slice, newer viewers) instead of
        BINARY (one frame per segment and slice, read everywhere).
    creator : str, optional
        ContentCreatorName (e.g. the annotator who finished the case).
    series_description : str
        SeriesDescription of the new series.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ExportError
        No reference, a reference of another shape, labels without objects, more than
        65535 segments, or an existing output without ``overwrite``.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    lab = _Labels(labels)
    _check_target(path, overwrite, lab)
    if len(lab.shape) != 3:
        raise ExportError(f"a DICOM export takes (z, y, x) labels, got shape {lab.shape}")
    vol = reference_volume(lab, reference, series)
    ids = present_ids(lab)
    if not ids:
        raise ExportError("the labels hold no objects; a DICOM-SEG needs at least one segment")
    segs = segments_of(lab, ids, classes=classes, class_names=class_names, segments=segments)
    if len(segs) > 65535:
        raise ExportError(f"{len(segs)} segments; DICOM-SEG holds at most 65535")
    lut_ids = np.array(ids, dtype=np.uint64)
    lut_num = np.zeros(len(ids), dtype=np.uint16)
    for s in segs:
        for oid in s.ids:
            lut_num[ids.index(oid)] = s.number
    sources, frames = source_datasets(vol)
    dtype = np.uint8 if len(segs) <= 255 else np.uint16
    pixels = np.zeros(lab.shape, dtype=dtype)  # in the source's frame order
    for (k,), plane in lab.planes():
        nz = plane > 0
        if nz.any():
            pixels[frames[k]][nz] = lut_num[np.searchsorted(lut_ids, plane[nz])]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="napari-segany", family=codes.cid7162.ArtificialIntelligence, version=__version__)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=s.number, segment_label=s.label[:64],
        segmented_property_category=Code(s.category[1], s.category[0], s.category[2]),
        segmented_property_type=Code(s.type[1], s.type[0], s.type[2]),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
        tracking_id=f"object {','.join(map(str, s.ids))}"[:64], tracking_uid=hd.UID(),
        display_color=hd.color.CIELabColor.from_rgb(*s.color)) for s in segs]
    ref_number = vol.series.number or 0
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels,
        segmentation_type="LABELMAP" if labelmap else "BINARY",
        segment_descriptions=descriptions, series_instance_uid=hd.UID(),
        series_number=ref_number + 1000, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="napari-segany", manufacturer_model_name="napari-segany",
        software_versions=__version__, device_serial_number="none",
        content_description="Segment Anything (napari-segany)",
        content_creator_name=_person(creator), series_description=series_description[:64])
    with _target(path, overwrite, lab) as tmp:
        seg.save_as(tmp)
    return Path(path)
