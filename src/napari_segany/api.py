"""The notebook / Python API: one :class:`Segmenter` per image or volume.

A :class:`Segmenter` is a :class:`~napari_segany.session.Session` that also loads the image
and the model for you, takes prompts as plain arrays, shows results inline in Jupyter,
pushes them into a napari viewer and exports them.

Examples
--------
>>> seg = Segmenter("cells.tif", model="sam2.1_hiera_tiny", labels="cells.zarr")  # doctest: +SKIP
>>> mask = seg.segment(points=[[120, 80]])            # one object, best mask   # doctest: +SKIP
>>> seg.commit()                                        # into the labels store  # doctest: +SKIP
>>> seg.show()                                          # inline overlay         # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ._planes import check_known_shape, check_plane_pixels
from .auto import AutoResult, AutoSettings
from .boxes import BoxesResult, read_boxes
from .engine.base import Backend
from .engine.registry import load_model
from .evaluation import EvaluationResult, ModelEntry, Sample, evaluate, read_labels
from .exports import export_labels, resolve_format
from .intensity import normalizer_from_options
from .io import channels_last, read_image
from .overlay import render_overlay
from .prompts import ObjectPrompt, PromptSet
from .session import Segmentation, Session
from .tiling import TiledEmbeddings

__all__ = ["Segmenter"]


class Segmenter(Session):
    """Segment one image, volume or time stack from a notebook or script.

    Parameters
    ----------
    image : array-like or path
        numpy, zarr or dask array (``(..., H, W)``, or ``(..., H, W, C)`` with ``rgb=True``),
        or a file/folder :func:`napari_segany.io.read_image` opens (TIFF, PNG/JPEG, zarr,
        NIfTI, a folder of frames).
    model : str, path or Backend, optional
        Registry name, checkpoint path, or an already loaded backend (default: the
        default model, or with ``checkpoint`` the architecture of that file).
    labels : path, optional
        Labels store to write; default: a new store in a temporary folder.
    cache : path, optional
        On-disk embedding cache (reused across runs).
    rgb : bool, optional
        Last axis is colour; guessed for files.
    window, percentiles, channels :
        Intensity options (:func:`~napari_segany.intensity.normalizer_from_options`), e.g.
        ``window="ct_soft_tissue"``.
    channel_axis : int, optional
        Axis of ``image`` holding channels, e.g. 0 for ``(C, Z, Y, X)``; it is moved last
        (a lazy view) and up to three channels (``channels``) become R, G, B.
    device, precision, checkpoint, random_weights :
        Passed to :func:`napari_segany.load_model` (``precision="fp32"`` forces float32;
        the default picks bf16 on GPUs and on CPUs with native bf16).
    """

    def __init__(
        self,
        image: Any,
        *,
        model: str | os.PathLike | Backend | None = None,
        labels: str | os.PathLike | None = None,
        cache: str | os.PathLike | None = None,
        rgb: bool | None = None,
        window: Any = None,
        percentiles: tuple[float, float] | None = None,
        channel_axis: int | None = None,
        channels: tuple[int, ...] | None = None,
        device: Any = None,
        precision: str | None = None,
        checkpoint: str | os.PathLike | None = None,
        random_weights: bool = False,
    ) -> None:
        self.source = None
        if isinstance(image, (str, os.PathLike)):
            self.source = read_image(image)
            image, rgb = self.source.data, self.source.rgb if rgb is None else rgb
        if not (hasattr(image, "shape") and hasattr(image, "__getitem__")):
            raise TypeError(f"image must be an array (numpy, zarr, dask, ...) or a file path, "
                            f"got {type(image).__name__}")
        check_known_shape(image)
        rgb = bool(rgb)
        check_plane_pixels(image.shape[:-1] if rgb else image.shape, "the image",
                           itemsize=np.dtype(image.dtype).itemsize)
        if channel_axis is not None:  # channels last, read lazily: the session sees RGB planes
            if rgb:
                raise ValueError("give rgb=True (channels last) or channel_axis=, not both")
            image, rgb = channels_last(image, channel_axis), True
        if model is None or isinstance(model, (str, os.PathLike)):
            backend = load_model(model, checkpoint=checkpoint, device=device,
                                 precision=precision, random_weights=random_weights)
        elif precision is not None:
            raise ValueError("precision= applies to a model loaded by name or file; this "
                             "backend is already built: pass precision= to load_model")
        else:
            backend = model
        normalizer = normalizer_from_options(
            image, rgb=rgb, channels_moved=channel_axis is not None, window=window,
            percentiles=percentiles, channels=channels)
        if labels is None:
            labels = Path(tempfile.mkdtemp(prefix="segany-")) / "labels.zarr"
        super().__init__(image, backend, normalizer=normalizer, rgb=rgb, labels=labels,
                         cache=cache)
        self.last: dict[int, Segmentation] = {}

    # -- prompting ------------------------------------------------------------------------------
    def segment(  # type: ignore[override]
        self,
        prompts: PromptSet | dict[int, ObjectPrompt] | ObjectPrompt | None = None,
        plane: tuple[int, ...] | int | None = None,
        *,
        points: Any = None,
        point_labels: Any = None,
        box: Any = None,
        boxes: Any = None,
        mask: Any = None,
        obj_id: int | None = None,
        multimask: bool = True,
    ) -> np.ndarray:
        """Segment on one plane; returns the best mask(s).

        Give either ``prompts`` (as :meth:`Session.segment`) or plain arrays: ``points``
        ``(N, 2)`` as ``(x, y)`` with ``point_labels`` (1 positive, 0 negative; default all
        positive), one ``box`` ``(x0, y0, x1, y1)`` and/or a ``mask`` for one object, or
        ``boxes`` ``(B, 4)`` for B objects decoded in one batch.

        Returns
        -------
        np.ndarray
            ``(H, W)`` bool for one object, ``(B, H, W)`` for ``boxes``. The results are
            kept in :attr:`last` for :meth:`commit`.
        """
        if prompts is None:
            if boxes is not None:
                b = np.asarray(boxes, dtype=float).reshape(-1, 4)
                first = obj_id or self.new_object_id()
                prompts = {first + i: ObjectPrompt(box=bx) for i, bx in enumerate(b)}
            else:
                oid = obj_id or self.new_object_id()
                prompts = {oid: ObjectPrompt(points=points, labels=point_labels, box=box,
                                             mask=mask)}
        self.last = super().segment(prompts, plane, multimask=multimask)
        masks = [s.mask for s in self.last.values()]
        return masks[0] if len(masks) == 1 and boxes is None else np.stack(masks)

    def commit(self, seg: Segmentation | None = None, **kw: Any) -> int | list[int]:  # type: ignore[override]
        """Commit ``seg``, or every result of the last :meth:`segment` call."""
        if seg is not None:
            return super().commit(seg, **kw)
        if not self.last:
            raise ValueError("nothing to commit: call segment() first")
        ids = [super(Segmenter, self).commit(s, **kw) for s in self.last.values()]
        self.last = {}
        return ids[0] if len(ids) == 1 else ids

    # -- automatic segmentation -------------------------------------------------------------------
    def _tiled(self, tile: int | None, halo: int | None) -> TiledEmbeddings | None:
        if tile is None:
            return None
        return TiledEmbeddings.from_session(self, tile=tile, halo=halo)

    def segment_everything(
        self,
        *,
        planes: tuple[int, int] | None = None,
        axis: int = 0,
        settings: AutoSettings | None = None,
        link: bool = True,
        link_iou: float = 0.3,
        tile: int | None = None,
        halo: int | None = None,
        progress: Any = None,
        cancel: Any = None,
    ) -> AutoResult:
        """SAM/SAM2 automatic segmentation of every plane into the labels store.

        Objects are linked across planes by overlap (``link``); ``tile`` splits large planes
        into tiles of that size with a ``halo``. See :meth:`Session.auto_segment`.
        """
        return self.auto_segment(planes=planes, axis=axis, settings=settings, link=link,
                            link_iou=link_iou, tiled=self._tiled(tile, halo),
                            progress=progress, cancel=cancel)

    def segment_boxes(  # type: ignore[override]
        self,
        boxes: Any,
        *,
        tile: int | None = None,
        halo: int | None = None,
        **options: Any,
    ) -> BoxesResult:
        """Boxes (an ``(N, 4)`` array, a CSV/JSON path or a BoxTable) to one object each.

        ``tile`` splits large planes into tiles of that size with a ``halo``; the other
        options are those of :meth:`Session.segment_boxes` (``plane``, ``classes``, ``ids``,
        ``chunk_size``, ``overlap``, ``multimask``, ``progress``, ``cancel``, ``tiled``).
        """
        if isinstance(boxes, (str, os.PathLike)):
            boxes = read_boxes(boxes)
        if tile is not None:
            options["tiled"] = self._tiled(tile, halo)
        return super().segment_boxes(boxes, **options)

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, truth: Any, *, protocol: str = "interactive", name: str = "image",
                 spacing: tuple[float, ...] | None = None, **options: Any) -> EvaluationResult:
        """Score this segmenter's model on its image against ground truth, with simulated prompts.

        ``truth`` is an integer labels array of the image's spatial shape (``(..., H, W)``)
        or a labels file. The planes are embedded through this segmenter (its cache too).
        ``spacing`` defaults to the image file's voxel size. Other options are those of
        :func:`napari_segany.evaluation.evaluate` (``settings``, ``out``, ``progress``,
        ``cancel``, ...).
        """
        if isinstance(truth, (str, os.PathLike)):
            truth = read_labels(truth)
        if spacing is None and self.source is not None:
            spacing = self.source.spacing
        sample = Sample(name, self.image, truth, rgb=self.rgb, spacing=spacing)
        return evaluate(sample, ModelEntry(str(self.backend.name), source=self),
                        protocol=protocol, **options)

    # -- results --------------------------------------------------------------------------------
    @property
    def labels_array(self) -> Any:
        """The labels as a zarr array (lazy; index it for numpy planes)."""
        return self._require_labels().array

    def labels_numpy(self) -> np.ndarray:
        """All labels as one numpy array (loads everything: fine for small data)."""
        return np.asarray(self.labels_array[...])

    def overlay(self, plane: tuple[int, ...] | int | None = None) -> np.ndarray:
        """``(H, W, 3)`` uint8 figure: the plane with its labels and the last masks."""
        key = self.check_plane(plane)
        labels = self._require_labels().read_plane(key).copy()
        top = int(labels.max()) + 1
        for i, s in enumerate(self.last.values()):
            if s.plane == key:
                labels[s.mask & (labels == 0)] = top + i
        return render_overlay(self.plane_rgb(key), labels)

    def show(self, plane: tuple[int, ...] | int | None = None) -> Any:
        """The overlay as a PIL image (Jupyter displays it inline)."""
        from PIL import Image

        return Image.fromarray(self.overlay(plane))

    def to_napari(self, viewer: Any, *, name: str = "segany") -> tuple[Any, Any]:
        """Add the image and the (zarr-backed, lazily read) labels to a napari viewer."""
        kwargs: dict[str, Any] = {}
        if self.source is not None and self.source.spacing is not None:
            kwargs["scale"] = self.source.spacing[-len(self.shape):]
        image_layer = viewer.add_image(self.image, name=name, rgb=self.rgb, **kwargs)
        labels_layer = viewer.add_labels(self.labels_array, name=f"{name} labels", **kwargs)
        return image_layer, labels_layer

    def export(self, path: str | os.PathLike, *, format: str | None = None, **kw: Any) -> Path:
        """Write the labels as TIFF, NIfTI, zarr, RLE text, COCO JSON, ... or an overlay movie
        (``.mp4``: the image with its labels, see :func:`~napari_segany.exports.export_movie`)."""
        if resolve_format(format, path) == "mp4":
            kw.setdefault("image", self.image)
            kw.setdefault("normalizer", self.normalizer)
        elif self.source is not None and self.source.affine is not None:
            kw.setdefault("affine", self.source.affine)
        return export_labels(self._require_labels(), path, format=format, **kw)
