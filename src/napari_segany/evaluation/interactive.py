"""Protocol 1, interactive 2D: a first prompt per object, then iterative corrections.

As micro-sam's ``run_inference_with_iterative_prompting``: each ground-truth object of a
plane starts from one positive point at its most interior pixel (or from its bounding
box); each of ``n_iterations`` corrections then adds one positive point in the
false-negative region and one negative point in the false-positive region of the last
prediction (:mod:`.simulate`), optionally feeding back the last low-resolution logits as a
mask input. The IoU with the object is recorded after every prediction: iteration 0 is
the first prompt, iteration ``k`` has ``k`` pairs of correction points.

The first prediction from a single point asks for three candidates and keeps the one the
model scores best (a point is ambiguous); boxes and later iterations ask for one.
micro-sam's ``n_iterations=8`` counts the first prediction: it equals ``n_iterations=7``
here.

Each plane is embedded once; the objects of a plane are decoded ``batch_size`` at a time
in one ``backend.predict`` call per iteration (all prompts of a batch have the same
structure).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..prompts import ObjectPrompt, PromptSet
from ._common import Steps, check, object_ids, plane_text, planes_with_objects, row
from .simulate import POINT_MODES, correction_points, first_prompt, object_rng

__all__ = ["InteractiveSettings", "interactive_prompts", "run_interactive"]

PROTOCOL = "interactive"


@dataclass(frozen=True)
class InteractiveSettings:
    """Settings of the interactive protocol.

    Attributes
    ----------
    start : {"point", "box"}
        The first prompt of each object.
    n_iterations : int
        Correction rounds after the first prediction (each adds two points).
    point_mode : {"center", "random"}
        Where points go in a region: its most interior pixel, or a random one.
    seed : int
        Seed of the random mode (the same points for every model).
    use_logits : bool
        Feed the last prediction's low-resolution logits back as a mask input.
    multimask : bool, optional
        Three candidates for the first prediction (the best scored is kept); None: for a
        point start only.
    batch_size : int
        Objects decoded in one call.
    min_area : int
        Objects of fewer pixels are not evaluated.
    max_objects : int, optional
        At most this many objects per plane (the lowest ids), for quick runs.
    """

    start: str = "point"
    n_iterations: int = 8
    point_mode: str = "center"
    seed: int = 0
    use_logits: bool = False
    multimask: bool | None = None
    batch_size: int = 32
    min_area: int = 1
    max_objects: int | None = None

    def __post_init__(self) -> None:
        if self.start not in ("point", "box"):
            raise ValueError(f"start must be 'point' or 'box', got {self.start!r}")
        if self.point_mode not in POINT_MODES:
            raise ValueError(f"point_mode must be one of {POINT_MODES}, got {self.point_mode!r}")
        if int(self.n_iterations) < 0 or int(self.batch_size) < 1:
            raise ValueError("n_iterations must be >= 0 and batch_size >= 1, got "
                             f"{self.n_iterations} and {self.batch_size}")
        if self.max_objects is not None and int(self.max_objects) < 1:
            raise ValueError(f"max_objects must be >= 1, got {self.max_objects}")


def _objects(gt: np.ndarray, s: InteractiveSettings) -> list[int]:
    ids = object_ids(gt)
    if s.min_area > 1:
        areas = np.bincount(gt.ravel().astype(np.int64))
        ids = [i for i in ids if areas[i] >= s.min_area]
    return ids[: s.max_objects] if s.max_objects else ids


def interactive_prompts(truth: np.ndarray, settings: InteractiveSettings,
                        dataset: str) -> PromptSet:
    """The first prompt of every evaluated object, by plane (the same for every model)."""
    out = PromptSet()
    for key in planes_with_objects(truth):
        gt = truth[key]
        for oid in _objects(gt, settings):
            rng = object_rng(settings.seed, dataset, key, oid, "start")
            out.add(key, oid, first_prompt(gt == oid, settings.start,
                                           mode=settings.point_mode, rng=rng))
    return out


def run_interactive(
    source: Any,
    truth: np.ndarray,
    prompts: PromptSet,
    *,
    model: str,
    dataset: str,
    settings: InteractiveSettings,
    skip: set[str] = frozenset(),
    steps: Steps | None = None,
    cancel: Any = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Run the protocol on every prompted plane; yields ``(unit, rows)`` per plane.

    Parameters
    ----------
    source : PlaneSource
        The image and the model (a :class:`~napari_segany.storage.PlaneEmbeddings` or a
        Session): ``backend``, ``embedding(plane)``.
    truth : np.ndarray
        Integer labels ``(..., H, W)``.
    prompts : PromptSet
        From :func:`interactive_prompts`.
    skip : set of str
        Units (plane texts) already finished.
    """
    s = settings
    backend = source.backend
    for key in prompts.planes():
        unit = plane_text(key)
        if unit in skip:
            continue
        check(cancel)
        gt = np.asarray(truth[key])
        first = prompts.for_plane(key)
        ids = sorted(first)
        chunks = [ids[i:i + s.batch_size] for i in range(0, len(ids), s.batch_size)]
        if steps is not None:
            steps.add(len(chunks) * (s.n_iterations + 1))
        emb = source.embedding(key)
        rows: list[dict[str, Any]] = []
        for chunk in chunks:
            rows += _run_chunk(backend, emb, gt, key, chunk, first, s, model, dataset, steps,
                               cancel)
        yield unit, rows


def _run_chunk(backend, emb, gt, key, chunk, first, s, model, dataset, steps, cancel):
    truths = [gt == oid for oid in chunk]
    areas = [int(np.count_nonzero(t)) for t in truths]  # > 0: the objects exist
    rngs = [object_rng(s.seed, dataset, key, oid, "corrections") for oid in chunk]
    points = [first[oid].points for oid in chunk]
    labels = [first[oid].labels for oid in chunk]
    boxes = [first[oid].box for oid in chunk]
    logits: list[Any] = [None] * len(chunk)
    multimask = (s.start == "point") if s.multimask is None else bool(s.multimask)
    out = []
    for it in range(s.n_iterations + 1):
        check(cancel)
        batch = [ObjectPrompt(points=points[n], labels=labels[n], box=boxes[n],
                              mask=logits[n] if (s.use_logits and it) else None)
                 for n in range(len(chunk))]
        masks, scores, low = backend.predict(emb, batch, multimask=multimask and it == 0).best()
        masks = np.asarray(masks, dtype=bool)
        for n, oid in enumerate(chunk):
            inter = int(np.count_nonzero(truths[n] & masks[n]))
            a_t, a_p = areas[n], int(np.count_nonzero(masks[n]))
            out.append(row(model, dataset, PROTOCOL, s.start, plane=plane_text(key),
                           object_id=oid, iteration=it, clicks=len(points[n]),
                           iou=inter / (a_t + a_p - inter), dice=2 * inter / (a_t + a_p),
                           score=float(scores[n]), area_true=a_t, area_pred=a_p))
        if it < s.n_iterations:
            for n in range(len(chunk)):
                pts, lab = correction_points(truths[n], masks[n], s.point_mode, rngs[n])
                points[n] = np.concatenate([points[n], pts])
                labels[n] = np.concatenate([labels[n], lab])
                logits[n] = np.asarray(low[n], np.float32)
        if steps is not None:
            steps.tick()
    return out
