"""Following objects through a ``(t, y, x)`` stack, with divisions (no store writes here).

:class:`Tracker` drives the propagators of :mod:`napari_segany.propagate` (slice-wise or
SAM2 memory) forward in time and watches every object's mask:

* **lost**: an object whose mask is missing or smaller than ``min_area`` ends its track
  on the frame before;
* **division**: a mask that falls apart into two or more components of at least
  ``min_area`` pixels (8-connected) on ``division_frames`` (K) consecutive frames divides
  on the first of them: each component becomes a daughter with a new id and the object
  as its parent; fragments go to the nearest daughter, and on the following frames each
  component goes to the daughter it overlaps most. A split that heals sooner is noise.
  The propagation then restarts from the last frame with one prompt per daughter (its
  mask), so each daughter is followed, and can divide, on its own. Splits are looked for
  from an object's second frame on.

Frames are final only K frames later (a split may still become a division), so the
tracker yields each frame K - 1 frames behind the propagation; it never holds more than
K frames of masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._progress import Cancel, is_cancelled
from ..engine.sam2_video import supports_memory
from ..errors import TrackingError
from ..prompts import ObjectPrompt, PromptSet
from ..propagate import propagate_sam2, propagate_slicewise
from .lineage import Lineage, Track
from .settings import TrackSettings

__all__ = ["Tracker", "FrameMasks", "Division", "split_components", "mask_prompt"]

_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class Division:
    """Track ``parent`` divided: its ``daughters`` start on ``frame``."""

    parent: int
    daughters: tuple[int, ...]
    frame: int


@dataclass
class FrameMasks:
    """The final masks of one frame: ``{object id: (H, W) bool}``."""

    frame: int
    masks: dict[int, np.ndarray]


def split_components(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    """The 8-connected components of ``mask`` with at least ``min_area`` pixels, largest
    first (ties: top-left first)."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask, structure=_EIGHT)
    if n == 0:
        return []
    areas = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    keep = [i + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area]
    return [lab == i for i in keep]


def _assign(mask: np.ndarray, seeds: list[np.ndarray]) -> list[np.ndarray]:
    """Split ``mask`` among ``seeds`` (masks): each component of ``mask`` goes to the seed
    it overlaps most, else to the nearest seed."""
    from scipy import ndimage as ndi

    seed_lab = np.zeros(mask.shape, np.int32)
    for n, s in enumerate(seeds, start=1):
        seed_lab[s & (seed_lab == 0)] = n
    if not seed_lab.any():
        return [np.zeros_like(mask) for _ in seeds]
    _, (iy, ix) = ndi.distance_transform_edt(seed_lab == 0, return_indices=True)
    nearest = seed_lab[iy, ix]
    comp, n = ndi.label(mask, structure=_EIGHT)
    owner = np.zeros(n + 1, np.int32)
    for c in range(1, n + 1):
        inside = comp == c
        counts = np.bincount(seed_lab[inside], minlength=len(seeds) + 1)[1:]
        owner[c] = (int(np.argmax(counts)) + 1 if counts.max() > 0
                    else int(np.bincount(nearest[inside]).argmax()))
    who = owner[comp]
    return [mask & (who == n) for n in range(1, len(seeds) + 1)]


def _first_split(mask: np.ndarray, comps: list[np.ndarray]) -> list[np.ndarray]:
    """The daughters on the first frame of a division: the mask split by nearest component."""
    from scipy import ndimage as ndi

    seed_lab = np.zeros(mask.shape, np.int32)
    for n, c in enumerate(comps, start=1):
        seed_lab[c] = n
    _, (iy, ix) = ndi.distance_transform_edt(seed_lab == 0, return_indices=True)
    nearest = seed_lab[iy, ix]
    return [mask & (nearest == n) for n in range(1, len(comps) + 1)]


