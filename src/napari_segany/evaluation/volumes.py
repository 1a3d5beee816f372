"""Protocol 3, volumes: prompt each object on one plane, propagate, score in 3D.

Each object of a ``(Z, Y, X)`` ground truth gets one prompt (a point at its most interior
pixel, or its box) on its largest plane (most pixels; the lowest index on ties) or its
middle plane (the middle of its extent along z, or the nearest plane holding it).
The prompts go through slice-wise propagation (any model) and SAM2 memory propagation
(models with the ``"memory"`` capability) with :mod:`napari_segany.propagate`, all objects
at once. Per object the Dice and the normalised surface Dice (tolerance in the unit of the
voxel spacing, mm for NIfTI) are computed on the whole volume, and Dice and IoU on every
plane where the object or its prediction is.

``corrections`` rounds then add, for every object, a prompt on its worst plane (lowest
Dice among the planes holding it, not yet prompted) and propagate again from all of the
object's prompts; round ``r`` is ``iteration = r`` in the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import is_cancelled
from ..engine.sam2_video import supports_memory
from ..prompts import ObjectPrompt, PromptSet
from ..propagate import SliceSettings, propagate_sam2, propagate_slicewise
from ._common import Steps, check, object_ids
from .metrics import dice, iou, match_instances, overlap_matrix, surface_dice
from .simulate import POINT_MODES, first_prompt, object_rng

__all__ = ["VolumeSettings", "METHODS", "volume_prompts", "run_volume", "propagate_masks",
           "match_ids"]

PROTOCOL = "volume"
METHODS = ("slice", "sam2")


@dataclass(frozen=True)
class VolumeSettings:
    """Settings of the volume protocol.

    Attributes
    ----------
    prompt : {"point", "box"}
    plane : {"largest", "middle"}
        Which plane of each object is prompted.
    methods : tuple of {"slice", "sam2"}
        Propagation methods; ``"sam2"`` is skipped (and noted) for models without memory.
    tolerance : float
        Surface Dice tolerance, in the unit of the spacing (mm for NIfTI files).
    corrections : int
        Rounds of one more prompt on each object's worst plane.
    slice : SliceSettings
        Slice-wise prompting and stopping rules.
    point_mode : {"center", "random"}
    seed : int
    """

    prompt: str = "point"
    plane: str = "largest"
    methods: tuple[str, ...] = METHODS
    tolerance: float = 2.0
    corrections: int = 0
    slice: SliceSettings = field(default_factory=SliceSettings)
    point_mode: str = "center"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompt not in ("point", "box"):
            raise ValueError(f"prompt must be 'point' or 'box', got {self.prompt!r}")
        if self.plane not in ("largest", "middle"):
            raise ValueError(f"plane must be 'largest' or 'middle', got {self.plane!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be some of {METHODS}, got {self.methods}")
        if self.point_mode not in POINT_MODES:
            raise ValueError(f"point_mode must be one of {POINT_MODES}, got {self.point_mode!r}")
        if not self.tolerance >= 0 or int(self.corrections) < 0:
            raise ValueError("tolerance and corrections must be >= 0")


def _areas(truth: np.ndarray) -> dict[int, np.ndarray]:
    """``{object id: (Z,) pixel count per plane}``."""
    flat = truth.reshape(truth.shape[0], -1)
    ids = object_ids(truth)
    out = {}
    for z in range(flat.shape[0]):
        counts = np.bincount(flat[z].astype(np.int64), minlength=max(ids) + 1)
        for oid in ids:
            out.setdefault(oid, np.zeros(flat.shape[0], np.int64))[z] = counts[oid]
    return out


def _chosen_plane(areas: np.ndarray, how: str) -> int:
    if how == "largest":
        return int(np.argmax(areas))
    present = np.flatnonzero(areas)
    mid = (present[0] + present[-1]) / 2
    return int(present[np.argmin(np.abs(present - mid))])


def _plane_prompt(truth: np.ndarray, pos: int, oid: int, s: Any, dataset: str) -> ObjectPrompt:
    mask = truth[pos] == oid
    rng = object_rng(s.seed, dataset, (pos,), oid, "volume")
    return first_prompt(mask, s.prompt, mode=s.point_mode, rng=rng)


def volume_prompts(truth: np.ndarray, settings: VolumeSettings, dataset: str) -> PromptSet:
    """One prompt per object on its chosen plane (the same for every model)."""
    if truth.ndim != 3:
        raise ValueError(f"the volume protocol takes (Z, Y, X) labels, got shape {truth.shape}")
    out = PromptSet()
    for oid, areas in _areas(truth).items():
        pos = _chosen_plane(areas, settings.plane)
        out.add((pos,), oid, _plane_prompt(truth, pos, oid, settings, dataset))
    return out


def propagate_masks(source: Any, prompts: PromptSet, method: str, *, axis: int,
                    slice_settings: SliceSettings, direction: str = "both",
                    cancel: Any = None) -> tuple[dict[int, np.ndarray], set[tuple[int, int]]]:
    """Run one propagation; ``({object id: (Z, H, W) bool}, {(plane, id) annotated})``."""
    lead = tuple(source.plane_keys_shape)
    shape = lead + tuple(source.shape[-2:])

    def stop() -> bool:
        return is_cancelled(cancel)

    if method == "slice":
        gen = propagate_slicewise(source.embedding, source.backend, prompts, lead_shape=lead,
                                  axis=axis, direction=direction, settings=slice_settings,
                                  cancel=stop)
    else:
        gen = propagate_sam2(source.embedding, source.backend, prompts, lead_shape=lead,
                             plane_shape=tuple(source.shape[-2:]), axis=axis,
                             direction=direction, cancel=stop)
    masks: dict[int, np.ndarray] = {}
    annotated: set[tuple[int, int]] = set()
    for res in gen:
        vol = masks.setdefault(res.obj_id, np.zeros(shape, bool))
        vol[res.plane] = res.mask
        if res.source == "annotated":
            annotated.add((int(res.plane[axis]), res.obj_id))
    check(cancel)
    return masks, annotated


def match_ids(truth: np.ndarray, pred: np.ndarray) -> dict[int, int]:
    """``{true id: predicted id}`` by one-to-one matching on IoU (IoU > 0 only)."""
    ious, t_ids, p_ids = overlap_matrix(truth, pred)
    rows, cols = match_instances(ious, 1e-9)
    return {int(t_ids[r]): int(p_ids[c]) for r, c in zip(rows, cols, strict=False)}


def score_objects(truth: np.ndarray, masks: dict[int, np.ndarray], annotated: set,
                  *, axis: int, spacing: tuple[float, ...] | None, tolerance: float,
                  base: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows per object: its 3D row (Dice, NSD) and one per plane it or its mask is on."""
    out = []
    for oid in object_ids(truth):
        gt = truth == oid
        pred = masks.get(oid)
        pred = np.zeros_like(gt) if pred is None else pred
        out.append({**base, "object_id": oid, "source": "volume", "dice": dice(gt, pred),
                    "iou": iou(gt, pred), "nsd": surface_dice(gt, pred, tolerance=tolerance,
                                                              spacing=spacing),
                    "area_true": int(gt.sum()), "area_pred": int(pred.sum())})
        g2, p2 = np.moveaxis(gt, axis, 0), np.moveaxis(pred, axis, 0)
        for z in np.flatnonzero(g2.any(axis=(1, 2)) | p2.any(axis=(1, 2))):
            src = ("annotated" if (int(z), oid) in annotated else
                   "propagated" if p2[z].any() else "missed")
            out.append({**base, "plane": str(int(z)), "object_id": oid, "source": src,
                        "dice": dice(g2[z], p2[z]), "iou": iou(g2[z], p2[z]),
                        "area_true": int(g2[z].sum()), "area_pred": int(p2[z].sum())})
    return out


