"""The hub: one image, one model, its embeddings, one labels store, and undo.

The napari widget, the notebook API and the command line all drive a :class:`Session`:
interactive segmentation on a plane (:meth:`Session.segment`), committing a mask
(:meth:`Session.commit`, :meth:`Session.undo`, :meth:`Session.redo`), propagation through a
stack (:meth:`Session.propagate`), automatic segmentation (:meth:`Session.auto_segment`)
and boxes to masks (:meth:`Session.segment_boxes`). The algorithms compute; the session
writes what they yield into its labels store. It never imports napari or Qt.
"""

from __future__ import annotations

import itertools
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._limits import check_known_shape, check_plane_pixels
from ._planes import PlaneKey, check_axis, check_plane, check_range, plane_order
from ._progress import Cancel, Progress
from .auto import AutoResult, AutoSettings, PlaneLinker, auto_plane, auto_planes
from .auto.planes import batches_per_plane
from .boxes import OVERLAP_POLICIES, BoxesResult, BoxTable, box_planes
from .engine.base import Backend, Embedding
from .errors import BoxError, Cancelled
from .intensity import Normalizer
from .prompts import ObjectPrompt, PromptSet, check_in_plane
from .propagate import SliceSettings, propagate_sam2, propagate_slicewise
from .storage.cache import EmbeddingCache, data_fingerprint
from .storage.embeddings import PlaneEmbeddings
from .storage.history import UndoResult
from .storage.labels import LabelsStore, check_object_id
from .tiling import TiledEmbeddings

__all__ = ["Session", "Segmentation"]


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


@dataclass
class Segmentation:
    """The best mask of one object on one plane."""

    plane: tuple[int, ...]
    obj_id: int
    mask: np.ndarray  # (H, W) bool
    score: float
    logits: np.ndarray  # (lr, lr) float32


