"""How a session writes what the algorithms yield: one store operation per run.

Propagation, segment everything and boxes to masks compute plane results (generators in
:mod:`napari_segany.propagate`, :mod:`napari_segany.auto`, :mod:`napari_segany.boxes`);
these functions write them plane by plane into a labels store (the session's, or its
review area's) as one operation each, record provenance and prompts, and allocate new
object ids above every id in use. Bad input is refused before the first write.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np

from .._planes import check_axis, check_range, plane_order
from .._progress import Cancel, Progress
from ..auto import AutoResult, AutoSettings, PlaneLinker, auto_planes
from ..auto.planes import batches_per_plane
from ..boxes import OVERLAP_POLICIES, BoxesResult, BoxTable, box_planes
from ..errors import BoxError, Cancelled
from ..prompts import PromptSet
from ..propagate import SliceSettings, Stop, propagate_sam2, propagate_slicewise
from ..storage.labels import LabelsStore
from ..tiling import TiledEmbeddings

#: The :class:`~napari_segany.session.Session` writing (typed loosely: core imports this).
Session = Any

__all__ = ["propagate", "auto_segment", "segment_boxes"]


def _settings_json(settings: Any) -> Any:
    if settings is None:
        return None
    if is_dataclass(settings):
        return {k: (v if v == v and abs(v) != float("inf") else str(v))
                if isinstance(v, float) else v for k, v in asdict(settings).items()}
    return str(settings)


def _span(planes: list[tuple[int, ...]], axis: int) -> str:
    pos = sorted({p[axis] for p in planes})
    if len(planes) == 1:
        return f"plane {planes[0]}"
    if pos == list(range(pos[0], pos[-1] + 1)) and len(pos) == len(planes):
        return f"planes {pos[0]}–{pos[-1]}"
    return f"{len(planes)} planes"


def _floor(session: Session, store: LabelsStore) -> int:
    """The first free object id: above the store's and (for the review area) the labels'."""
    first = store.next_object_id()
    if session.labels is not None and store is not session.labels:
        first = max(first, session.labels.next_object_id())
    return first


def propagate(session: Session, store: LabelsStore, prompts: PromptSet, *, method: str,
              axis: int, planes: Any, direction: str, settings: Any, cancel: Cancel,
              progress: Progress) -> dict[int, list[tuple[int, ...]]]:
    """See :meth:`Session.propagate`."""
    lead = session.plane_keys_shape
    if not lead:
        raise ValueError("propagation needs a volume or stack; this image is 2D")
    session._check_prompts(prompts)
    stops: list[Stop] = []
    session.last_stops = stops
    if method == "slice":
        settings = settings or SliceSettings()
        results = propagate_slicewise(
            session.embedding, session.backend, prompts, lead_shape=lead, axis=axis,
            planes=planes, direction=direction, settings=settings, cancel=cancel,
            on_stop=stops.append)
    elif method == "sam2":
        results = propagate_sam2(
            session.embedding, session.backend, prompts, lead_shape=lead,
            plane_shape=session.shape[-2:], axis=axis, planes=planes, direction=direction,
            cancel=cancel)
    else:
        raise ValueError(f"method must be 'slice' or 'sam2', not {method!r}")
    ax = check_axis(axis, lead)
    lo, hi = check_range(planes, lead[ax])
    n_groups = len({k[:ax] + k[ax + 1:] for k in prompts.planes()})
    total = max(1, (hi - lo) * n_groups)
    provenance = {
        "prompts": prompts.to_dict(include_masks=False),
        "propagation": {"method": method, "axis": axis, "planes": planes,
                        "direction": direction, "settings": _settings_json(settings)},
    }
    written: dict[int, list[tuple[int, ...]]] = {}
    done_planes: set[tuple[int, ...]] = set()
    ids = prompts.object_ids()
    what = f"propagation of object{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
    results = iter(results)
    first = next(results, None)  # the prompts are checked here: bad input writes nothing
    if first is None:
        return written
    store.update_provenance(**provenance)
    with store.operation("propagate", what) as op:
        store.record_prompts({(k, oid): p for k, objs in prompts.items()
                              for oid, p in objs.items()})
        for res in itertools.chain([first], results):
            store.paint(res.plane, res.mask, res.obj_id, overlap="keep")
            store.set_object(res.obj_id)
            written.setdefault(res.obj_id, []).append(res.plane)
            if res.plane not in done_planes:
                done_planes.add(res.plane)
                if progress is not None:
                    progress(min(len(done_planes), total), total)
                op.what = f"{what} ({method}) on {_span(sorted(done_planes), ax)}"
    return written


def auto_segment(session: Session, store: LabelsStore, *, planes: Any, plane: Any, axis: int,
                 settings: AutoSettings | None, link: bool, link_iou: float,
                 tiled: TiledEmbeddings | None, progress: Progress,
                 cancel: Cancel) -> AutoResult:
    """See :meth:`Session.auto_segment`."""
    s = settings or AutoSettings()
    if plane is not None:
        if planes is not None:
            raise ValueError("give plane= or planes=, not both")
        keys = [session.check_plane(plane)]
    else:
        keys = plane_order(session.plane_keys_shape, planes, axis)
    batches_per_plane(session.backend, s, tiled)  # refuses bad settings before any write
    store.update_provenance(auto={"settings": s.to_dict(), "axis": axis, "planes": planes,
                                  "link": bool(link), "link_iou": float(link_iou),
                                  "tiling": tiled.tiling if tiled is not None else None})
    what = "segment everything" + (f" on plane {keys[0] or '(2D)'}" if len(keys) == 1 else
                                   f" on {len(keys)} planes")
    linker = PlaneLinker(min_iou=float(link_iou), next_id=_floor(session, store))
    ax = axis % len(keys[0]) if keys and keys[0] else 0
    written: list[tuple[int, ...]] = []
    new_ids: list[int] = []
    seen: set[int] = set()
    results = auto_planes(session, keys, settings=s, tiled=tiled, progress=progress,
                          cancel=cancel)
    try:
        with store.operation("auto", what):
            for n, (key, labels) in enumerate(results):
                existing = store.read_plane(key)
                linker.next_id = max(linker.next_id, int(existing.max()) + 1,
                                     _floor(session, store))
                group = key[:ax] + key[ax + 1:] if link else n
                linked = linker(labels, group)
                fresh = [int(i) for i in np.unique(linked[existing == 0])
                         if i and int(i) not in seen]
                seen.update(fresh)
                store.merge_plane(key, linked)
                if fresh:
                    store.set_objects({i: {"source": "auto"} for i in fresh})
                    new_ids += fresh
                written.append(key)
    except Cancelled:
        return AutoResult(written, new_ids, cancelled=True)
    return AutoResult(written, new_ids)


def segment_boxes(session: Session, store: LabelsStore, boxes: Any, *, plane: Any,
                  classes: Any, ids: Any, tiled: TiledEmbeddings | None, chunk_size: int,
                  overlap: str, multimask: bool, progress: Progress,
                  cancel: Cancel) -> BoxesResult:
    """See :meth:`Session.segment_boxes`."""
    if overlap not in OVERLAP_POLICIES:
        raise BoxError(f"overlap must be one of {OVERLAP_POLICIES}, not {overlap!r}")
    if not isinstance(boxes, BoxTable):
        boxes = BoxTable.from_array(boxes, planes=plane, classes=classes, ids=ids)
    elif plane is not None or classes is not None or ids is not None:
        raise BoxError("plane=, classes= and ids= apply to an array of boxes; a BoxTable "
                       "carries its own")
    table = boxes.validated(session.shape)
    n = len(table)
    if tiled is not None and tuple(tiled.plane_shape) != tuple(session.shape[-2:]):
        raise ValueError("the tiled embeddings belong to an image of another shape")
    explicit = table.ids[table.ids > 0]
    id_arr = table.ids.copy()
    need = int((id_arr == 0).sum())
    if need:  # new ids, allocated under the store's lock (safe with other writers)
        above = max(int(explicit.max()) if explicit.size else 0, _floor(session, store) - 1)
        id_arr[id_arr == 0] = store.reserve_object_ids(need, above=above)
    results = box_planes(session, table, id_arr, tiled=tiled, chunk_size=chunk_size,
                         overlap=overlap, multimask=multimask, progress=progress,
                         cancel=cancel)
    store.update_provenance(boxes={"source": table.source, "n_boxes": n, "overlap": overlap,
                                   "multimask": bool(multimask),
                                   "tiling": None if tiled is None else tiled.tiling})
    scores = np.full(n, np.nan, np.float32)
    areas = np.zeros(n, np.int64)
    written: list[tuple[int, ...]] = []
    try:
        with store.operation("boxes", f"boxes to masks ({n} box{'es' if n != 1 else ''})"):
            for key, rows, labels, row_scores in results:
                scores[rows] = row_scores
                plane_labels = store.merge_plane(key, labels)
                counts = np.bincount(plane_labels.ravel(), minlength=int(id_arr.max()) + 1)
                areas[rows] = counts[id_arr[rows]]
                infos: dict[int, dict[str, Any]] = {}
                for r in rows:
                    info = infos.setdefault(int(id_arr[r]), {"source": "boxes"})
                    if table.classes[r] is not None:
                        info["class_name"] = table.classes[r]
                store.set_objects(infos)
                written.append(key)
    except Cancelled:
        return BoxesResult(id_arr, scores, areas, written, cancelled=True)
    return BoxesResult(id_arr, scores, areas, written)
