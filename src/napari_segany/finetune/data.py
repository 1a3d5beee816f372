"""Training data: 2D planes with instance labels, from labels stores, files, folders and arrays.

A :class:`TrainingPlane` is one plane the model sees, ``(H, W, 3)`` uint8 (the intensity
mapping the product uses everywhere, :func:`napari_segany.intensity.normalizer_from_options`,
fitted on the whole image), with its ``(H, W)`` integer instance labels. Planes of volumes
and stacks are taken one by one; only planes holding at least one object are kept.

Sources (:func:`training_planes`)
--------------------------------
* a labels store written by the annotator (a folder ``*.zarr`` with napari-segany
  attributes): its committed objects, on the image named by ``image=`` or, by default, the
  image path the store's provenance records (``source``); the store is opened read-only and
  never written;
* anything the evaluation package reads (:func:`napari_segany.evaluation.as_samples`):
  ``(image, labels)`` arrays, a :class:`~napari_segany.evaluation.Sample`, an image file with
  its labels (TIFF, PNG, NIfTI, zarr, ``.npy``), a folder of images with a folder of labels,
  the Cell Tracking Challenge and DAVIS layouts.

:func:`split_planes` makes the seeded train/validation split, by image (no image is in
both) or by plane.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import iter_keys
from ..evaluation.datasets import Sample, as_samples, check_truth, find_samples
from ..intensity import normalizer_from_options
from ..io import read_image
from ..storage.labels import LabelsStore, is_labels_store

__all__ = ["TrainingPlane", "training_planes", "split_planes", "planes_fingerprint",
           "SPLIT_BY"]

SPLIT_BY = ("image", "plane")


@dataclass(frozen=True)
class TrainingPlane:
    """One plane to train or validate on.

    Attributes
    ----------
    image : str
        Name of the image the plane belongs to (the split by image groups on it).
    plane : tuple of int
        The plane's leading indices in that image (``()`` for a 2D image).
    rgb : np.ndarray
        ``(H, W, 3)`` uint8, what the model embeds.
    labels : np.ndarray
        ``(H, W)`` int64 instance ids, 0 is background.
    """

    image: str
    plane: tuple[int, ...]
    rgb: np.ndarray
    labels: np.ndarray

    @property
    def name(self) -> str:
        return self.image if not self.plane else f"{self.image}[{','.join(map(str, self.plane))}]"

    @property
    def object_ids(self) -> np.ndarray:
        ids = np.unique(self.labels)
        return ids[ids > 0]


def _store_image(store_path: Path, image: Any) -> tuple[Any, bool, str]:
    """The image of a labels store: given, or the path its provenance records."""
    if image is not None:
        if isinstance(image, (str, os.PathLike)):
            img = read_image(image)
            return img.data, img.rgb, Path(image).name
        return image, False, store_path.name
    prov = LabelsStore.open(store_path, mode="r").provenance
    src = prov.get("source") if isinstance(prov.get("source"), dict) else {}
    path = src.get("path")
    if not path:
        raise ValueError(f"the labels store {store_path} does not record its image; give the "
                         "image with it: (image_path, store_path) in the API, or "
                         "--image IMAGE --labels STORE on the command line")
    if not Path(path).exists():
        raise FileNotFoundError(f"the image of the labels store {store_path} is not at "
                                f"{path} any more; give the image with the store")
    img = read_image(path)
    return img.data, img.rgb, Path(path).name


def _store_sample(store_path: Path, image: Any) -> Sample:
    data, rgb, name = _store_image(store_path, image)
    store = LabelsStore.open(store_path, mode="r")
    shape = tuple(int(s) for s in (data.shape[:-1] if rgb else data.shape))
    if tuple(store.shape) != shape:
        raise ValueError(f"the labels store {store_path} has shape {tuple(store.shape)}, but its "
                         f"image {name} has shape {shape}; give the image it was annotated on")
    return Sample(name, data, store.array, rgb=rgb, truth_path=store_path)


def _as_training_samples(source: Any) -> list[Any]:
    """Samples (or FilePairs) from one training source."""
    if isinstance(source, (str, os.PathLike)) and is_labels_store(source):
        return [_store_sample(Path(source), None)]
    if isinstance(source, tuple) and len(source) == 2 and isinstance(
            source[1], (str, os.PathLike)):
        first, second = source
        if is_labels_store(second):
            return [_store_sample(Path(second), first)]
        if isinstance(first, (str, os.PathLike)):
            return list(find_samples(first, second))
    if isinstance(source, list):
        return [s for item in source for s in _as_training_samples(item)]
    return list(as_samples(source))


def _planes_of(sample: Sample, *, min_area: int) -> list[TrainingPlane]:
    truth = check_truth(sample)
    norm = normalizer_from_options(sample.image, rgb=sample.rgb)
    lead = truth.shape[:-2]
    out = []
    for key in iter_keys(lead):
        lab = np.asarray(truth[key], dtype=np.int64)
        if min_area > 1 and lab.any():
            ids, counts = np.unique(lab, return_counts=True)
            small = ids[(counts < min_area) & (ids > 0)]
            if small.size:
                lab = np.where(np.isin(lab, small), 0, lab)
        if not lab.any():
            continue
        rgb = norm(np.asarray(sample.image[key]))
        out.append(TrainingPlane(sample.name, tuple(int(k) for k in key), rgb, lab))
    return out


def training_planes(sources: Any, *, min_area: int = 10) -> list[TrainingPlane]:
    """Every plane with at least one object, from one source or a list of sources.

    Parameters
    ----------
    sources : labels store path, (image, store), (image, labels) paths or arrays, Sample,
        folder, or a list of those
        See the module docstring.
    min_area : int
        Objects of fewer pixels (on a plane) are left out of training.

    Raises
    ------
    ValueError
        Labels that do not match their image, non-integer labels, a store without its
        image, or no object anywhere; the message names the file.
    """
    samples = _as_training_samples(sources)
    if not samples:
        raise ValueError("no training data: give labels stores, image/labels pairs or folders")
    planes: list[TrainingPlane] = []
    names: dict[str, int] = {}
    for s in samples:
        s = s.load()
        n = names.get(s.name, 0)
        names[s.name] = n + 1
        if n:  # two images of the same name must stay apart in the split
            s = Sample(f"{s.name}#{n + 1}", s.image, s.truth, rgb=s.rgb,
                       image_path=s.image_path, truth_path=s.truth_path)
        planes += _planes_of(s, min_area=int(min_area))
    if not planes:
        raise ValueError(f"the training labels hold no object of at least {min_area} pixels; "
                         "commit some objects first (or lower min_area)")
    return planes


def split_planes(planes: list[TrainingPlane], *, val_fraction: float = 0.2,
                 by: str = "image", seed: int = 0
                 ) -> tuple[list[TrainingPlane], list[TrainingPlane]]:
    """A seeded train/validation split, by image (no image in both) or by plane.

    ``val_fraction=0`` gives no validation set. With one image and ``by="image"`` the split
    falls back to planes when the image has several; a single plane cannot be split.

    Raises
    ------
    ValueError
        Too few images or planes to hold out a validation part.
    """
    if by not in SPLIT_BY:
        raise ValueError(f"split by must be one of {SPLIT_BY}, got {by!r}")
    if not 0 <= float(val_fraction) < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    if not planes:
        raise ValueError("no planes to split")
    if float(val_fraction) == 0:
        return list(planes), []
    groups = sorted({p.image for p in planes}) if by == "image" else None
    if groups is not None and len(groups) < 2:
        groups = None  # one image: split its planes
    units = groups if groups is not None else list(range(len(planes)))
    if len(units) < 2:
        raise ValueError(f"{len(planes)} plane(s) of {len({p.image for p in planes})} image(s) "
                         "are too few for a validation split: annotate another plane or "
                         "image, or train without validation (val_fraction=0, "
                         "--val-fraction 0; in the widget: validation 0 %)")
    n_val = min(len(units) - 1, max(1, round(len(units) * float(val_fraction))))
    order = np.random.default_rng(int(seed)).permutation(len(units))
    val_units = {units[i] for i in order[:n_val]}
    if groups is not None:
        val = [p for p in planes if p.image in val_units]
        train = [p for p in planes if p.image not in val_units]
    else:
        val = [p for i, p in enumerate(planes) if i in val_units]
        train = [p for i, p in enumerate(planes) if i not in val_units]
    return train, val


def planes_fingerprint(planes: list[TrainingPlane]) -> str:
    """sha256 over the planes' names, pixels and labels (recorded in the checkpoint)."""
    h = hashlib.sha256()
    for p in planes:
        h.update(p.name.encode())
        h.update(np.ascontiguousarray(p.rgb).tobytes())
        h.update(np.ascontiguousarray(p.labels.astype(np.int64)).tobytes())
    return h.hexdigest()
