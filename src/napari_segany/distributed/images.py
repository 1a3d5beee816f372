"""One image of a batch, on a worker: read it, run one mode, write its own output.

The modes are those of the command line, computed by the same algorithms and written by
the same rules (:mod:`napari_segany.auto`, :mod:`napari_segany.boxes`,
:mod:`napari_segany.propagate`; the writing loops follow
:mod:`napari_segany.session.writes`), so an image segments in a batch exactly as
``napari-segany auto IMAGE`` segments it alone:

* ``embed``: every plane into the item's embedding cache (resumable by itself);
* ``auto``: segment everything, objects linked across planes;
* ``boxes``: the item's box file to masks, one object per box;
* ``propagate``: the item's prompts JSON propagated through the volume or stack.

Every output is the item's own (one writer per output, so no two tasks write one chunk).
It records the batch in its provenance: ``batch = {"job": <signature>, "status":
"started" | "done", ...}``; a rerun skips outputs whose status is ``done`` for the same
job, and replaces outputs this job started but did not finish. An existing output this job
did not write, or one of another shape, is refused (the item fails, the output is left as
it is).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import plane_order
from ..auto import AutoSettings, PlaneLinker, auto_planes
from ..auto.planes import batches_per_plane
from ..boxes import box_planes, read_boxes
from ..errors import BatchError
from ..intensity import normalizer_from_options
from ..io import channels_last, read_image
from ..prompts import PromptSet, check_in_plane
from ..propagate import SliceSettings, propagate_sam2, propagate_slicewise
from ..storage.cache import EmbeddingCache
from ..storage.embeddings import PlaneEmbeddings
from ..storage.labels import LabelsStore, is_labels_store
from ..tiling import TiledEmbeddings
from .inputs import BatchItem

__all__ = ["JobOptions", "MODES", "run_image", "item_status", "open_image"]

MODES = ("embed", "auto", "boxes", "propagate")


@dataclass(frozen=True)
class JobOptions:
    """What to do with every image of a batch (the options of the matching command).

    Attributes
    ----------
    mode : {"embed", "auto", "boxes", "propagate"}
    auto : AutoSettings
        Mask generation and overlap rules (``auto``).
    intensity : dict
        ``window``, ``percentiles``, ``channels`` of
        :func:`~napari_segany.intensity.normalizer_from_options`.
    rgb : bool, optional
        The last axis holds RGB(A) channels (default: as the reader says).
    channel_axis : int, optional
        Axis holding channels, moved last.
    tile, halo, stitch_iou
        Tiling of large planes as in ``napari-segany auto`` (``"auto"``: tiles of the
        model's input size where a plane's longer side exceeds twice that; 0: never).
    axis, link, link_iou
        Linking across planes (``auto``) or the propagation axis (``propagate``).
    chunk_size, overlap, multimask, default_class
        ``boxes`` options.
    method, direction, slice
        ``propagate`` options (``slice``: a :class:`~napari_segany.propagate.SliceSettings`).
    batch_size : int
        Planes per forward pass (``embed``).
    overwrite : bool
        Replace existing labels stores that this job did not write (never other files).
    """

    mode: str = "auto"
    auto: AutoSettings = field(default_factory=AutoSettings)
    intensity: dict = field(default_factory=dict)
    rgb: bool | None = None
    channel_axis: int | None = None
    tile: int | str = "auto"
    halo: int | None = None
    stitch_iou: float = 0.5
    axis: int = 0
    link: bool = True
    link_iou: float = 0.3
    chunk_size: int = 64
    overlap: str = "score"
    multimask: bool = False
    default_class: str | None = None
    method: str = "slice"
    direction: str = "both"
    slice: SliceSettings = field(default_factory=SliceSettings)
    batch_size: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BatchError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")

    def signature(self, model_id: str) -> str:
        """A short hash of everything that changes the results (not ``overwrite``)."""
        d = asdict(self)
        d.pop("overwrite")
        text = json.dumps({"model": model_id, "options": d}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def open_image(path: str, opts: JobOptions) -> tuple[Any, bool, dict[str, Any]]:
    """``(data, rgb, source provenance)`` of one input, channels last."""
    img = read_image(path)
    data, rgb = img.data, img.rgb if opts.rgb is None else bool(opts.rgb)
    if opts.channel_axis is not None:
        data, rgb = channels_last(data, opts.channel_axis), True
    shape = tuple(int(s) for s in (data.shape[:-1] if rgb else data.shape))
    source = {"path": str(Path(path).resolve()), "shape": [int(s) for s in data.shape],
              "rgb": rgb, "spacing": None if img.spacing is None else list(img.spacing)}
    return data, rgb, {"source": source, "shape": shape}


def _normalizer(data: Any, rgb: bool, opts: JobOptions) -> Any:
    return normalizer_from_options(data, rgb=rgb, channels_moved=opts.channel_axis is not None,
                                   **opts.intensity)


def _tiled(data, rgb, shape, backend, normalizer, opts: JobOptions) -> TiledEmbeddings | None:
    size = int(getattr(backend, "image_size", 1024))
    if opts.tile == 0 or (opts.tile == "auto" and max(shape[-2:]) <= 2 * size):
        return None
    tile = size if opts.tile == "auto" else int(opts.tile)
    return TiledEmbeddings(data, backend, normalizer=normalizer, rgb=rgb, tile=tile,
                           halo=opts.halo)


def item_status(item: BatchItem, job: str, mode: str) -> str:
    """``"done"``, ``"started"`` (by this job, unfinished), ``"absent"`` or ``"foreign"``
    (an output this job did not write)."""
    out = Path(item.out)
    if not out.exists():
        return "absent"
    if mode == "embed":
        return "started"  # an embedding cache resumes by itself (and checks its signature)
    if not is_labels_store(out):
        return "foreign"
    batch = LabelsStore.open(out, mode="r").provenance.get("batch") or {}
    if batch.get("job") != job:
        return "foreign"
    return "done" if batch.get("status") == "done" else "started"


def _open_store(item: BatchItem, shape: tuple[int, ...], job: str, opts: JobOptions,
                provenance: dict[str, Any]) -> LabelsStore:
    status = item_status(item, job, opts.mode)
    out = Path(item.out)
    if status == "foreign":
        if not is_labels_store(out):
            raise BatchError(f"{out} exists and is not a napari-segany labels store; it is "
                             "never replaced: choose another output")
        old = LabelsStore.open(out, mode="r")
        if old.shape != shape and not opts.overwrite:
            raise BatchError(f"{out} holds labels of shape {old.shape}, but {item.image} has "
                             f"shape {shape}; choose another output (or overwrite)")
        if not opts.overwrite:
            raise BatchError(f"{out} exists and was not written by this batch; choose another "
                             "output folder, or overwrite to replace it")
    fields = {**provenance, "batch": {"job": job, "status": "started", "key": item.key}}
    return LabelsStore.create(out, shape, overwrite=status != "absent", provenance=fields)


def run_image(item: BatchItem, opts: JobOptions, backend: Any, job: str) -> dict[str, Any]:
    """Run ``opts.mode`` on one item; returns its summary (``status``, ``shape``, ...).

    Raises
    ------
    BatchError
        The output cannot be written as asked (nothing was changed).
    """
    t0 = time.perf_counter()
    data, rgb, info = open_image(item.image, opts)
    shape = info["shape"]
    normalizer = _normalizer(data, rgb, opts)
    summary: dict[str, Any] = {"key": item.key, "out": item.out, "shape": list(shape)}
    if opts.mode == "embed":
        cache = EmbeddingCache(item.out, backend=backend, normalizer=normalizer, data=data,
                               rgb=rgb)
        summary["computed"] = cache.precompute(batch_size=opts.batch_size)
        summary["objects"] = 0
    else:
        source = PlaneEmbeddings(data, backend, normalizer, rgb=rgb)
        tiled = None if opts.mode == "propagate" else _tiled(data, rgb, shape, backend,
                                                             normalizer, opts)
        prepared = _prepare(item, opts, source)  # bad boxes / prompts: nothing written
        store = _open_store(item, shape, job, opts, {"source": info["source"]})
        try:
            summary["objects"] = _write(opts, source, store, tiled, prepared)
            store.update_provenance(batch={"job": job, "status": "done", "key": item.key,
                                           "objects": summary["objects"]})
        finally:
            store.close()
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    summary["status"] = "done"
    return summary


def _prepare(item: BatchItem, opts: JobOptions, source: PlaneEmbeddings) -> Any:
    if opts.mode == "boxes":
        if not item.boxes:
            raise BatchError(f"{item.image}: no box file (a 'boxes' column of the manifest)")
        table = read_boxes(item.boxes).validated(source.shape)
        if opts.default_class:
            table.classes = [c if c is not None else opts.default_class for c in table.classes]
        return table
    if opts.mode == "propagate":
        if not item.prompts:
            raise BatchError(f"{item.image}: no prompts file (a 'prompts' column)")
        if not source.plane_keys_shape:
            raise BatchError(f"{item.image} is a 2D image; propagate needs a volume or stack")
        try:
            prompts = PromptSet.from_dict(json.loads(Path(item.prompts).read_text()))
        except (OSError, ValueError) as exc:
            raise BatchError(f"prompts file {item.prompts}: {exc}") from None
        for key, objects in prompts.items():
            source.check_plane(key)
            for oid, p in objects.items():
                check_in_plane(p, source.shape[-2:], f"object {oid} on plane {key}")
        return prompts
    batches_per_plane(source.backend, opts.auto)  # refuses bad settings before any write
    return None


def _write(opts: JobOptions, source: PlaneEmbeddings, store: LabelsStore,
           tiled: TiledEmbeddings | None, prepared: Any) -> int:
    if opts.mode == "auto":
        return _write_auto(opts, source, store, tiled)
    if opts.mode == "boxes":
        return _write_boxes(opts, source, store, tiled, prepared)
    return _write_propagation(opts, source, store, prepared)


def _write_auto(opts: JobOptions, source: PlaneEmbeddings, store: LabelsStore,
                tiled: TiledEmbeddings | None) -> int:
    keys = plane_order(source.plane_keys_shape, None, opts.axis)
    store.update_provenance(auto={"settings": opts.auto.to_dict(), "axis": opts.axis,
                                  "planes": None, "link": opts.link,
                                  "link_iou": float(opts.link_iou),
                                  "tiling": tiled.tiling if tiled is not None else None})
    linker = PlaneLinker(min_iou=float(opts.link_iou), next_id=store.next_object_id())
    ax = opts.axis % len(keys[0]) if keys and keys[0] else 0
    seen: set[int] = set()
    with store.operation("auto", f"segment everything on {len(keys)} plane(s) (batch)"):
        for n, (key, labels) in enumerate(auto_planes(source, keys, settings=opts.auto,
                                                      tiled=tiled)):
            group = key[:ax] + key[ax + 1:] if opts.link else n
            linked = linker(labels, group)
            fresh = [int(i) for i in np.unique(linked) if i and int(i) not in seen]
            seen.update(fresh)
            store.merge_plane(key, linked)
            if fresh:
                store.set_objects({i: {"source": "auto"} for i in fresh})
    return len(seen)


def _write_boxes(opts: JobOptions, source: PlaneEmbeddings, store: LabelsStore,
                 tiled: TiledEmbeddings | None, table: Any) -> int:
    ids = table.ids.copy()
    explicit = ids[ids > 0]
    need = int((ids == 0).sum())
    if need:
        above = max(int(explicit.max()) if explicit.size else 0, store.next_object_id() - 1)
        ids[ids == 0] = store.reserve_object_ids(need, above=above)
    store.update_provenance(boxes={"source": table.source, "n_boxes": len(table),
                                   "overlap": opts.overlap, "multimask": opts.multimask,
                                   "tiling": None if tiled is None else tiled.tiling})
    with store.operation("boxes", f"boxes to masks ({len(table)} boxes, batch)"):
        for key, rows, labels, _scores in box_planes(
                source, table, ids, tiled=tiled, chunk_size=opts.chunk_size,
                overlap=opts.overlap, multimask=opts.multimask):
            store.merge_plane(key, labels)
            infos: dict[int, dict[str, Any]] = {}
            for r in rows:
                info = infos.setdefault(int(ids[r]), {"source": "boxes"})
                if table.classes[r] is not None:
                    info["class_name"] = table.classes[r]
            store.set_objects(infos)
    return len(set(ids.tolist()))


def _write_propagation(opts: JobOptions, source: PlaneEmbeddings, store: LabelsStore,
                       prompts: PromptSet) -> int:
    lead = source.plane_keys_shape
    if opts.method == "sam2":
        results = propagate_sam2(source.embedding, source.backend, prompts, lead_shape=lead,
                                 plane_shape=source.shape[-2:], axis=opts.axis,
                                 direction=opts.direction)
    else:
        results = propagate_slicewise(source.embedding, source.backend, prompts,
                                      lead_shape=lead, axis=opts.axis,
                                      direction=opts.direction, settings=opts.slice)
    store.update_provenance(prompts=prompts.to_dict(include_masks=False),
                            propagation={"method": opts.method, "axis": opts.axis,
                                         "direction": opts.direction, "planes": None})
    objects: set[int] = set()
    with store.operation("propagate", f"propagation of {len(prompts.object_ids())} "
                                      "object(s) (batch)"):
        for res in results:
            store.paint(res.plane, res.mask, res.obj_id, overlap="keep")
            if res.obj_id not in objects:
                store.set_object(res.obj_id)
                objects.add(res.obj_id)
    return len(objects)
