"""Tracking into a session's labels store: a run, a correction, a division marked by hand.

Each function is one operation of the store's history (``Session.undo`` reverts it
pixel-wise, with its registry changes), written through the store's public API: pixels
frame by frame as the :class:`~.tracker.Tracker` makes them final, and the lineage
(``parent``, ``track_start``) in the object registry. Bad input (a missing track, a frame
outside the stack, prompts off the image) is refused before anything is written.

Overlap: tracked masks fill only background and their own earlier pixels
(``overlap="keep"``): objects that are not part of the run are never overwritten.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import Cancel, Progress, is_cancelled
from ..errors import TrackingError
from ..prompts import ObjectPrompt, PromptSet, check_in_plane
from .lineage import Lineage, scan_tracks
from .settings import TrackSettings
from .tracker import Division, FrameMasks, Tracker

__all__ = ["TrackResult", "track", "correct_track", "mark_division"]


@dataclass
class TrackResult:
    """What a tracking run wrote.

    Attributes
    ----------
    lineage : Lineage
        The tracks of this run (start, end, parent).
    divisions : list of Division
    lost : dict
        ``{id: last frame}`` of objects lost before the end.
    frames : list of int
        Frames written, in order.
    cancelled : bool
    """

    lineage: Lineage
    divisions: list[Division] = field(default_factory=list)
    lost: dict[int, int] = field(default_factory=dict)
    frames: list[int] = field(default_factory=list)
    cancelled: bool = False


def _store(session: Any) -> Any:
    store = getattr(session, "labels", None)
    if store is None:
        raise TrackingError("tracking writes a labels store: create the session with "
                            "labels=PATH")
    shape = tuple(int(s) for s in session.shape)
    if len(shape) != 3:
        raise TrackingError(f"tracking needs a (t, y, x) stack; this image has shape {shape} "
                            "(take one z-plane of a (t, z, y, x) series first)")
    return store


def _check_prompts(prompts: PromptSet, shape: tuple[int, ...]) -> None:
    if not isinstance(prompts, PromptSet):
        raise TypeError(f"prompts must be a PromptSet, got {type(prompts).__name__}")
    if not len(prompts):
        raise TrackingError("no prompts: give at least one object on one frame")
    for key, objects in prompts.items():
        if len(key) != 1 or not 0 <= key[0] < shape[0]:
            raise TrackingError(f"prompts of objects {sorted(objects)}: plane {key} is not a "
                                f"frame of the stack (0..{shape[0] - 1})")
        for oid, p in objects.items():
            check_in_plane(p, shape[1:], f"object {oid} on frame {key[0]}")


def _write(store: Any, tracker: Tracker, tracked: set[int], *, what: str, kind: str = "track",
           progress: Progress = None, total: int = 1,
           registry: dict[int, dict[str, Any]] | None = None,
           before: Any = None) -> list[int]:
    """Run ``tracker`` and write its frames into ``store`` as one operation."""
    frames: list[int] = []
    results = iter(tracker)
    leading: list[FrameMasks] = []  # the propagators check their input here: nothing written
    for step in results:
        leading.append(step)
        if step.masks:
            break
    if not any(step.masks for step in leading):
        if before is not None:
            raise TrackingError(f"{what}: the prompt finds no object (a mask of fewer than "
                                f"{tracker.settings.min_area} pixels); nothing was changed")
        return frames
    if progress is not None:
        progress(0, total)
    recorded: set[int] = set()
    with store.operation(kind, what) as op:
        if before is not None:
            before()
        for step in itertools.chain(leading, results):
            tracked.update(step.masks)
            _write_frame(store, step, tracked)
            new = {oid: tracker.lineage[oid] for oid in step.masks if oid not in recorded}
            if new:
                infos = {oid: {"parent": t.parent, "track_start": t.start}
                         for oid, t in new.items()}
                store.set_objects(infos)
                recorded.update(new)
            frames.append(step.frame)
            if progress is not None:
                progress(min(len(frames), total), total)
            op.what = f"{what} (frames {frames[0]}–{frames[-1]})"
        if registry:
            store.set_objects(registry)
    return frames


def _write_frame(store: Any, step: FrameMasks, tracked: set[int]) -> None:
    key = (step.frame,)
    current = store.read_plane(key)
    stale = [int(i) for i in np.unique(current) if i and int(i) in tracked]
    empty = np.zeros(current.shape, bool)
    for oid in stale:  # earlier pixels of a tracked object on this frame are replaced
        store.paint(key, empty, oid)
    composed = np.zeros(current.shape, np.uint32)
    for oid in sorted(step.masks):
        mask = step.masks[oid] & (composed == 0)
        composed[mask] = oid
    if composed.any():
        store.merge_plane(key, composed)


def _ids(store: Any, prompts: PromptSet) -> Any:
    above = max(prompts.object_ids(), default=0)

    def new_ids(n: int) -> list[int]:
        return store.reserve_object_ids(int(n), {"source": "tracking"}, above=above)

    return new_ids


def track(
    session: Any,
    prompts: PromptSet,
    *,
    settings: TrackSettings | None = None,
    frames: tuple[int, int] | None = None,
    progress: Progress = None,
    cancel: Cancel = None,
) -> TrackResult:
    """Track the prompted objects of a ``(t, y, x)`` session forward and write the tracks.

    Parameters
    ----------
    session : Session
        Its image is ``(t, H, W)`` (or ``(t, H, W, 3)`` RGB, e.g. a video); it has a labels
        store.
    prompts : PromptSet
        Objects on their first frame (keys ``(t,)``), e.g. one box or point per cell, or
        their masks from a first-frame segmentation; a later prompt of the same object
        corrects it from that frame.
    settings : TrackSettings, optional
        Method (slice-wise or SAM2), division persistence K, minimum area.
    frames : (start, stop), optional
        Only frames ``start <= t < stop``.
    progress, cancel
        ``progress(done, total)`` in frames; ``cancel`` stops between frames (the frames
        written so far are kept, one undoable operation).

    Returns
    -------
    TrackResult
        The lineage is also in the store's registry: ``parent`` and ``track_start`` of
        every tracked object.
    """
    store = _store(session)
    settings = settings or TrackSettings()
    shape = tuple(int(s) for s in session.shape)
    _check_prompts(prompts, shape)
    ids = prompts.object_ids()
    tracker = Tracker(session, prompts, settings=settings, frames=frames,
                      new_ids=_ids(store, prompts), cancel=cancel)
    store.update_provenance(tracking={"settings": settings.to_dict(), "frames": frames,
                                      "objects": ids})
    what = f"tracking of object{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
    lo, hi = frames or (0, shape[0])
    written = _write(store, tracker, set(ids), what=what, progress=progress,
                     total=hi - min(k[0] for k in prompts.planes()))
    return TrackResult(tracker.lineage, list(tracker.divisions), tracker.lost, written,
                       is_cancelled(cancel))


def _clear_from(store: Any, ids: Sequence[int], frame: int, n: int) -> None:
    """Remove the pixels of ``ids`` on frames ``frame`` .. ``n - 1``."""
    want = {int(i) for i in ids}
    for t in range(frame, n):
        plane = store.read_plane((t,))
        for oid in sorted(want.intersection(np.unique(plane).tolist())):
            store.paint((t,), np.zeros(plane.shape, bool), oid)


def correct_track(
    session: Any,
    track_id: int,
    frame: int,
    prompt: ObjectPrompt,
    *,
    settings: TrackSettings | None = None,
    progress: Progress = None,
    cancel: Cancel = None,
) -> TrackResult:
    """Correct track ``track_id`` from ``frame`` on: segment it there from ``prompt`` and
    track it forward again (one operation).

    Its pixels from ``frame`` on and all its descendants are replaced by what the new run
    finds (it may divide again). ``frame`` may be any frame of the track, the frame after
    its end (to continue it, e.g. after a wrong division), or an earlier frame for a
    track without a parent (it then starts there).

    Raises
    ------
    TrackingError
        No such track; ``frame`` past the frame after its end; before a daughter's start.
    """
    store = _store(session)
    settings = settings or TrackSettings()
    shape = tuple(int(s) for s in session.shape)
    tid, frame = int(track_id), int(frame)
    if not 0 <= frame < shape[0]:
        raise TrackingError(f"frame {frame} is not a frame of the stack (0..{shape[0] - 1})")
    check_in_plane(prompt, shape[1:], f"track {tid} on frame {frame}")
    table = scan_tracks(store)
    lineage = table.lineage
    if tid not in lineage:
        raise TrackingError(f"there is no track {tid} in {store.path} (tracks: "
                            f"{sorted(lineage)[:20]})")
    t = lineage[tid]
    if frame > t.end + 1:
        raise TrackingError(f"track {tid} ends on frame {t.end}; correct it on frames up to "
                            f"{t.end + 1}, or start a new track on frame {frame}")
    if frame < t.start and t.parent:
        raise TrackingError(f"track {tid} is a daughter of {t.parent} from frame {t.start}; "
                            f"correct it on frames >= {t.start}")
    gone = lineage.descendants(tid)
    prompts = PromptSet()
    prompts.add((frame,), tid, prompt)
    start = min(t.start, frame)
    tracker = Tracker(session, prompts, settings=settings, frames=(frame, shape[0]),
                      new_ids=_ids(store, prompts), parents={tid: t.parent},
                      starts={tid: start}, cancel=cancel)

    def before() -> None:
        for d in gone:
            store.delete_object(d)
        _clear_from(store, [tid], frame, shape[0])

    written = _write(store, tracker, {tid}, what=f"correction of track {tid} from frame {frame}",
                     progress=progress, total=shape[0] - frame, before=before,
                     registry={tid: {"parent": t.parent, "track_start": start}})
    return TrackResult(tracker.lineage, list(tracker.divisions), tracker.lost, written,
                       is_cancelled(cancel))


def mark_division(
    session: Any,
    parent: int,
    frame: int,
    daughters: Sequence[ObjectPrompt],
    *,
    settings: TrackSettings | None = None,
    progress: Progress = None,
    cancel: Cancel = None,
) -> TrackResult:
    """Mark a division by hand: track ``parent`` ends on ``frame - 1`` and each prompt in
    ``daughters`` (two, or more) starts a daughter on ``frame``, tracked forward.

    The parent's pixels from ``frame`` on and its earlier descendants are replaced (one
    operation). Returns the daughters' run; their ids are new.

    Raises
    ------
    TrackingError
        Fewer than two daughter prompts; ``parent`` absent on ``frame - 1``.
    """
    store = _store(session)
    settings = settings or TrackSettings()
    shape = tuple(int(s) for s in session.shape)
    pid, frame = int(parent), int(frame)
    prompts_in = list(daughters)
    if len(prompts_in) < 2:
        raise TrackingError(f"a division needs two or more daughter prompts, got "
                            f"{len(prompts_in)}")
    if not 1 <= frame < shape[0]:
        raise TrackingError(f"a division happens on frames 1..{shape[0] - 1} (the parent must "
                            f"exist on the frame before), got {frame}")
    for n, p in enumerate(prompts_in, start=1):
        if not isinstance(p, ObjectPrompt) or p.is_empty():
            raise TrackingError(f"daughter {n}: give an ObjectPrompt with points, a box or a "
                                "mask")
        check_in_plane(p, shape[1:], f"daughter {n} on frame {frame}")
    if pid not in np.unique(store.read_plane((frame - 1,))).tolist():
        raise TrackingError(f"track {pid} is not on frame {frame - 1}, the frame before the "
                            "division; choose the frame after its last one")
    lineage = scan_tracks(store).lineage
    gone = lineage.descendants(pid)
    ids = store.reserve_object_ids(len(prompts_in), {"source": "tracking"})
    prompts = PromptSet()
    for did, p in zip(ids, prompts_in, strict=True):
        prompts.add((frame,), did, p)
    tracker = Tracker(session, prompts, settings=settings, frames=(frame, shape[0]),
                      new_ids=_ids(store, prompts), parents={d: pid for d in ids},
                      starts={d: frame for d in ids}, cancel=cancel)

    def before() -> None:
        for d in gone:
            store.delete_object(d)
        _clear_from(store, [pid], frame, shape[0])

    written = _write(store, tracker, set(ids), what=f"division of track {pid} on frame {frame}",
                     progress=progress, total=shape[0] - frame, before=before)
    division = Division(pid, tuple(ids), frame)
    return TrackResult(tracker.lineage, [division, *tracker.divisions], tracker.lost, written,
                       is_cancelled(cancel))