class Session:
    """Interactive segmentation of one image or volume.

    Parameters
    ----------
    image : array-like
        ``(..., H, W)`` grayscale or ``(..., H, W, C)`` with ``rgb=True``; numpy, zarr, dask
        or anything with numpy-style indexing. Planes are read lazily.
    backend : Backend
        A model from :func:`napari_segany.load_model`.
    normalizer : Normalizer, optional
        Intensity mapping; fitted once on the whole image when omitted.
    rgb : bool
        The last axis of ``image`` holds RGB(A) channels.
    labels : str, path or LabelsStore, optional
        Where committed objects are written; created (or reopened) with the image's shape.
    cache : str, path or EmbeddingCache, optional
        An on-disk embedding cache (:class:`~napari_segany.storage.EmbeddingCache`): plane
        embeddings are computed once and reused by interactive prompting, propagation and
        later sessions. A cache made for other data, model or normalisation is refused
        before the labels store is opened or created.
    max_cached_embeddings : int
        Plane embeddings kept in memory (least recently used are dropped).
    history : int, optional
        Operations whose undo history the labels store keeps (default: the store's, 200).

    Every write to the labels store is one operation of the store's history (a commit, a
    propagation, segment everything, boxes to masks): :meth:`undo` reverts the last one
    pixel-wise, :meth:`redo` re-applies it, also after the store was closed and reopened.
    """

    def __init__(
        self,
        image: Any,
        backend: Backend,
        *,
        normalizer: Normalizer | None = None,
        rgb: bool = False,
        labels: str | os.PathLike | LabelsStore | None = None,
        cache: str | os.PathLike | EmbeddingCache | None = None,
        max_cached_embeddings: int = 8,
        history: int | None = None,
    ) -> None:
        if not (hasattr(image, "shape") and hasattr(image, "__getitem__")):
            raise TypeError(
                f"image must be an array (numpy, zarr, dask, ...), got {type(image).__name__}; "
                "to open a file use napari_segany.Segmenter(path) or napari_segany.io.read_image"
            )
        check_known_shape(image)
        self.image = image
        self.rgb = bool(rgb)
        shape = tuple(image.shape[:-1] if rgb else image.shape)
        if len(shape) < 2 or min(shape) == 0:
            raise ValueError(
                f"need an image with 2 or more non-empty axes, got shape {image.shape}")
        self.shape = shape
        check_plane_pixels(shape, f"the image (shape {tuple(image.shape)})",
                           itemsize=np.dtype(getattr(image, "dtype", np.uint8)).itemsize)
        if history is not None and (isinstance(history, bool) or not isinstance(history, int)
                                    or history < 1):
            raise ValueError(f"history must be a number of operations >= 1, got {history!r}")
        self._history = history
        self.backend = backend
        self.normalizer = normalizer or Normalizer.fit(image, rgb=rgb)
        self.cache: EmbeddingCache | None = None
        new_cache = None
        if isinstance(cache, EmbeddingCache):
            self.cache = cache
        elif cache is not None:  # first: a refused cache must leave the labels store untouched
            if not Path(cache).exists():
                new_cache = Path(cache)
            self.cache = EmbeddingCache(cache, backend=backend, normalizer=self.normalizer,
                                        data=image, rgb=rgb)
        self.planes = PlaneEmbeddings(image, backend, self.normalizer, rgb=self.rgb,
                                      cache=self.cache, max_in_memory=max_cached_embeddings)
        self.labels: LabelsStore | None = None
        try:
            self._open_labels(labels, backend)
        except BaseException:
            if new_cache is not None:  # a refused store leaves no cache made for it behind
                shutil.rmtree(new_cache, ignore_errors=True)
            raise

    def _open_labels(self, labels: Any, backend: Backend) -> None:
        if labels is None:
            return
        store = (labels if isinstance(labels, LabelsStore)
                 else LabelsStore.open_or_create(labels, self.shape))
        if store.shape != self.shape:
            raise ValueError(
                f"labels of shape {store.shape} do not fit the image shape {self.shape}")
        self.labels = store
        if self._history is not None:
            store.history_ops = self._history
        fingerprint = (self.cache.signature["fingerprint"] if self.cache is not None
                       else data_fingerprint(self.image, rgb=self.rgb))
        earlier = [r["image"] for r in store.provenance.get("runs", []) if r.get("image")]
        if earlier and earlier[-1] != fingerprint:
            warnings.warn(f"the labels store {store.path} was written for another image of the "
                          f"same shape {self.shape} (its pixels differ); the new image is "
                          "recorded in the store's provenance", stacklevel=3)
        store.update_provenance(model=backend.signature(),
                                normalization=self.normalizer.to_dict(), image=fingerprint)

    def close(self) -> None:
        """Stop writing the labels store (its history stays for the next session)."""
        if self.labels is not None:
            self.labels.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- planes ---------------------------------------------------------------------------------
    @property
    def plane_keys_shape(self) -> tuple[int, ...]:
        """Shape of the leading (plane-indexing) axes; ``()`` for a 2D image."""
        return self.shape[:-2]

    @property
    def embeddings_computed(self) -> int:
        """Plane embeddings the backend computed for this session (not read from disk)."""
        return self.planes.lru.stats["computed"]

    def check_plane(self, plane: tuple[int, ...] | int | None) -> PlaneKey:
        """The key of an existing plane (``()`` for a 2D image); ValueError otherwise."""
        return check_plane(plane, self.plane_keys_shape)

    def plane_rgb(self, plane: tuple[int, ...] | int | None = None) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 plane the model sees."""
        return self.planes.plane_rgb(plane)

    def has_embedding(self, plane: tuple[int, ...] | int | None = None) -> bool:
        """True when the plane's embedding is ready without running the image encoder.

        That is, it is held in memory or stored in the on-disk cache: :meth:`embedding`
        (and so :meth:`segment`) then returns at once, e.g. on the GUI thread.
        """
        return self.planes.has_embedding(plane)

    def embedding(self, plane: tuple[int, ...] | int | None = None) -> Embedding:
        """The plane's embedding, computed once and kept (LRU) in memory."""
        return self.planes.embedding(plane)

    def precompute(
        self,
        planes: Any = None,
        *,
        batch_size: int = 1,
        progress: Progress = None,
        cancel: Cancel = None,
    ) -> int:
        """Embed every plane (or ``planes``) into the on-disk cache; returns how many now.

        Resumes where an earlier, interrupted precompute stopped.
        """
        if self.cache is None:
            raise ValueError(
                "precompute needs an embedding cache: create the session with cache=PATH")
        return self.cache.precompute(planes, batch_size=batch_size, progress=progress,
                                     cancel=cancel)

    # -- segmentation -----------------------------------------------------------------------------
    def segment(
        self,
        prompts: PromptSet | dict[int, ObjectPrompt] | ObjectPrompt,
        plane: tuple[int, ...] | int | None = None,
        *,
        multimask: bool = True,
    ) -> dict[int, Segmentation]:
        """Segment every object prompted on one plane (one batched decoder call).

        Returns
        -------
        dict
            object id -> :class:`Segmentation` with the highest-scoring mask.
        """
        key = self.check_plane(plane)
        if isinstance(prompts, PromptSet):
            objects = prompts.for_plane(key)
        elif isinstance(prompts, ObjectPrompt):
            objects = {1: prompts}
        else:
            objects = dict(prompts)
        if not objects:
            raise ValueError(f"no prompts for plane {key}")
        ids = sorted(objects)
        pred = self.backend.predict(self.embedding(key), [objects[i] for i in ids],
                                    multimask=multimask)
        masks, scores, logits = pred.best()
        return {
            i: Segmentation(key, i, masks[n], float(scores[n]), logits[n])
            for n, i in enumerate(ids)
        }

    # -- committing -------------------------------------------------------------------------------
    def _require_labels(self) -> LabelsStore:
        if self.labels is None:
            raise ValueError("this session has no labels store; create it with labels=PATH")
        return self.labels

    def commit(
        self,
        seg: Segmentation,
        *,
        obj_id: int | None = None,
        class_name: str | None = None,
        overlap: str = "keep",
    ) -> int:
        """Write a segmentation into the labels store as object ``obj_id``; returns the id.

        One operation of the store's history (undone by :meth:`undo`).
        """
        if not isinstance(seg, Segmentation):
            raise TypeError(f"commit takes a Segmentation (from Session.segment), got "
                            f"{type(seg).__name__}")
        store = self._require_labels()
        oid = check_object_id(obj_id if obj_id is not None else seg.obj_id)
        where = seg.plane or "(2D)"
        with store.operation("commit", f"commit of object {oid} on plane {where}"):
            store.paint(seg.plane, seg.mask, oid, overlap=overlap)
            store.set_object(oid, **({"class_name": class_name} if class_name else {}))
        return oid

    def undo(self) -> UndoResult | None:
        """Undo the last operation on the labels store (a commit, a propagation, segment
        everything, boxes, a napari edit, ...), pixel-wise.

        Only pixels that still hold what the operation wrote go back; pixels changed since
        stay, and the result says how many. Returns an
        :class:`~napari_segany.storage.UndoResult` (its ``message`` says what was undone),
        or None when there is nothing to undo (or no labels store).
        """
        return None if self.labels is None else self.labels.undo()

    def redo(self) -> UndoResult | None:
        """Re-apply exactly what the last :meth:`undo` reverted (None: nothing to redo)."""
        return None if self.labels is None else self.labels.redo()

    # -- propagation ------------------------------------------------------------------------------
    def propagate(
        self,
        prompts: PromptSet,
        *,
        method: str = "slice",
        axis: int = 0,
        planes: tuple[int, int] | None = None,
        direction: str = "both",
        settings: Any = None,
        cancel: Cancel = None,
        progress: Progress = None,
    ) -> dict[int, list[tuple[int, ...]]]:
        """Propagate prompted objects through the stack and write them plane by plane.

        Parameters
        ----------
        prompts : PromptSet
            Prompts on one or more planes for one or more objects.
        method : {"slice", "sam2"}
            ``"slice"``: slice-wise prediction with any backend, each plane prompted by the
            previous plane's mask (see :mod:`napari_segany.propagate.slicewise`). ``"sam2"``: SAM2
            memory tracking (SAM2 models only, see :mod:`napari_segany.propagate.sam2`).
        axis : int
            Leading axis to propagate along (e.g. 0 for z in (z, y, x), or for t in (t, z,
            y, x); 1 for z there).
        planes : (start, stop), optional
            Limit to planes ``start <= i < stop`` along ``axis``.
        direction : {"both", "forward", "backward"}
        settings : SliceSettings, optional
            Stopping rules and prompt style of slice-wise propagation.
        cancel : callable, optional
            Checked between planes; when it returns True, propagation stops. Every plane is
            then either fully written or untouched.
        progress : callable, optional
            ``progress(planes_done, planes_total)``.

        Returns
        -------
        dict
            object id -> planes written for it, in order.

        Notes
        -----
        Overlap policy: results are painted with ``overlap="keep"``: pixels that already
        belong to another object stay with it. An object's own earlier pixels on a plane
        are replaced, so re-propagating after a correction replaces what was wrong.
        """
        store = self._require_labels()
        lead = self.plane_keys_shape
        if not lead:
            raise ValueError("propagation needs a volume or stack; this image is 2D")
        self._check_prompts(prompts)
        if method == "slice":
            settings = settings or SliceSettings()
            results = propagate_slicewise(
                self.embedding, self.backend, prompts, lead_shape=lead, axis=axis,
                planes=planes, direction=direction, settings=settings,
                cancel=cancel,
            )
        elif method == "sam2":
            results = propagate_sam2(
                self.embedding, self.backend, prompts, lead_shape=lead,
                plane_shape=self.shape[-2:], axis=axis, planes=planes, direction=direction,
                cancel=cancel,
            )
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

    def _check_prompts(self, prompts: Any) -> None:
        """Refuse prompts on missing planes or off the image before anything is written."""
        if not isinstance(prompts, PromptSet):
            return  # the propagators raise their own TypeError
        for key, objects in prompts.items():
            try:
                self.check_plane(key)
            except ValueError as exc:
                raise ValueError(f"prompts of objects {sorted(objects)}: {exc}") from None
            for oid, p in objects.items():
                check_in_plane(p, self.shape[-2:], f"object {oid} on plane {key}")

    def new_object_id(self) -> int:
        """A fresh object id (one above every id committed so far)."""
        return self._require_labels().next_object_id()

    # -- automatic segmentation -------------------------------------------------------------------
    def auto_plane(
        self,
        plane: tuple[int, ...] | int | None = None,
        *,
        settings: AutoSettings | None = None,
        tiled: TiledEmbeddings | None = None,
        progress: Progress = None,
        cancel: Cancel = None,
    ) -> np.ndarray:
        """Instance labels of everything on one plane (nothing is written; for previews)."""
        return auto_plane(self, plane, settings=settings, tiled=tiled, progress=progress,
                          cancel=cancel)

    def auto_segment(
        self,
        *,
        planes: tuple[int, int] | None = None,
        plane: tuple[int, ...] | int | None = None,
        axis: int = 0,
        settings: AutoSettings | None = None,
        link: bool = True,
        link_iou: float = 0.3,
        tiled: TiledEmbeddings | None = None,
        progress: Progress = None,
        cancel: Cancel = None,
    ) -> AutoResult:
        """Segment everything on every plane (or some) and write the labels store.

        Parameters
        ----------
        planes : (start, stop), optional
            Only planes ``start <= i < stop`` along ``axis``.
        plane : plane key, optional
            Only this one plane (instead of ``planes``).
        axis : int
            Leading axis along which objects are linked (z of (z, y, x), t of (t, y, x)).
        settings : AutoSettings
        link : bool
            Link objects across consecutive planes (else every plane's objects get new ids).
        link_iou : float
            Minimum IoU for two objects on consecutive planes to be one object.
        tiled : TiledEmbeddings, optional
            Segment tile by tile (large planes).
        progress : callable, optional
            ``progress(done, total)`` in batches of point prompts over all planes.
        cancel : threading.Event or callable, optional
            Checked before each batch; the plane in progress is then not written.

        Returns
        -------
        AutoResult
            Planes written (in order), ids of the new objects, whether it was cancelled.

        Notes
        -----
        Pixels already labelled in the store keep their object; new objects get ids above
        every id in use (see :mod:`napari_segany.auto` for the overlap and linking rules).
        """
        store = self._require_labels()
        s = settings or AutoSettings()
        if plane is not None:
            if planes is not None:
                raise ValueError("give plane= or planes=, not both")
            keys = [self.check_plane(plane)]
        else:
            keys = plane_order(self.plane_keys_shape, planes, axis)
        batches_per_plane(self.backend, s, tiled)  # refuses bad settings before any write
        store.update_provenance(auto={"settings": s.to_dict(), "axis": axis, "planes": planes,
                                      "link": bool(link), "link_iou": float(link_iou),
                                      "tiling": tiled.tiling if tiled is not None else None})
        what = "segment everything" + (f" on plane {keys[0] or '(2D)'}" if len(keys) == 1 else
                                       f" on {len(keys)} planes")
        linker = PlaneLinker(min_iou=float(link_iou), next_id=store.next_object_id())
        ax = axis % len(keys[0]) if keys and keys[0] else 0
        written: list[tuple[int, ...]] = []
        new_ids: list[int] = []
        seen: set[int] = set()
        results = auto_planes(self, keys, settings=s, tiled=tiled, progress=progress,
                              cancel=cancel)
        try:
            with store.operation("auto", what):
                for n, (key, labels) in enumerate(results):
                    existing = store.read_plane(key)
                    linker.next_id = max(linker.next_id, int(existing.max()) + 1,
                                         store.next_object_id())
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

    # -- boxes ------------------------------------------------------------------------------------
    def segment_boxes(
        self,
        boxes: BoxTable | Any,
        *,
        plane: Any = None,
        classes: Any = None,
        ids: Any = None,
        tiled: TiledEmbeddings | None = None,
        chunk_size: int = 64,
        overlap: str = "score",
        multimask: bool = False,
        progress: Progress = None,
        cancel: Cancel = None,
    ) -> BoxesResult:
        """Segment boxes on one or many planes and write them into the labels store.

        Parameters
        ----------
        boxes : BoxTable or array-like
            A table (:func:`~napari_segany.boxes.read_boxes`,
            :func:`~napari_segany.boxes.boxes_from_shapes`, :meth:`BoxTable.from_array`)
            or an ``(N, 4)`` XYXY array, with ``plane``/``classes``/``ids`` then applying to it.
        tiled : TiledEmbeddings, optional
            Route boxes to the tiles of large planes.
        chunk_size : int
            Boxes (or box pieces) per decoder call.
        overlap : {"score", "order"}
            Who gets a pixel claimed by several boxes (see :mod:`napari_segany.boxes`).
        multimask : bool
        progress : callable, optional
            ``progress(done, total)`` in boxes (pieces of boxes split over tiles count apart).
        cancel : threading.Event or callable, optional
            Checked before each decoder call; the plane in progress is then not written.

        Returns
        -------
        BoxesResult
        """
        store = self._require_labels()
        if overlap not in OVERLAP_POLICIES:
            raise BoxError(f"overlap must be one of {OVERLAP_POLICIES}, not {overlap!r}")
        if not isinstance(boxes, BoxTable):
            boxes = BoxTable.from_array(boxes, planes=plane, classes=classes, ids=ids)
        elif plane is not None or classes is not None or ids is not None:
            raise BoxError("plane=, classes= and ids= apply to an array of boxes; a BoxTable "
                           "carries its own")
        table = boxes.validated(self.shape)
        n = len(table)
        if tiled is not None and tuple(tiled.plane_shape) != tuple(self.shape[-2:]):
            raise ValueError("the tiled embeddings belong to an image of another shape")
        explicit = table.ids[table.ids > 0]
        id_arr = table.ids.copy()
        need = int((id_arr == 0).sum())
        if need:  # new ids, allocated under the store's lock (safe with other writers)
            id_arr[id_arr == 0] = store.reserve_object_ids(
                need, above=int(explicit.max()) if explicit.size else 0)
        results = box_planes(self, table, id_arr, tiled=tiled, chunk_size=chunk_size,
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
