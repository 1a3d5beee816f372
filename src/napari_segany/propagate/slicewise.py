"""Slice-wise propagation: an object's mask on plane k prompts the model on plane k +/- 1.

Propagation runs along one leading axis (``axis`` of ``lead_shape``, e.g. z of a
``(Z, H, W)`` volume or of a ``(T, Z, H, W)`` series); the other leading indices stay
fixed, and each such "line" of planes with prompts is handled on its own. No napari, Qt
or torch here: planes are embedded by the caller's ``get_embedding(plane_key)``.

Rules
-----
Annotated planes
    Every ``(plane, object)`` of the :class:`~napari_segany.prompts.PromptSet` (inside
    ``planes``) is segmented from the user's prompts and yielded (``source="annotated"``,
    ``direction=0``) before any walk from it; no threshold applies to it. A walk never
    enters a plane annotated for its own object. If the annotated mask is empty, the
    user's prompts themselves are carried to the neighbouring plane.
Walks
    The last accepted mask prompts the next plane as ``SliceSettings.prompt`` says. An
    empty mask that passes the thresholds (``min_area=0``) is yielded but does not replace
    the carried prompt. A walk stops at the first plane whose mask fails a threshold;
    that plane is NOT yielded (its mask is not trustworthy).
Two annotations ``a < b`` of one object
    Each plane between them is propagated from the nearer one: the forward walk from
    ``a`` covers ``a+1 .. (a+b)//2`` (ties go to ``a``), the backward walk from ``b`` the
    rest, and it goes on down to ``a+1`` through planes the forward walk left because it
    stopped early. With one direction only, the walk from ``a`` runs up to ``b-1`` (from
    ``b`` down to ``a+1``). Each ``(plane, object)`` is yielded at most once.
Order and cost
    Per line, a forward pass visits planes in increasing order (it also segments the
    annotated planes), then a backward pass in decreasing order. On each visited plane,
    all objects there are predicted in ONE ``backend.predict`` call, and
    ``get_embedding`` is called once per plane and pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._planes import along_axis, check_axis, check_plane, check_range
from .._progress import is_cancelled
from ..engine.base import Backend, Embedding
from ..prompts import ObjectPrompt, PromptSet

__all__ = ["SliceSettings", "PlaneResult", "Stop", "propagate_slicewise"]

log = logging.getLogger(__name__)

PROMPT_MODES = ("box", "box+point", "box+mask", "points")
DIRECTIONS = ("both", "forward", "backward")


@dataclass(frozen=True)
class SliceSettings:
    """How a mask prompts the next plane, and when a walk stops.

    Attributes
    ----------
    prompt : {"box+mask", "box", "box+point", "points"}
        ``"box"``: bounding box of the previous mask enlarged by `box_margin`;
        ``"box+point"``: that box plus one positive point at the previous mask's most
        interior pixel (distance-transform maximum); ``"box+mask"``: the box plus the
        previous plane's low-resolution logits as mask input; ``"points"``: the interior
        positive point alone (ambiguous for SAM: consider ``multimask=True``).
    box_margin : float
        Each side of the box moves outward by this fraction of the box's width (x) or
        height (y); the box is then clipped to the plane.
    min_score : float
        Stop when the model's predicted IoU falls below this.
    min_area : int
        Stop when the mask has fewer pixels (the object ended). With 0, empty masks are
        yielded and the walk goes on with the last non-empty mask's prompt.
    max_area_ratio : float
        Stop when the area grows by more than this factor from the last non-empty mask
        (the mask exploded into the background). ``inf`` disables it.
    min_area_ratio : float
        Stop when the area shrinks below this fraction of the last non-empty mask (sudden
        collapse). Off (0) by default, since real objects often shrink fast at their ends;
        ``1 / max_area_ratio`` is a symmetric choice.
    min_overlap : float
        Stop when the IoU of the new mask with the last non-empty mask (same 2D pixel
        grid) is below this (the object jumped). 0 disables it.
    multimask : bool
        Ask for 3 candidates per prompt and keep the best-scoring one (annotated and
        propagated planes alike).
    """

    prompt: str = "box+mask"
    box_margin: float = 0.1
    min_score: float = 0.5
    min_area: int = 16
    max_area_ratio: float = 2.5
    min_area_ratio: float = 0.0
    min_overlap: float = 0.0
    multimask: bool = False

    def __post_init__(self) -> None:
        if self.prompt not in PROMPT_MODES:
            raise ValueError(f"prompt must be one of {PROMPT_MODES}, got {self.prompt!r}")
        checks = [("box_margin", math.isfinite(self.box_margin) and self.box_margin >= 0,
                   "a finite number >= 0"),
                  ("min_score", not math.isnan(self.min_score), "a number (-inf: off)"),
                  ("min_area", self.min_area >= 0, ">= 0"),
                  ("max_area_ratio", self.max_area_ratio >= 1, ">= 1 (inf: off)"),
                  ("min_area_ratio", 0 <= self.min_area_ratio <= 1, "in [0, 1]"),
                  ("min_overlap", 0 <= self.min_overlap <= 1, "in [0, 1]")]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"{name} must be {want}, got {getattr(self, name)!r}")


@dataclass
class PlaneResult:
    """The mask of one object on one plane.

    Attributes
    ----------
    plane : tuple of int
        Full plane key (indices along all leading axes).
    obj_id : int
        Object id from the prompt set.
    mask : np.ndarray
        ``(H, W)`` bool.
    score : float
        The model's predicted IoU.
    source : {"annotated", "propagated"}
        Segmented from the user's prompts, or from a neighbouring plane's mask.
    direction : int
        +1 (walk towards higher indices), -1 (lower), 0 for annotated planes.
    logits : np.ndarray or None
        The model's low-resolution float32 logits (usable as a mask input).
    """

    plane: tuple[int, ...]
    obj_id: int
    mask: np.ndarray
    score: float
    source: str
    direction: int
    logits: np.ndarray | None = None


@dataclass(frozen=True)
class Stop:
    """Where and why an object's slice-wise walk stopped.

    Attributes
    ----------
    obj_id : int
    plane : tuple of int
        The plane whose mask failed (it was not written).
    direction : int
        +1 walking towards higher indices, -1 towards lower.
    reason : str
        E.g. ``"score 0.31 < min_score 0.5"``.
    score : float
    area : int
    """

    obj_id: int
    plane: tuple[int, ...]
    direction: int
    reason: str
    score: float
    area: int

    @property
    def message(self) -> str:
        where = "forward" if self.direction > 0 else "backward"
        return f"object {self.obj_id} stopped {where} at plane {self.plane}: {self.reason}"


@dataclass
class _Walk:
    prompt: ObjectPrompt  # prompt for the next plane
    mask: np.ndarray | None  # last non-empty accepted mask
    area: int  # its area (0 when none)
    limit: int  # last position the walk may cover (inclusive)


def _mask_box(mask: np.ndarray, margin: float) -> np.ndarray:
    """XYXY float64 box of a non-empty ``(H, W)`` mask, enlarged and clipped."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    out = []
    for lo, hi, size in ((cols[0], cols[-1], w), (rows[0], rows[-1], h)):
        pad = margin * (hi - lo + 1)
        a, b = max(0.0, lo - pad), min(size - 1.0, hi + pad)
        if b <= a:  # a one-pixel-wide mask: give the box some width
            a, b = max(0.0, a - 0.5), min(size - 1.0, b + 0.5)
        out.append((a, b))
    (x0, x1), (y0, y1) = out
    return np.array([x0, y0, x1, y1], dtype=np.float64)