def mask_prompt(mask: np.ndarray, method: str, margin: float = 0.1) -> ObjectPrompt:
    """The prompt that restarts an object from its mask: the mask itself for SAM2, the
    mask and its box (enlarged by ``margin``) for slice-wise propagation."""
    if method == "sam2":
        return ObjectPrompt(mask=mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    py, px = margin * (rows[-1] - rows[0] + 1), margin * (cols[-1] - cols[0] + 1)
    box = [max(0.0, cols[0] - px), max(0.0, rows[0] - py), min(w - 1.0, cols[-1] + px),
           min(h - 1.0, rows[-1] + py)]
    if box[2] <= box[0]:
        box[0], box[2] = max(0.0, box[0] - 0.5), min(w - 1.0, box[2] + 0.5)
    if box[3] <= box[1]:
        box[1], box[3] = max(0.0, box[1] - 0.5), min(h - 1.0, box[3] + 0.5)
    return ObjectPrompt(box=box, mask=mask)


class Tracker:
    """Track the prompted objects of a ``(t, y, x)`` stack forward in time.

    Parameters
    ----------
    source : Session or plane source
        Provides ``embedding(plane_key)``, ``backend`` and ``shape`` ``(T, H, W)``.
    prompts : PromptSet
        Prompts keyed by ``(t,)``: each object starts on its first prompted frame; a
        prompt of the same object on a later frame replaces its mask there.
    settings : TrackSettings
    frames : (start, stop), optional
        Only frames ``start <= t < stop``.
    new_ids : callable
        ``new_ids(n) -> list of n unused ids`` for daughters.
    parents, starts : dict, optional
        Parent and first frame of prompted objects that continue an existing track
        (corrections); default: roots starting on their first prompted frame.
    cancel : Event or callable, optional
        Checked between frames; the frames yielded so far are final.

    Iterating yields :class:`FrameMasks` in increasing frame order. Afterwards
    :attr:`lineage`, :attr:`divisions` and :attr:`lost` describe what was found.
    """

    def __init__(self, source: Any, prompts: PromptSet, *, settings: TrackSettings,
                 new_ids: Callable[[int], list[int]], frames: tuple[int, int] | None = None,
                 parents: dict[int, int] | None = None, starts: dict[int, int] | None = None,
                 cancel: Cancel = None) -> None:
        shape = tuple(int(s) for s in source.shape)
        if len(shape) != 3:
            raise TrackingError(f"tracking needs a (t, y, x) stack; this image has shape "
                                f"{shape} (take one z-plane of a (t, z, y, x) series first)")
        if not isinstance(prompts, PromptSet):
            raise TypeError(f"prompts must be a PromptSet, got {type(prompts).__name__}")
        if settings.method == "sam2" and not supports_memory(source.backend):
            raise TrackingError(f"method 'sam2' needs a SAM2 model; "
                                f"{getattr(source.backend, 'name', 'this model')} has no memory: "
                                "use method='slice'")
        n = shape[0]
        lo, hi = (0, n) if frames is None else (int(frames[0]), int(frames[1]))
        if not 0 <= lo < hi <= n:
            raise TrackingError(f"frames=({lo}, {hi}) must satisfy 0 <= start < stop <= {n}")
        self.source, self.settings, self.new_ids, self.cancel = source, settings, new_ids, cancel
        self.lo, self.hi, self.plane_shape = lo, hi, shape[1:]
        self.user: dict[int, dict[int, ObjectPrompt]] = {}
        for key, objects in prompts.items():
            if len(key) != 1:
                raise TrackingError(f"prompt plane {key} is not a frame (t,) of the stack")
            if lo <= key[0] < hi:
                self.user[key[0]] = dict(objects)
        if not self.user:
            raise TrackingError(f"no prompts on frames {lo}..{hi - 1}")
        self.first: dict[int, int] = {}
        for t in sorted(self.user):
            for oid in self.user[t]:
                self.first.setdefault(oid, t)
        self._parents = {int(k): int(v) for k, v in (parents or {}).items()}
        self._starts = {int(k): int(v) for k, v in (starts or {}).items()}
        self._seen: dict[int, list[int]] = {}  # id -> [first, last] frame yielded
        self.divisions: list[Division] = []
        self._retired: set[int] = set()
        self._lost_only: set[int] = set()  # retired because lost (a later prompt revives)

    # -- results ------------------------------------------------------------------------------
    @property
    def lineage(self) -> Lineage:
        """Tracks found so far (start, end and parent of every id that has pixels)."""
        return Lineage(Track(oid, self._starts.get(oid, a), b, self._parents.get(oid, 0))
                       for oid, (a, b) in self._seen.items())

    @property
    def lost(self) -> dict[int, int]:
        """``{id: last frame}`` of objects lost before the last frame (not divided)."""
        return {oid: self._seen[oid][1] for oid in sorted(self._lost_only) if oid in self._seen}

    # -- propagation --------------------------------------------------------------------------
    def _run(self, prompts: PromptSet, start: int) -> Iterator[Any]:
        s, src = self.settings, self.source
        stop = lambda: is_cancelled(self.cancel)  # noqa: E731
        if s.method == "sam2":
            return propagate_sam2(src.embedding, src.backend, prompts, lead_shape=(self.hi,),
                                  plane_shape=self.plane_shape, planes=(start, self.hi),
                                  direction="forward", cancel=stop)
        return propagate_slicewise(src.embedding, src.backend, prompts, lead_shape=(self.hi,),
                                   planes=(start, self.hi), direction="forward",
                                   settings=s.slice, cancel=stop)

    def _frames(self, prompts: PromptSet, start: int) -> Iterator[tuple[int, dict]]:
        """``(frame, {id: mask})`` of one propagation run, frame by frame."""
        frame, masks = None, {}
        for res in self._run(prompts, start):
            t = int(res.plane[0])
            if frame is not None and t != frame:
                yield frame, masks
                masks = {}
            frame = t
            masks[int(res.obj_id)] = np.asarray(res.mask, bool)
        if frame is not None:
            yield frame, masks

    def _prompts_after(self, frame: int, current: dict[int, np.ndarray]) -> PromptSet:
        out = PromptSet()
        for oid, mask in current.items():
            out.add((frame,), oid, mask_prompt(mask, self.settings.method,
                                               self.settings.slice.box_margin))
        for t, objects in self.user.items():
            if t > frame:
                for oid, p in objects.items():
                    if oid not in self._retired or oid in self._lost_only:
                        out.add((t,), oid, p)
        return out

    # -- the loop -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[FrameMasks]:
        s = self.settings
        k = s.division_frames
        buffer: dict[int, dict[int, np.ndarray]] = {}
        streak: dict[int, int] = {}
        begin: dict[int, int] = {}  # id -> first frame of this tracker's masks
        all_prompts = PromptSet()
        for t, objects in self.user.items():
            for oid, p in objects.items():
                all_prompts.add((t,), oid, p)
        runs = self._frames(all_prompts, min(self.user))
        skip: int | None = None
        last: dict[int, np.ndarray] = {}
        try:
            while True:
                try:
                    frame, raw = next(runs)
                except StopIteration:
                    break
                if frame == skip:
                    continue
                prompted = self.user.get(frame, {})
                masks = {}
                for oid, mask in raw.items():
                    if oid in prompted:
                        self._retired.discard(oid)
                        self._lost_only.discard(oid)
                    elif oid in self._retired or frame < self.first.get(oid, frame):
                        continue
                    if int(mask.sum()) < s.min_area:
                        if oid not in prompted:
                            self._lose(oid, last)
                        continue
                    masks[oid] = mask
                for oid in list(last):
                    if oid not in masks:
                        self._lose(oid, last)
                divided = []
                for oid, mask in masks.items():
                    begin.setdefault(oid, frame)
                    split = frame > begin[oid] and len(split_components(mask, s.min_area)) > 1
                    streak[oid] = streak.get(oid, 0) + 1 if split else 0
                    if streak[oid] >= k:
                        divided.append(oid)
                buffer[frame] = masks
                for oid in divided:
                    self._divide(oid, frame, k, buffer, begin, streak)
                last = dict(masks)
                if divided:
                    runs.close()
                    if frame + 1 < self.hi:
                        runs = self._frames(self._prompts_after(frame, masks), frame)
                        skip = frame
                    else:
                        break
                for t in sorted(f for f in buffer if f <= frame - k + 1):
                    yield self._flush(t, buffer.pop(t))
                if is_cancelled(self.cancel):
                    break
        finally:
            runs.close()
        if not is_cancelled(self.cancel):
            for t in sorted(buffer):
                yield self._flush(t, buffer.pop(t))

    def _lose(self, oid: int, last: dict[int, np.ndarray]) -> None:
        last.pop(oid, None)
        if oid not in self._retired:
            self._retired.add(oid)
            self._lost_only.add(oid)

    def _divide(self, oid: int, frame: int, k: int, buffer: dict, begin: dict,
                streak: dict) -> None:
        first = frame - k + 1
        comps = split_components(buffer[first][oid], self.settings.min_area)
        ids = [int(i) for i in self.new_ids(len(comps))]
        daughters = _first_split(buffer[first][oid], comps)
        for t in range(first, frame + 1):
            if t > first:
                daughters = _assign(buffer[t][oid], daughters)
            plane = buffer[t]
            del plane[oid]
            for did, d in zip(ids, daughters, strict=True):
                if d.any():
                    plane[did] = d
        for did in ids:
            self._parents[did] = oid
            self._starts[did] = first
            begin[did] = first
            streak[did] = 0
        self._retired.add(oid)
        self.divisions.append(Division(oid, tuple(ids), first))

    def _flush(self, t: int, masks: dict[int, np.ndarray]) -> FrameMasks:
        for oid in masks:
            seen = self._seen.setdefault(oid, [t, t])
            seen[1] = t
        return FrameMasks(t, masks)
