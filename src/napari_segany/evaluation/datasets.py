"""What is evaluated: images with ground-truth labels, from arrays, files and folder layouts.

A :class:`Sample` is one image (2D, a volume ``(Z, Y, X)`` or a stack ``(T, Y, X)``; RGB
with a last colour axis) and its integer instance labels of the same spatial shape. A
:class:`FilePair` names files and is read only when its turn comes, so a folder of a
thousand images is not loaded up front, and an unreadable pair stops the run with a
message naming the file after the pairs before it were scored.

Layouts found by :func:`find_samples`
-------------------------------------
* an image and a labels file (TIFF, PNG, NIfTI, zarr, ``.npy``);
* a folder of images and a folder of labels, paired by file stem (the labels' stem may
  add ``_mask``, ``_seg``, ``_labels``, ``_gt``, ... e.g. ``ct.nii.gz`` and
  ``ct_seg-manual.nii.gz``);
* the Cell Tracking Challenge layout: ``gt/man_segNNN.tif`` with ``img/tNNN.tif``, or the
  official ``NN_GT/SEG/man_segNNN.tif`` with ``NN/tNNN.tif`` (a folder holding several
  such data sets is searched one level down);
* the DAVIS layout: ``JPEGImages/<res>/<sequence>/*.jpg`` with
  ``Annotations/<res>/<sequence>/*.png`` (one sample per sequence, a ``(T, H, W, 3)``
  stack). Binary 0/255 masks (DAVIS 2016) become object 1; palette masks (DAVIS 2017)
  keep their indices.

A napari-segany labels store can be given as a sample's ``prediction``: it is then scored
instead of running a model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_image
from ..io.read import file_stem
from ..storage.labels import LabelsStore, is_labels_store

__all__ = ["Sample", "FilePair", "read_labels", "check_truth", "find_samples", "ctc_pairs",
           "davis_pairs", "folder_pairs", "as_samples"]

_LABEL_SUFFIX = re.compile(r"^[_\-.]?(mask|masks|label|labels|seg|segmentation|gt|truth|"
                           r"annotation|annotations|man_seg)([_\-.].*)?$", re.IGNORECASE)
_IMAGE_EXT = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy", ".nii", ".nii.gz", ".zarr",
              ".bmp")


@dataclass
class Sample:
    """One image with its ground truth.

    Attributes
    ----------
    name : str
        How the sample is called in tables and plots.
    image : array-like
        ``(..., H, W)``, or ``(..., H, W, C)`` with ``rgb=True`` (numpy, zarr, dask, a
        :class:`~napari_segany.io.FrameFolder`, ...).
    truth : array-like
        Integer instance labels ``(..., H, W)`` (0 is background), the image's spatial
        shape.
    rgb : bool
        The image's last axis is colour.
    spacing : tuple of float, optional
        Voxel size along the axes of ``truth`` (e.g. ``(dz, dy, dx)`` in mm, from a NIfTI
        header); None: 1 per axis, in pixels.
    unit : str
        Unit of ``spacing`` (``"mm"`` for NIfTI, ``"px"`` otherwise).
    prediction : array-like, optional
        Labels to score instead of running a model (e.g. a labels store's array).
    image_path, truth_path : Path, optional
        Where the arrays came from (named in error messages).
    """

    name: str
    image: Any
    truth: Any
    rgb: bool = False
    spacing: tuple[float, ...] | None = None
    unit: str = "px"
    prediction: Any = None
    image_path: Path | None = None
    truth_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape of the image (without a colour axis)."""
        return tuple(int(s) for s in (self.image.shape[:-1] if self.rgb else self.image.shape))

    def load(self) -> Sample:
        return self

    def what(self) -> str:
        """How error messages name the ground truth."""
        return str(self.truth_path) if self.truth_path else f"the labels of {self.name!r}"


@dataclass(frozen=True)
class FilePair:
    """An image file (or frame folder) and its labels, read by :meth:`load`.

    ``prediction`` optionally names a labels store (or labels file) to score instead of
    running a model; ``relabel`` turns a binary mask into connected components (e.g. the
    ISBI 2012 membrane labels, whose cells are the components of the foreground).
    """

    image: Path
    labels: Path
    name: str
    prediction: Path | None = None
    relabel: bool = False

    def load(self) -> Sample:
        try:
            img = read_image(self.image)
        except FileNotFoundError:
            raise FileNotFoundError(f"image not found: {self.image}") from None
        truth = read_labels(self.labels)
        spacing = img.spacing
        unit = "mm" if spacing is not None else "px"
        if spacing is None and str(self.labels).lower().endswith((".nii", ".nii.gz")):
            spacing, unit = read_image(self.labels).spacing, "mm"
        if self.relabel:
            truth = _components(np.asarray(truth))
        pred = None
        if self.prediction is not None:
            pred = read_labels(self.prediction)
        return Sample(self.name, img.data, truth, rgb=img.rgb,
                      spacing=None if spacing is None else tuple(float(s) for s in spacing),
                      unit=unit, prediction=pred, image_path=self.image,
                      truth_path=self.labels)


def _components(truth: np.ndarray) -> np.ndarray:
    from skimage.measure import label

    out = np.zeros(truth.shape, np.uint32)
    if truth.ndim == 2:
        return label(truth != 0, connectivity=1).astype(np.uint32)
    for key in np.ndindex(truth.shape[:-2]):
        out[key] = label(truth[key] != 0, connectivity=1)
    return out


# ------------------------------------------------------------------------- reading labels
def _read_label_file(path: Path) -> np.ndarray:
    if path.suffix.lower() in (".png", ".bmp", ".gif"):
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode in ("RGB", "RGBA", "CMYK"):
                    raise ValueError(f"labels {path} are a colour image ({im.mode}); ground "
                                     "truth must hold integer ids (a grey or palette PNG)")
                return np.asarray(im)
        except OSError as exc:
            raise ValueError(f"cannot read labels {path}: {exc}") from exc
    data = read_image(path).data
    return np.asarray(data[...] if hasattr(data, "__getitem__") else data)


def read_labels(path: str | os.PathLike) -> Any:
    """Read ground-truth or predicted labels from a file, a frame folder or a labels store.

    Returns a numpy array (a labels store: its zarr array, read lazily). Binary 0/255
    masks become 0/1.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"labels not found: {p}")
    if p.is_dir() and is_labels_store(p):
        return LabelsStore.open(p, mode="r").array
    if p.is_dir() and not ((p / "zarr.json").exists() or (p / ".zarray").exists()):
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_EXT)
        if not files:
            raise ValueError(f"labels folder {p} holds no label images")
        frames = [_read_label_file(f) for f in files]
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise ValueError(f"label frames in {p} differ in shape: {sorted(shapes)}")
        arr = np.stack(frames)
    else:
        arr = _read_label_file(p)
    if arr.dtype.kind in "iu" and arr.size:
        values = np.unique(arr)
        if len(values) <= 2 and values.max() == 255:
            arr = (arr == 255).astype(np.uint8)
    return arr


def check_truth(sample: Sample) -> np.ndarray:
    """The sample's ground truth as a numpy integer array, checked against the image.

    Raises
    ------
    ValueError
        Labels of another shape than the image, non-integer values, negative ids, or no
        object at all; the message names the file.
    """
    what = sample.what()
    truth = np.asarray(sample.truth[...] if hasattr(sample.truth, "__getitem__")
                       else sample.truth)
    shape = sample.shape
    if truth.shape != shape:
        img = sample.image_path or "the image"
        raise ValueError(f"{what}: labels of shape {truth.shape} do not match {img} of shape "
                         f"{shape}")
    if truth.dtype == bool:
        truth = truth.astype(np.uint8)
    elif truth.dtype.kind == "f":
        finite = np.isfinite(truth)
        if not finite.all() or not np.array_equal(truth, np.round(truth)):
            bad = truth[~finite | (truth != np.round(truth))].ravel()[:1]
            raise ValueError(f"{what}: labels hold non-integer values (e.g. {bad[0]!r}); "
                             "ground truth must be integer instance ids")
        truth = truth.astype(np.int64)
    elif truth.dtype.kind not in "iu":
        raise ValueError(f"{what}: labels of dtype {truth.dtype} are not integer instance ids")
    if truth.dtype.kind == "i" and truth.size and truth.min() < 0:
        raise ValueError(f"{what}: labels hold negative ids ({truth.min()}); 0 is background "
                         "and objects are > 0")
    if not truth.any():
        raise ValueError(f"{what}: the ground truth holds no objects (all pixels are 0)")
    if sample.spacing is not None and len(sample.spacing) != truth.ndim:
        raise ValueError(f"{what}: spacing {sample.spacing} does not give one size per axis "
                         f"of shape {truth.shape}")
    return truth


def check_prediction(sample: Sample) -> np.ndarray:
    """The sample's prediction as a numpy integer array of the ground truth's shape."""
    pred = np.asarray(sample.prediction[...])
    if pred.shape != sample.shape:
        raise ValueError(f"prediction of shape {pred.shape} for {sample.name!r} does not match "
                         f"the image shape {sample.shape}")
    if pred.dtype == bool:
        pred = pred.astype(np.uint8)
    if pred.dtype.kind not in "iu":
        raise ValueError(f"prediction for {sample.name!r} holds {pred.dtype} values, not "
                         "integer labels")
    return pred


# ------------------------------------------------------------------------- layouts
def _is_image(p: Path) -> bool:
    name = p.name.lower()
    return (name.endswith(_IMAGE_EXT) and not name.startswith(".")) or (
        p.is_dir() and (p / "zarr.json").exists())


def folder_pairs(images: str | os.PathLike, labels: str | os.PathLike,
                 *, relabel: bool = False) -> list[FilePair]:
    """Pair every image of a folder with its labels in another folder, by file stem."""
    img_dir, lab_dir = Path(images), Path(labels)
    for d in (img_dir, lab_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"folder not found: {d}")
    label_files = [f for f in sorted(lab_dir.iterdir()) if _is_image(f)]
    out = []
    for img in (f for f in sorted(img_dir.iterdir()) if _is_image(f)):
        stem = file_stem(img)
        exact = [f for f in label_files if file_stem(f) == stem]
        loose = [f for f in label_files if file_stem(f).startswith(stem)
                 and _LABEL_SUFFIX.match(file_stem(f)[len(stem):])]
        found = exact or loose
        if not found:
            raise ValueError(f"no labels for image {img} in {lab_dir} (expected a file named "
                             f"{stem}.* or {stem}_mask.*)")
        out.append(FilePair(img, found[0], stem, relabel=relabel))
    if not out:
        raise ValueError(f"{img_dir} holds no images")
    return out


def _ctc_one(root: Path) -> list[FilePair]:
    pairs = []
    gts = sorted(root.glob("gt/man_seg*.tif")) + sorted(root.glob("*_GT/SEG/man_seg*.tif"))
    for gt in gts:
        number = gt.stem[len("man_seg"):]
        if gt.parent.name == "gt":
            cands = [root / "img" / f"t{number}.tif", root / f"t{number}.tif"]
        else:
            seq = gt.parent.parent.name[: -len("_GT")]
            cands = [root / seq / f"t{number}.tif"]
        img = next((c for c in cands if c.exists()), None)
        if img is None:
            raise ValueError(f"no image for {gt} (looked for {', '.join(map(str, cands))})")
        name = f"{root.name}/t{number}" if gt.parent.name == "gt" else (
            f"{root.name}/{gt.parent.parent.name[:-3]}/t{number}")
        pairs.append(FilePair(img, gt, name))
    return pairs


def ctc_pairs(root: str | os.PathLike) -> list[FilePair]:
    """Image/labels pairs of a Cell Tracking Challenge folder (or a folder of several)."""
    root = Path(root)
    pairs = _ctc_one(root)
    if not pairs and root.is_dir():
        for sub in sorted(p for p in root.iterdir() if p.is_dir()):
            pairs += _ctc_one(sub)
    if not pairs:
        raise ValueError(f"{root} has no Cell Tracking Challenge ground truth "
                         "(gt/man_seg*.tif or NN_GT/SEG/man_seg*.tif)")
    return pairs


def davis_pairs(root: str | os.PathLike, *, sequences: list[str] | None = None,
                resolution: str | None = None) -> list[FilePair]:
    """One frame-folder pair per DAVIS sequence (``JPEGImages``, ``Annotations``)."""
    root = Path(root)
    jpeg, ann = root / "JPEGImages", root / "Annotations"
    if not (jpeg.is_dir() and ann.is_dir()):
        raise ValueError(f"{root} is not a DAVIS folder (needs JPEGImages/ and Annotations/)")
    resolutions = sorted(p.name for p in ann.iterdir() if p.is_dir())
    res = resolution or ("480p" if "480p" in resolutions else (resolutions or [None])[0])
    if res is None or not (ann / res).is_dir():
        raise ValueError(f"{ann} has no resolution folder {resolution or ''} "
                         f"(found: {resolutions})")
    names = sequences or sorted(p.name for p in (ann / res).iterdir() if p.is_dir())
    pairs = []
    for seq in names:
        frames, masks = jpeg / res / seq, ann / res / seq
        if not frames.is_dir() or not masks.is_dir():
            raise ValueError(f"DAVIS sequence {seq!r} lacks {frames} or {masks}")
        n_img = len([f for f in frames.iterdir() if _is_image(f)])
        n_ann = len([f for f in masks.iterdir() if _is_image(f)])
        if n_img != n_ann:
            raise ValueError(f"DAVIS sequence {seq!r}: {n_img} frames in {frames} but {n_ann} "
                             f"annotations in {masks}; every frame needs one")
        pairs.append(FilePair(frames, masks, seq))
    return pairs


def find_samples(path: str | os.PathLike, labels: str | os.PathLike | None = None, *,
                 relabel: bool = False) -> list[FilePair]:
    """The pairs a path names: a file with ``labels``, two folders, CTC or DAVIS layouts."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"not found: {p}")
    if labels is not None:
        lab = Path(labels)
        if not lab.exists():
            raise FileNotFoundError(f"labels not found: {lab}")
        if p.is_dir() and lab.is_dir() and not _is_image(p) and not (
                (p / "JPEGImages").exists()):
            if any(_is_image(f) for f in p.iterdir()) and not any(
                    f.suffix.lower() in (".jpg", ".jpeg") for f in lab.iterdir()):
                return folder_pairs(p, lab, relabel=relabel)
        return [FilePair(p, lab, file_stem(p), relabel=relabel)]
    if (p / "JPEGImages").is_dir():
        return davis_pairs(p)
    if p.is_dir():
        return [replace(fp, relabel=relabel) for fp in ctc_pairs(p)]
    raise ValueError(f"{p}: give its labels (--labels) or a CTC / DAVIS folder")


def as_samples(data: Any) -> list[Sample | FilePair]:
    """Samples from what the API takes: a Sample or FilePair, an ``(image, labels)`` tuple of
    arrays, a ``{name: (image, labels)}`` dict, a path (see :func:`find_samples`), or a
    list of those."""
    if isinstance(data, (Sample, FilePair)) or (hasattr(data, "load") and hasattr(data, "name")):
        return [data]
    if isinstance(data, (str, os.PathLike)):
        return list(find_samples(data))
    if isinstance(data, dict):
        return [s for name, v in data.items() for s in _named(name, v)]
    if isinstance(data, tuple) and len(data) == 2 and all(hasattr(x, "shape") for x in data):
        return [Sample("array", data[0], data[1])]
    if isinstance(data, (list, tuple)):
        out: list[Sample | FilePair] = []
        for i, item in enumerate(data):
            if isinstance(item, tuple) and len(item) == 2 and all(hasattr(x, "shape")
                                                                  for x in item):
                out.append(Sample(f"array{i}", item[0], item[1]))
            else:
                out += as_samples(item)
        return out
    raise TypeError(f"cannot evaluate {type(data).__name__}: give a Sample, (image, labels) "
                    "arrays, a dict of them, a path or a list")


def _named(name: str, value: Any) -> list[Sample | FilePair]:
    if isinstance(value, (Sample, FilePair)):
        return [replace(value, name=str(name))]
    if isinstance(value, tuple) and len(value) == 2:
        return [Sample(str(name), value[0], value[1])]
    raise TypeError(f"dataset {name!r}: give (image, labels) arrays or a Sample")