def _worst_planes(rows: list[dict[str, Any]], prompted: set[tuple[int, int]]) -> dict[int, int]:
    worst: dict[int, tuple[float, int]] = {}
    for r in rows:
        if r["source"] == "volume" or not r["area_true"]:
            continue
        z, oid = int(r["plane"]), r["object_id"]
        if (z, oid) in prompted:
            continue
        if oid not in worst or r["dice"] < worst[oid][0]:
            worst[oid] = (r["dice"], z)
    return {oid: z for oid, (d, z) in worst.items() if d < 1.0}


def run_volume(
    source: Any,
    truth: np.ndarray,
    prompts: PromptSet,
    *,
    model: str,
    dataset: str,
    settings: VolumeSettings,
    spacing: tuple[float, ...] | None = None,
    prediction: np.ndarray | None = None,
    skip: set[str] = frozenset(),
    steps: Steps | None = None,
    cancel: Any = None,
    notes: list[str] | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Propagate with each method (or score ``prediction``); yields ``(method, rows)``."""
    s = settings
    if prediction is not None:
        if "prediction" not in skip:
            ids = match_ids(truth, prediction)
            masks = {t: prediction == p for t, p in ids.items()}
            base = {"model": model, "dataset": dataset, "protocol": PROTOCOL,
                    "method": "prediction", "iteration": 0}
            yield "prediction", score_objects(truth, masks, set(), axis=0,
                                              spacing=spacing, tolerance=s.tolerance,
                                              base=base)
        return
    for method in s.methods:
        if method in skip:
            continue
        if method == "sam2" and not supports_memory(source.backend):
            if notes is not None:
                notes.append(f"{model}: no SAM2 memory propagation (the model lacks the "
                             "'memory' capability); slice-wise only")
            yield method, []
            continue
        if steps is not None:
            steps.add(s.corrections + 1)
        current = PromptSet()
        for key, objs in prompts.items():
            for oid, p in objs.items():
                current.add(key, oid, p)
        prompted = {(int(k[0]), oid) for k, objs in prompts.items() for oid in objs}
        rows: list[dict[str, Any]] = []
        for rnd in range(s.corrections + 1):
            check(cancel)
            masks, annotated = propagate_masks(source, current, method, axis=0,
                                               slice_settings=s.slice, cancel=cancel)
            base = {"model": model, "dataset": dataset, "protocol": PROTOCOL,
                    "method": method, "iteration": rnd, "clicks": rnd + 1}
            these = score_objects(truth, masks, annotated, axis=0, spacing=spacing,
                                  tolerance=s.tolerance, base=base)
            rows += these
            if steps is not None:
                steps.tick()
            if rnd < s.corrections:
                for oid, z in _worst_planes(these, prompted).items():
                    current.add((z,), oid, _plane_prompt(truth, z, oid, s, dataset))
                    prompted.add((z, oid))
        yield method, rows