def _interior_point(mask: np.ndarray) -> np.ndarray:
    """``(1, 2)`` (x, y) of the pixel farthest from the mask's border."""
    from scipy import ndimage as ndi

    dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([[float(col), float(row)]])


def _next_prompt(mask: np.ndarray, logits: np.ndarray | None, s: SliceSettings) -> ObjectPrompt:
    if s.prompt == "points":
        return ObjectPrompt(points=_interior_point(mask), labels=[1])
    box = _mask_box(mask, s.box_margin)
    if s.prompt == "box+point":
        return ObjectPrompt(points=_interior_point(mask), labels=[1], box=box)
    if s.prompt == "box+mask" and logits is not None:
        return ObjectPrompt(box=box, mask=logits)
    return ObjectPrompt(box=box)


def _stop_reason(
    s: SliceSettings, walk: _Walk, mask: np.ndarray, area: int, score: float
) -> str | None:
    if not score >= s.min_score:
        return f"score {score:.3g} < min_score {s.min_score:g}"
    if area < s.min_area:
        return f"area {area} < min_area {s.min_area}"
    if walk.area > 0 and area > s.max_area_ratio * walk.area:
        return f"area grew {area / walk.area:.3g}x > max_area_ratio {s.max_area_ratio:g}"
    if walk.area > 0 and area < s.min_area_ratio * walk.area:
        return f"area shrank to {area / walk.area:.3g}x < min_area_ratio {s.min_area_ratio:g}"
    if s.min_overlap > 0 and walk.mask is not None:
        union = np.count_nonzero(mask | walk.mask)
        iou = np.count_nonzero(mask & walk.mask) / union if union else 0.0
        if iou < s.min_overlap:
            return f"overlap IoU {iou:.3g} < min_overlap {s.min_overlap:g}"
    return None


