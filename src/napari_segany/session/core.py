"""The :class:`Session`: one image, one model, its embeddings, one labels store, and undo.

The writing loops of propagation, segment everything and boxes live in :mod:`.writes`; the
review area (automatic results staged before they are accepted) in :mod:`.review`.
"""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import PlaneKey, check_known_shape, check_plane, check_plane_pixels
from .._progress import Cancel, Progress
from ..auto import AutoResult, AutoSettings, auto_plane
from ..boxes import BoxesResult, BoxTable
from ..engine.base import Backend, Embedding
from ..errors import PromptError
from ..intensity import Normalizer
from ..prompts import ObjectPrompt, PromptSet, check_in_plane
from ..propagate import Stop
from ..storage.cache import EmbeddingCache, data_fingerprint
from ..storage.embeddings import EmbeddingLRU, PlaneEmbeddings
from ..storage.history import UndoResult
from ..storage.labels import LabelsStore, check_object_id
from ..tiling import TiledEmbeddings
from . import regions, writes
from .review import AcceptResult, ReviewArea
from .segmentation import Segmentation

__all__ = ["Session", "Segmentation"]


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
        self._regions = EmbeddingLRU(self._embed_region, max_items=2)
        #: Held around every use of the backend: a click's decoder call never runs at the
        #: same time as a propagation or an automatic run in another thread.
        self.model_lock = threading.RLock()
        #: Where and why objects stopped in the last slice-wise propagation.
        self.last_stops: list[Stop] = []
        self.labels: LabelsStore | None = None
        self.review: ReviewArea | None = None
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
        self.review = ReviewArea(store)

    def close(self) -> None:
        """Stop writing the labels store (its history stays for the next session)."""
        if self.labels is not None:
            self.labels.close()
        if self.review is not None and self.review._store is not None:
            self.review._store.close()

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
        with self.model_lock:
            return self.planes.embedding(plane)

    def _embed_region(self, key: tuple) -> Embedding:
        plane, (y0, y1, x0, x1) = key[0], key[1]
        crop = np.asarray(self.image[plane + (slice(y0, y1), slice(x0, x1))])
        return self.backend.embed(self.normalizer(crop))

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
        with self.model_lock:
            return self.cache.precompute(planes, batch_size=batch_size, progress=progress,
                                         cancel=cancel)

    # -- segmentation -----------------------------------------------------------------------------
    def segment(
        self,
        prompts: PromptSet | dict[int, ObjectPrompt] | ObjectPrompt,
        plane: tuple[int, ...] | int | None = None,
        *,
        multimask: bool = True,
        region: tuple[int, int, int, int] | None = None,
        tiled: TiledEmbeddings | None = None,
    ) -> dict[int, Segmentation]:
        """Segment every object prompted on one plane (one batched decoder call).

        Parameters
        ----------
        region : (y0, y1, x0, x1), optional
            Segment in this part of the plane only, embedded at full resolution (the model
            otherwise sees the whole plane resized to its input size, e.g. 1024 pixels, and
            small objects of a large plane vanish). Prompts stay in plane coordinates and
            must lie inside the region; the masks are whole-plane, zero outside it.
        tiled : TiledEmbeddings, optional
            Segment each object in the tile window that holds its prompt best (farthest
            from the window's edges), from the tiles' cached embeddings: large planes at
            full resolution. Masks are whole-plane, zero outside that window.

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
        if region is not None and tiled is not None:
            raise ValueError("give region= or tiled=, not both")
        if region is not None:
            return regions.segment_region(self, key, objects, ids, region, multimask)
        if tiled is not None:
            return regions.segment_tiled(self, key, objects, ids, tiled, multimask)
        with self.model_lock:
            pred = self.backend.predict(self.embedding(key), [objects[i] for i in ids],
                                        multimask=multimask)
        masks, scores, logits = pred.best()
        return {
            i: Segmentation(key, i, masks[n], float(scores[n]), logits[n], objects[i])
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
            if seg.prompt is not None:
                store.record_prompts({(seg.plane, oid): seg.prompt})
        return oid

    def recorded_prompts(self) -> PromptSet:
        """The prompts recorded in the labels store (commits and propagations of this and
        earlier sessions): what a reopened session shows again."""
        out = PromptSet()
        if self.labels is None:
            return out
        for (plane, oid), rec in sorted(self.labels.recorded_prompts().items()):
            try:
                out.add(plane, oid, ObjectPrompt(rec.get("points"), rec.get("labels"),
                                                 rec.get("box")))
            except PromptError:  # an entry that no longer fits (e.g. a merged box): skip it
                continue
        return out

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
        review: bool = False,
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
        review : bool
            Write into the review area (:attr:`review`) instead of the labels store:
            nothing is annotated until :meth:`accept`.

        Returns
        -------
        dict
            object id -> planes written for it, in order.

        Notes
        -----
        Overlap policy: results are painted with ``overlap="keep"``: pixels that already
        belong to another object stay with it. An object's own earlier pixels on a plane
        are replaced, so re-propagating after a correction replaces what was wrong. The
        whole run is one operation (one undo step). Where a slice-wise walk stopped, and
        why, is in :attr:`last_stops`.
        """
        with self.model_lock:
            return writes.propagate(self, self._target(review), prompts, method=method,
                                    axis=axis, planes=planes, direction=direction,
                                    settings=settings, cancel=cancel, progress=progress)

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
        with self.model_lock:
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
        review: bool = False,
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
        review : bool
            Stage the objects in the review area (:attr:`review`) instead.

        Returns
        -------
        AutoResult
            Planes written (in order), ids of the new objects, whether it was cancelled.

        Notes
        -----
        Pixels already labelled in the store keep their object; new objects get ids above
        every id in use (see :mod:`napari_segany.auto` for the overlap and linking rules).
        """
        with self.model_lock:
            return writes.auto_segment(self, self._target(review), planes=planes, plane=plane,
                                       axis=axis, settings=settings, link=link,
                                       link_iou=link_iou, tiled=tiled, progress=progress,
                                       cancel=cancel)

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
        review: bool = False,
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
        review : bool
            Stage the objects in the review area (:attr:`review`) instead.

        Returns
        -------
        BoxesResult
        """
        with self.model_lock:
            return writes.segment_boxes(self, self._target(review), boxes, plane=plane,
                                        classes=classes, ids=ids, tiled=tiled,
                                        chunk_size=chunk_size, overlap=overlap,
                                        multimask=multimask, progress=progress, cancel=cancel)

    # -- review -----------------------------------------------------------------------------------
    def _target(self, review: bool) -> LabelsStore:
        store = self._require_labels()
        if not review:
            return store
        staged = self.review.store()  # type: ignore[union-attr]
        assert staged is not None
        return staged

    def accept(self, ids: Any = None) -> AcceptResult:
        """Move staged objects (``ids``, default all) from the review area into the labels
        store: one operation, undone by :meth:`undo`."""
        self._require_labels()
        return self.review.accept(ids)  # type: ignore[union-attr]

    def discard(self, ids: Any = None) -> int:
        """Drop staged objects (``ids``, default all) from the review area."""
        self._require_labels()
        return self.review.discard(ids)  # type: ignore[union-attr]

