"""Ordering the slices of a DICOM series in space and checking that they form one grid.

:func:`geometry` sorts the slices by position along the slice normal (the cross product of
the ImageOrientationPatient directions), derives the spacing from the positions and the
voxel-to-patient (LPS) affine, and refuses what is not one regular volume: mixed sizes,
pixel formats, orientations or pixel spacings; duplicate positions; missing slices;
irregular spacing; positions off the normal (gantry tilt); a compression no installed
decoder reads. Every message names the series and the files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dicom_series import UNCOMPRESSED, DicomError, SeriesInfo, SliceRef

__all__ = ["Geometry", "geometry"]


@dataclass
class Geometry:
    """The slices of one series in order along the slice normal, and their grid."""

    slices: list[SliceRef]
    affine_lps: np.ndarray | None  # voxel (x = column, y = row, z = slice) -> LPS mm, 4x4
    spacing: tuple[float, ...]  # voxel size along (z, y, x), or (y, x) for one image


def _check_same(info: SeriesInfo, slices: list[SliceRef], attr: str, what: str,
                close: bool = False) -> None:
    first = getattr(slices[0], attr)
    for s in slices[1:]:
        v = getattr(s, attr)
        same = (v is None) == (first is None) and (
            v is None or (np.allclose(v, first, atol=1e-4) if close else v == first))
        if not same:
            raise DicomError(f"{info.label()} mixes {what}: {first} in {_name(slices[0])} but "
                             f"{v} in {_name(s)}; a series must be one volume (remove the "
                             "odd files, e.g. localizers, or split the series)")


def _name(s: SliceRef) -> str:
    return f"{s.path}" + (f" (frame {s.frame + 1})" if s.frame is not None else "")


def _check_decodable(info: SeriesInfo) -> None:
    for ts in sorted({s.transfer_syntax for s in info.slices} - UNCOMPRESSED):
        from pydicom.pixels import get_decoder
        from pydicom.uid import UID

        try:
            ok = get_decoder(UID(ts)).is_available
        except (NotImplementedError, ValueError):
            ok = False
        if not ok:
            first = next(s for s in info.slices if s.transfer_syntax == ts)
            raise DicomError(
                f"{info.label()} is compressed as {UID(ts).name or ts} ({ts}), which no "
                f"installed decoder reads (e.g. {first.path}); install one (pylibjpeg with "
                "pylibjpeg-libjpeg for JPEG lossless, pylibjpeg-openjpeg for JPEG 2000 / "
                "HTJ2K, or python-gdcm) or decompress the files (gdcmconv --raw, dcmdjpeg)")


def geometry(info: SeriesInfo) -> Geometry:
    """Order the slices of ``info`` along the slice normal and check the grid.

    Raises
    ------
    DicomError
        Mixed sizes, pixel formats, orientations or pixel spacings; slices without a
        position; duplicate positions (several volumes in one series); missing slices;
        irregular spacing; positions off the slice normal (gantry tilt, shear); a
        compressed transfer syntax that no installed decoder reads.
    """
    slices = list(info.slices)
    _check_same(info, slices, "shape", "image sizes (rows, columns)")
    _check_same(info, slices, "pixel", "pixel formats (bits allocated/stored, sign)")
    _check_decodable(info)
    if len(slices) == 1 and (slices[0].position is None or slices[0].orientation is None):
        sp = slices[0].pixel_spacing or (1.0, 1.0)
        return Geometry(slices, None, (float(sp[0]), float(sp[1])))
    if any(s.position is None or s.orientation is None for s in slices):
        bad = next(s for s in slices if s.position is None or s.orientation is None)
        if all(s.position is None for s in slices) and len(info.files) == 1:
            sp = slices[0].pixel_spacing or (1.0, 1.0)  # a cine or other frame sequence
            return Geometry(slices, None, (1.0, float(sp[0]), float(sp[1])))
        raise DicomError(f"{info.label()}: {_name(bad)} has no ImagePositionPatient / "
                         "ImageOrientationPatient, so the slices cannot be ordered in space")
    _check_same(info, slices, "orientation", "slice orientations", close=True)
    _check_same(info, slices, "pixel_spacing", "pixel spacings", close=True)
    ori = np.asarray(slices[0].orientation, dtype=np.float64)
    row, col = ori[:3] / np.linalg.norm(ori[:3]), ori[3:] / np.linalg.norm(ori[3:])
    normal = np.cross(row, col)
    pos = np.array([s.position for s in slices], dtype=np.float64)
    dist = pos @ normal
    order = np.argsort(dist, kind="stable")
    slices, pos, dist = [slices[i] for i in order], pos[order], dist[order]
    dr, dc = (float(v) for v in (slices[0].pixel_spacing or (1.0, 1.0)))
    if len(slices) == 1:
        dz = slices[0].thickness or 1.0
    else:
        dz = _slice_step(info, slices, pos, dist, normal)
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = row * dc, col * dr, normal * dz
    affine[:3, 3] = pos[0]
    return Geometry(slices, affine, (float(dz), dr, dc))


def _slice_step(info: SeriesInfo, slices: list[SliceRef], pos: np.ndarray, dist: np.ndarray,
                normal: np.ndarray) -> float:
    steps = np.diff(dist)
    tol = 1e-3
    dup = np.flatnonzero(steps < tol)
    if dup.size:
        a, b = slices[dup[0]], slices[dup[0] + 1]
        raise DicomError(
            f"{info.label()}: {dup.size + 1} or more images share a slice position "
            f"({dist[dup[0]]:.3f} mm along the normal, e.g. {_name(a)} and {_name(b)}); the "
            "series holds several volumes (time points, echoes, b-values or repeats). Split it "
            "into one folder per volume")
    off = pos - pos[0] - np.outer(dist - dist[0], normal)
    shear = float(np.abs(off).max())
    if shear > max(0.01, 0.01 * float(np.median(steps))):
        k = int(np.abs(off).max(axis=1).argmax())
        raise DicomError(
            f"{info.label()}: slice positions are not along the slice normal ({_name(slices[k])} "
            f"is {shear:.2f} mm off it: gantry tilt or a sheared grid); resample the series "
            "to an orthogonal grid first")
    dz = float(np.min(steps))
    ratio = steps / dz
    if float(np.max(np.abs(ratio - 1))) <= max(0.01, tol / dz):
        return float(np.mean(steps))
    gaps = np.flatnonzero(np.abs(ratio - np.round(ratio)) <= 0.01)
    gaps = [int(i) for i in gaps if round(ratio[i]) >= 2]
    if gaps and all(abs(r - 1) <= 0.01 or i in gaps for i, r in enumerate(ratio)):
        i = gaps[0]
        n_missing = int(sum(round(ratio[j]) - 1 for j in gaps))
        raise DicomError(
            f"{info.label()}: {n_missing} slice(s) missing: the slices are {dz:.3f} mm apart but "
            f"{steps[i]:.3f} mm lie between {_name(slices[i])} and {_name(slices[i + 1])} "
            f"(positions {dist[i]:.3f} and {dist[i + 1]:.3f} mm along the normal); copy the "
            "whole series again")
    i = int(np.argmax(np.abs(ratio - 1)))
    raise DicomError(
        f"{info.label()}: irregular slice spacing, from {dz:.3f} to {float(steps.max()):.3f} mm "
        f"(e.g. {steps[i]:.3f} mm between {_name(slices[i])} and {_name(slices[i + 1])}); "
        "resample the series to even spacing first")