def propagate_slicewise(
    get_embedding: Callable[[tuple[int, ...]], Any],
    backend: Backend,
    prompts: PromptSet,
    *,
    lead_shape: tuple[int, ...],
    axis: int = 0,
    planes: tuple[int, int] | range | None = None,
    direction: str = "both",
    settings: SliceSettings | None = None,
    cancel: Callable[[], bool] | None = None,
    on_stop: Callable[[Stop], Any] | None = None,
) -> Iterator[PlaneResult]:
    """Propagate prompted objects plane by plane along one leading axis.

    Arguments are checked when called; the work happens while the returned iterator is
    consumed (stop iterating, or let `cancel` return True, to cancel between planes).
    See the module docstring for the rules on annotated planes, walks and stops.

    Parameters
    ----------
    get_embedding : callable
        ``get_embedding(plane_key) -> Embedding`` for a full plane key (a tuple with one
        index per leading axis), e.g. :meth:`napari_segany.Session.embedding`.
    backend : Backend
        The model that made the embeddings; its ``predict`` is called once per visited
        plane with all objects there.
    prompts : PromptSet
        User prompts; its plane keys index `lead_shape`.
    lead_shape : tuple of int
        Shape of the image's leading axes, e.g. ``(Z,)`` or ``(T, Z)``; at least one axis.
    axis : int
        Which leading axis to propagate along (negative counts from the end).
    planes : (start, stop) or range, optional
        Only positions ``start <= i < stop`` along `axis` are visited; annotations
        outside are ignored. Default: the whole axis.
    direction : {"both", "forward", "backward"}
        Walk towards higher indices, lower indices, or both.
    settings : SliceSettings, optional
        Prompting and stopping rules; ``SliceSettings()`` when omitted.
    cancel : callable, optional
        ``cancel() -> bool``, checked before each plane; True ends the iteration.
    on_stop : callable, optional
        ``on_stop(Stop)`` when an object's walk stops at a plane because its mask failed a
        threshold (the reason is also logged at DEBUG level).

    Yields
    ------
    PlaneResult
        Each annotated ``(plane, object)`` (before any walk from it), then the propagated
        ones, each ``(plane, object)`` at most once. Planes where a walk stopped are not
        yielded.
    """
    if not isinstance(prompts, PromptSet):
        raise TypeError(f"prompts must be a PromptSet, got {type(prompts).__name__}")
    settings = SliceSettings() if settings is None else settings
    if not isinstance(settings, SliceSettings):
        raise TypeError(f"settings must be a SliceSettings, got {type(settings).__name__}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    lead = tuple(int(n) for n in lead_shape)
    if not lead or min(lead) < 1:
        raise ValueError(f"lead_shape must have at least one axis, all >= 1, got {lead_shape}; "
                         "a 2D image has nothing to propagate along")
    axis = check_axis(axis, lead)
    lo, hi = check_range(planes, lead[axis])
    lines: dict[tuple[int, ...], dict[int, dict[int, ObjectPrompt]]] = {}
    for key in prompts.planes():
        check_plane(key, lead, what="the prompted stack")
        if lo <= key[axis] < hi:
            rest = key[:axis] + key[axis + 1:]
            lines.setdefault(rest, {})[key[axis]] = prompts.for_plane(key)
    return _run(get_embedding, backend, lines, axis, lo, hi, direction, settings, cancel, on_stop)


def _run(get_embedding, backend, lines, axis, lo, hi, direction, s, cancel, on_stop):
    """The generator behind :func:`propagate_slicewise` (arguments already checked)."""
    fwd, bwd = direction in ("both", "forward"), direction in ("both", "backward")
    for rest in sorted(lines):
        annotated, last = lines[rest], max(lines[rest])
        positions: dict[int, list[int]] = {}  # object -> sorted annotated positions
        for pos in sorted(annotated):
            for oid in annotated[pos]:
                positions.setdefault(oid, []).append(pos)

        def key_of(pos: int, rest=rest) -> tuple[int, ...]:
            return along_axis(rest, axis, pos)

        def limit(oid: int, pos: int, step: int, positions=positions) -> int:
            """Last position (inclusive) a walk of `oid` from `pos` may cover."""
            ahead = [p for p in positions[oid] if (p - pos) * step > 0]
            if not ahead:
                return hi - 1 if step > 0 else lo
            nxt = min(ahead) if step > 0 else max(ahead)
            return (pos + nxt) // 2 if step > 0 and bwd else nxt - step  # nearer one wins

        seeds: dict[tuple[int, int], tuple[ObjectPrompt, np.ndarray | None, int]] = {}
        done: set[tuple[int, int]] = set()
        for step in (1, -1) if bwd else (1,):
            walks: dict[int, _Walk] = {}
            for pos in range(lo, hi) if step > 0 else range(hi - 1, lo - 1, -1):
                own = annotated.get(pos, {})
                here = own if step > 0 else {}  # segmented in the forward pass only
                walks = {o: w for o, w in walks.items()
                         if (w.limit - pos) * step >= 0 and o not in own and (pos, o) not in done}
                if not here and not walks and step > 0 and pos > last:
                    break
                if here or walks:
                    if is_cancelled(cancel):
                        return
                    yield from _visit(get_embedding(key_of(pos)), backend, key_of(pos), pos,
                                      step, here, walks, seeds, done, s, on_stop)
                if step < 0 or fwd:
                    walks.update({o: _Walk(*seeds[pos, o], limit(o, pos, step)) for o in own})
        if is_cancelled(cancel):
            return


def _visit(embedding: Embedding, backend: Backend, key: tuple[int, ...], pos: int, step: int,
           here: dict[int, ObjectPrompt], walks: dict[int, _Walk], seeds: dict,
           done: set, s: SliceSettings, on_stop: Any = None) -> Iterator[PlaneResult]:
    """Predict every object of one plane in one call; yield results, update walks/seeds."""
    ann_ids, walk_ids = sorted(here), sorted(walks)
    batch = [here[o] for o in ann_ids] + [walks[o].prompt for o in walk_ids]
    masks, scores, logits = backend.predict(embedding, batch, multimask=s.multimask).best()
    masks = np.asarray(masks, dtype=bool)
    for n, oid in enumerate(ann_ids):
        yield PlaneResult(key, oid, masks[n], float(scores[n]), "annotated", 0, logits[n])
        done.add((pos, oid))
        area = int(np.count_nonzero(masks[n]))
        seeds[pos, oid] = ((_next_prompt(masks[n], logits[n], s), masks[n], area) if area
                           else (here[oid], None, 0))
    for n, oid in enumerate(walk_ids, start=len(ann_ids)):
        walk, mask, score = walks[oid], masks[n], float(scores[n])
        area = int(np.count_nonzero(mask))
        reason = _stop_reason(s, walk, mask, area, score)
        if reason is not None:
            log.debug("object %d stops at plane %s: %s", oid, key, reason)
            if on_stop is not None:
                on_stop(Stop(oid, key, step, reason, score, area))
            del walks[oid]
            continue
        yield PlaneResult(key, oid, mask, score, "propagated", step, logits[n])
        done.add((pos, oid))
        if area:
            walk.prompt, walk.mask, walk.area = _next_prompt(mask, logits[n], s), mask, area
