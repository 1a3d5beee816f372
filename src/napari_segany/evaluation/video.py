"""Protocol 4, video and time stacks: semi-supervised tracking scored with DAVIS J and F.

Each object of a ``(T, H, W)`` ground truth is given on the first frame it appears in, as
its mask (DAVIS semi-supervised), its box or an interior point, and tracked forward to
the last frame with SAM2 memory propagation (``"sam2"``, models with the ``"memory"``
capability) and slice-wise propagation (``"slice"``, any model: mask prompts get the
mask's box as well, since SAM needs more than a mask input). Every frame from the
object's first one on gets a row with J (region IoU) and F (boundary F-measure,
:func:`.metrics.davis_f`); a frame where neither the truth nor the prediction has the
object scores 1 for both, as in DAVIS. Summaries average the frames after the prompted
one (DAVIS 2017 also leaves out each sequence's last frame; here it is kept).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.sam2_video import supports_memory
from ..prompts import ObjectPrompt, PromptSet
from ..propagate import SliceSettings
from ._common import Steps, check, object_ids
from .metrics import davis_f, davis_j
from .simulate import first_prompt, object_box, object_rng
from .volumes import match_ids, propagate_masks

__all__ = ["VideoSettings", "VIDEO_METHODS", "video_prompts", "run_video"]

PROTOCOL = "video"
VIDEO_METHODS = ("sam2", "slice")


@dataclass(frozen=True)
class VideoSettings:
    """Settings of the video protocol.

    Attributes
    ----------
    prompt : {"mask", "box", "point"}
        What each object is given on its first frame.
    methods : tuple of {"sam2", "slice"}
        Tracking methods; ``"sam2"`` is skipped (and noted) for models without memory.
    bound_th : float
        Boundary tolerance of F: a fraction of the frame diagonal (< 1) or pixels.
    slice : SliceSettings
        Slice-wise prompting and stopping rules.
    seed : int
    """

    prompt: str = "mask"
    methods: tuple[str, ...] = VIDEO_METHODS
    bound_th: float = 0.008
    slice: SliceSettings = field(default_factory=SliceSettings)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prompt not in ("mask", "box", "point"):
            raise ValueError(f"prompt must be 'mask', 'box' or 'point', got {self.prompt!r}")
        bad = [m for m in self.methods if m not in VIDEO_METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be some of {VIDEO_METHODS}, got {self.methods}")
        if not self.bound_th > 0:
            raise ValueError(f"bound_th must be > 0, got {self.bound_th}")


def video_prompts(truth: np.ndarray, settings: VideoSettings, dataset: str) -> PromptSet:
    """Each object's prompt on the first frame it appears in (the same for every model)."""
    if truth.ndim != 3:
        raise ValueError(f"the video protocol takes (T, H, W) labels, got shape {truth.shape}")
    out = PromptSet()
    for t in range(truth.shape[0]):
        frame = np.asarray(truth[t])
        for oid in object_ids(frame):
            if oid in out.object_ids():
                continue
            mask = frame == oid
            if settings.prompt == "mask":
                p = ObjectPrompt(mask=mask)
            else:
                rng = object_rng(settings.seed, dataset, (t,), oid, "video")
                p = first_prompt(mask, settings.prompt, rng=rng)
            out.add((t,), oid, p)
    return out


def _for_method(prompts: PromptSet, method: str) -> PromptSet:
    """Slice-wise SAM gets a mask prompt's box too (SAM needs more than a mask input)."""
    if method != "slice":
        return prompts
    out = PromptSet()
    for key, objs in prompts.items():
        for oid, p in objs.items():
            if p.box is None and not len(p.points) and p.mask is not None:
                p = ObjectPrompt(box=object_box(np.asarray(p.mask, bool)), mask=p.mask)
            out.add(key, oid, p)
    return out


def score_frames(truth: np.ndarray, masks: dict[int, np.ndarray], starts: dict[int, int],
                 annotated: set, *, bound_th: float, base: dict[str, Any]) -> list[dict]:
    """Rows per object and frame (from its first frame on): J, F and the areas."""
    out = []
    for oid, t0 in sorted(starts.items()):
        pred = masks.get(oid)
        for t in range(t0, truth.shape[0]):
            gt = np.asarray(truth[t]) == oid
            pm = np.zeros_like(gt) if pred is None else pred[t]
            if (t, oid) in annotated or t == t0:
                src = "annotated"
            else:
                src = "propagated" if pm.any() or not gt.any() else "missed"
            out.append({**base, "plane": str(t), "object_id": oid, "source": src,
                        "j": davis_j(gt, pm), "f": davis_f(gt, pm, bound_th=bound_th),
                        "iou": davis_j(gt, pm), "area_true": int(gt.sum()),
                        "area_pred": int(pm.sum())})
    return out


def run_video(
    source: Any,
    truth: np.ndarray,
    prompts: PromptSet,
    *,
    model: str,
    dataset: str,
    settings: VideoSettings,
    prediction: np.ndarray | None = None,
    skip: set[str] = frozenset(),
    steps: Steps | None = None,
    cancel: Any = None,
    notes: list[str] | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Track with each method (or score ``prediction``); yields ``(method, rows)``."""
    s = settings
    starts = {oid: int(key[0]) for key, objs in prompts.items() for oid in objs}
    if prediction is not None:
        if "prediction" not in skip:
            ids = match_ids(truth, prediction)
            masks = {t: prediction == p for t, p in ids.items()}
            base = {"model": model, "dataset": dataset, "protocol": PROTOCOL,
                    "method": "prediction", "iteration": 0}
            yield "prediction", score_frames(truth, masks, starts, set(), bound_th=s.bound_th,
                                             base=base)
        return
    for method in s.methods:
        if method in skip:
            continue
        if method == "sam2" and not supports_memory(source.backend):
            if notes is not None:
                notes.append(f"{model}: no SAM2 memory tracking (the model lacks the 'memory' "
                             "capability); slice-wise only")
            yield method, []
            continue
        check(cancel)
        if steps is not None:
            steps.add(1)
        masks, annotated = propagate_masks(source, _for_method(prompts, method), method,
                                           axis=0, slice_settings=s.slice,
                                           direction="forward", cancel=cancel)
        base = {"model": model, "dataset": dataset, "protocol": PROTOCOL, "method": method,
                "iteration": 0}
        yield method, score_frames(truth, masks, starts, annotated, bound_th=s.bound_th,
                                   base=base)
        if steps is not None:
            steps.tick()
