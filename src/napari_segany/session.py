"""A segmentation session: one image, one model, its embeddings, one labels store, undo.

The napari widget, the notebook API and the command line all drive this object; it never
imports napari or Qt.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .intensity import Normalizer
from .labels import LabelsStore
from .prompts import ObjectPrompt, PromptSet

__all__ = ["Session", "Segmentation"]


def _settings_json(settings: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if settings is None:
        return None
    if is_dataclass(settings):
        return {k: (v if v == v and abs(v) != float("inf") else str(v))
                if isinstance(v, float) else v for k, v in asdict(settings).items()}
    return str(settings)


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
    cache : str or path, optional
        An on-disk embedding cache (:class:`~napari_segany.cache.EmbeddingCache`): plane
        embeddings are computed once and reused by interactive prompting, propagation and
        later sessions. A cache made for other data, model or normalisation is refused.
    max_cached_embeddings : int
        Plane embeddings kept in memory (least recently used are dropped).
    history : int
        Number of commits that can be undone.
    """

    def __init__(
        self,
        image: Any,
        backend: Any,
        *,
        normalizer: Normalizer | None = None,
        rgb: bool = False,
        labels: str | os.PathLike | LabelsStore | None = None,
        cache: str | os.PathLike | None = None,
        max_cached_embeddings: int = 8,
        history: int = 50,
    ) -> None:
        if not (hasattr(image, "shape") and hasattr(image, "__getitem__")):
            raise TypeError(
                f"image must be an array (numpy, zarr, dask, ...), got {type(image).__name__}; "
                "to open a file use napari_segany.Segmenter(path) or napari_segany.io.read_image"
            )
        self.image = image
        self.rgb = bool(rgb)
        shape = tuple(image.shape[:-1] if rgb else image.shape)
        if len(shape) < 2 or min(shape) == 0:
            raise ValueError(
                f"need an image with 2 or more non-empty axes, got shape {image.shape}")
        self.shape = shape
        self.backend = backend
        self.normalizer = normalizer or Normalizer.fit(image, rgb=rgb)
        self._embeddings: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._max_cached = max(1, int(max_cached_embeddings))
        self._undo: list[tuple[tuple[int, ...], np.ndarray, np.ndarray]] = []
        self._redo: list[tuple[tuple[int, ...], np.ndarray, np.ndarray]] = []
        self._history = int(history)
        self.embeddings_computed = 0
        self.cache = None
        new_cache = None
        if cache is not None:  # first: a refused cache must leave the labels store untouched
            from .cache import EmbeddingCache

            if not Path(cache).exists():
                new_cache = Path(cache)
            self.cache = EmbeddingCache(cache, backend=backend, normalizer=self.normalizer,
                                        data=image, rgb=rgb)
        self.labels: LabelsStore | None = None
        try:
            self._open_labels(labels, backend)
        except BaseException:
            if new_cache is not None:  # a refused store leaves no cache made for it behind
                shutil.rmtree(new_cache, ignore_errors=True)
            raise

    def _open_labels(self, labels: Any, backend: Any) -> None:
        if labels is not None:
            self.labels = (
                labels if isinstance(labels, LabelsStore)
                else LabelsStore.open_or_create(labels, self.shape)
            )
            if self.labels.shape != self.shape:
                raise ValueError(
                    f"labels of shape {self.labels.shape} do not fit the image shape {self.shape}"
                )
            self.labels.update_provenance(model=backend.signature(),
                                          normalization=self.normalizer.to_dict())

    # -- planes ---------------------------------------------------------------------------------
    @property
    def plane_keys_shape(self) -> tuple[int, ...]:
        """Shape of the leading (plane-indexing) axes; ``()`` for a 2D image."""
        return self.shape[:-2]

    def check_plane(self, plane: tuple[int, ...] | int | None) -> tuple[int, ...]:
        key = () if plane is None else ((plane,) if np.isscalar(plane) else tuple(plane))
        lead = self.plane_keys_shape
        if len(key) != len(lead) or any(
                not 0 <= int(k) < n for k, n in zip(key, lead, strict=True)):
            raise ValueError(
                f"plane {key} does not exist: the image has {len(lead)} leading axes of sizes "
                f"{lead} (plane index {'() for a 2D image' if not lead else 'out of range'})"
            )
        return tuple(int(k) for k in key)

    def plane_rgb(self, plane: tuple[int, ...] | int | None = None) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 plane the model sees."""
        key = self.check_plane(plane)
        return self.normalizer(np.asarray(self.image[key]))

    def has_embedding(self, plane: tuple[int, ...] | int | None = None) -> bool:
        """True when the plane's embedding is ready without running the image encoder.

        That is, it is held in memory or stored in the on-disk cache: :meth:`embedding`
        (and so :meth:`segment`) then returns at once, e.g. on the GUI thread.
        """
        key = self.check_plane(plane)
        return key in self._embeddings or (self.cache is not None and self.cache.has(key))

    def embedding(self, plane: tuple[int, ...] | int | None = None) -> Any:
        """The plane's embedding, computed once and kept (LRU) in memory."""
        key = self.check_plane(plane)
        if key in self._embeddings:
            self._embeddings.move_to_end(key)
            return self._embeddings[key]
        if self.cache is not None:
            before = self.cache.stats["computed"]
            emb = self.cache.get(key)
            self.embeddings_computed += self.cache.stats["computed"] - before
        else:
            emb = self.backend.embed(self.plane_rgb(key))
            self.embeddings_computed += 1
        self._embeddings[key] = emb
        while len(self._embeddings) > self._max_cached:
            self._embeddings.popitem(last=False)
        return emb

    def precompute(
        self,
        planes: Any = None,
        *,
        batch_size: int = 1,
        progress: Callable[[int, int], None] | None = None,
        cancel: Any = None,
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
        """Write a segmentation into the labels store as object ``obj_id``; returns the id."""
        store = self._require_labels()
        oid = int(obj_id if obj_id is not None else seg.obj_id)
        before = store.read_plane(seg.plane)
        after = store.paint(seg.plane, seg.mask, oid, overlap=overlap)
        info = {"class_name": class_name} if class_name else {}
        store.set_object(oid, **info)
        self._undo.append((seg.plane, before, after))
        del self._undo[: -self._history]
        self._redo.clear()
        return oid

    def undo(self) -> bool:
        """Restore the plane changed by the last commit; False when there is nothing to undo."""
        if not self._undo:
            return False
        plane, before, after = self._undo.pop()
        self._require_labels().write_plane(plane, before)
        self._redo.append((plane, before, after))
        return True

    def redo(self) -> bool:
        """Re-apply the last undone commit; False when there is nothing to redo."""
        if not self._redo:
            return False
        plane, before, after = self._redo.pop()
        self._require_labels().write_plane(plane, after)
        self._undo.append((plane, before, after))
        return True

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
        cancel: Callable[[], bool] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[int, list[tuple[int, ...]]]:
        """Propagate prompted objects through the stack and write them plane by plane.

        Parameters
        ----------
        prompts : PromptSet
            Prompts on one or more planes for one or more objects.
        method : {"slice", "sam2"}
            ``"slice"``: slice-wise prediction with any backend, each plane prompted by the
            previous plane's mask (see :mod:`napari_segany.propagate`). ``"sam2"``: SAM2
            memory tracking (SAM2 models only, see :mod:`napari_segany.propagate_sam2`).
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
            from .propagate import SliceSettings, propagate_slicewise

            settings = settings or SliceSettings()
            results = propagate_slicewise(
                self.embedding, self.backend, prompts, lead_shape=lead, axis=axis,
                planes=planes, direction=direction, settings=settings,
                cancel=cancel,
            )
        elif method == "sam2":
            from .propagate_sam2 import propagate_sam2

            results = propagate_sam2(
                self.embedding, self.backend, prompts, lead_shape=lead,
                plane_shape=self.shape[-2:], axis=axis, planes=planes, direction=direction,
                cancel=cancel,
            )
        else:
            raise ValueError(f"method must be 'slice' or 'sam2', not {method!r}")
        axis_n = lead[axis % len(lead)]
        span = (planes[1] - planes[0]) if planes else axis_n
        n_groups = len({k[:axis % len(lead)] + k[axis % len(lead) + 1:] for k in prompts.planes()})
        total = max(1, span * n_groups)
        provenance = {
            "prompts": prompts.to_dict(include_masks=False),
            "propagation": {"method": method, "axis": axis, "planes": planes,
                            "direction": direction, "settings": _settings_json(settings)},
        }
        written: dict[int, list[tuple[int, ...]]] = {}
        done_planes: set[tuple[int, ...]] = set()
        for res in results:
            if provenance:  # only once the prompts proved valid: bad input changes nothing
                store.update_provenance(**provenance)
                provenance = {}
            store.paint(res.plane, res.mask, res.obj_id, overlap="keep")
            store.set_object(res.obj_id)
            written.setdefault(res.obj_id, []).append(res.plane)
            if res.plane not in done_planes:
                done_planes.add(res.plane)
                if progress is not None:
                    progress(min(len(done_planes), total), total)
        return written

    def _check_prompts(self, prompts: Any) -> None:
        """Refuse prompts on missing planes or off the image before anything is written."""
        if not isinstance(prompts, PromptSet):
            return  # the propagators raise their own TypeError
        h, w = self.shape[-2:]
        for key, objects in prompts.items():
            try:
                self.check_plane(key)
            except ValueError as exc:
                raise ValueError(f"prompts of objects {sorted(objects)}: {exc}") from None
            for oid, p in objects.items():
                pts = np.asarray(p.points, dtype=np.float64).reshape(-1, 2)
                bad = (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (
                    pts[:, 1] > h - 0.5)
                if bad.any():
                    x, y = pts[np.argmax(bad)]
                    raise ValueError(f"object {oid} on plane {key}: point (x={x:g}, y={y:g}) "
                                     f"lies outside the {w}x{h} (WxH) plane")
                if p.box is not None:
                    x0, y0, x1, y1 = np.asarray(p.box, dtype=np.float64).reshape(4)
                    if x1 <= x0 or y1 <= y0:
                        raise ValueError(f"object {oid} on plane {key}: box "
                                         f"{[x0, y0, x1, y1]} is empty (need x1 > x0, y1 > y0)")
                    if x0 > w - 0.5 or y0 > h - 0.5 or x1 < -0.5 or y1 < -0.5:
                        raise ValueError(f"object {oid} on plane {key}: box "
                                         f"{[x0, y0, x1, y1]} lies outside the {w}x{h} (WxH) "
                                         "plane")

    def new_object_id(self) -> int:
        """A fresh object id (one above every id committed so far)."""
        return self._require_labels().next_object_id()
