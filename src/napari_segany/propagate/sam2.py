"""SAM2 memory propagation of prompted objects along one leading axis of a volume or stack.

Prompted planes are SAM2 conditioning frames; corrections added after a pass are
conditioning frames too (``add_all_frames_to_correct_as_cond``), and re-propagating from
them replaces what follows. The tracking itself runs in
:class:`~napari_segany.engine.sam2_video.Sam2Propagator`: frames are embedded when SAM2
asks for them and memories beyond SAM2's window are released, so memory does not grow
with the number of planes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .._planes import along_axis, check_axis, check_plane, check_range
from ..engine.base import Backend
from ..engine.sam2_video import Sam2Propagator
from ..prompts import PromptSet
from .slicewise import PlaneResult

__all__ = ["Sam2Propagator", "propagate_sam2"]


def propagate_sam2(
    get_embedding: Callable[[tuple[int, ...]], Any],
    backend: Backend,
    prompts: PromptSet,
    *,
    lead_shape: tuple[int, ...],
    plane_shape: tuple[int, int],
    axis: int = 0,
    planes: tuple[int, int] | None = None,
    direction: str = "both",
    cancel: Callable[[], bool] | None = None,
    offload_state_to_cpu: bool = False,
) -> Iterator[PlaneResult]:
    """SAM2 memory propagation of every prompted object along ``axis`` of the leading axes.

    Parameters
    ----------
    get_embedding : callable
        ``get_embedding(plane_key) -> Embedding`` for the backend.
    backend : Sam2Backend
    prompts : PromptSet
        Prompts keyed by plane (tuples over ``lead_shape``) and object id.
    lead_shape : tuple of int
        Shape of the leading (plane) axes, e.g. ``(Z,)`` or ``(T, Z)``.
    plane_shape : tuple of int
        ``(H, W)``.
    axis : int
        Which leading axis to propagate along; the other leading indices stay fixed (one
        independent run per combination that has prompts).
    planes : (start, stop), optional
        Only planes ``start <= i < stop`` along ``axis``.
    direction : {"both", "forward", "backward"}

    Yields
    ------
    PlaneResult
        ``source="annotated"`` for prompted planes, ``"propagated"`` for the rest.
    """
    lead_shape = tuple(int(n) for n in lead_shape)
    if not lead_shape:
        raise ValueError("propagation needs a volume or stack (an image with leading axes)")
    axis = check_axis(axis, lead_shape)
    lo, hi = check_range(planes, lead_shape[axis])
    groups: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
    for key in prompts.planes():
        check_plane(key, lead_shape, what="the prompted stack")
        if lo <= key[axis] < hi:
            rest = key[:axis] + key[axis + 1:]
            groups.setdefault(rest, []).append((key[axis] - lo, key))
    if not groups:
        raise ValueError(f"no prompts on planes {lo}..{hi - 1} along axis {axis}")

    for rest, annotated in groups.items():
        def full_key(i: int, rest: tuple[int, ...] = rest) -> tuple[int, ...]:
            return along_axis(rest, axis, i + lo)

        prop = Sam2Propagator(
            backend, n_frames=hi - lo, frame_size=plane_shape,
            get_embedding=lambda i, fk=full_key: get_embedding(fk(i)),
            offload_state_to_cpu=offload_state_to_cpu,
        )
        prompted: set[tuple[int, int]] = set()
        for frame, key in sorted(annotated):
            for oid, p in prompts.for_plane(key).items():
                prop.add_prompt(frame, oid, p)
                prompted.add((frame, oid))
        start = min(f for f, _ in annotated) if direction != "backward" else max(
            f for f, _ in annotated)
        for frame, masks in prop.propagate(start=start, direction=direction, cancel=cancel):
            for oid, mask in masks.items():
                src = "annotated" if (frame, oid) in prompted else "propagated"
                yield PlaneResult(full_key(frame), oid, mask, float("nan"), src,
                                  0 if src == "annotated" else (1 if frame > start else -1))
