"""Regenerate the example notebooks from the cell sources below (run from the repo root).

    python notebooks/_build.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent

SETTINGS = '''import os

import numpy as np

import napari_segany as sa

# Model settings. Real use: an official model (weights are downloaded once) or a local
# checkpoint file. The test suite runs this notebook with NAPARI_SEGANY_MODEL=sam2_tiny and
# NAPARI_SEGANY_RANDOM_WEIGHTS=1: a tiny random-weight model, so the masks are meaningless
# there but every step runs.
MODEL = os.environ.get("NAPARI_SEGANY_MODEL", "sam2.1_hiera_tiny")
RANDOM_WEIGHTS = os.environ.get("NAPARI_SEGANY_RANDOM_WEIGHTS", "0") == "1"
CHECKPOINT = os.environ.get("NAPARI_SEGANY_CHECKPOINT")  # e.g. a fine-tuned SAM file
backend = sa.load_model(MODEL, checkpoint=CHECKPOINT, random_weights=RANDOM_WEIGHTS)
backend'''

# Where the notebooks find the shared real data (the same cell text in each notebook)
SHARED_DATA = '''def shared_data():
    here = Path(sa.__file__).resolve()
    for cand in (os.environ.get("NAPARI_SEGANY_TEST_DATA"), "../../shared/data",
                 "../shared/data", here.parents[3] / "shared" / "data"):
        if cand and (Path(cand) / "stardist").is_dir():
            return Path(cand)
    return None
'''

NOTEBOOKS = {
    "01_cells_2d.ipynb": [
        ("md", "# Segmenting cells on a 2D image\n\nClick-style prompts (points, boxes) on a "
               "2D fluorescence image, committed one object at a time into a zarr labels store, "
               "then exported."),
        ("code", SETTINGS),
        ("md", "The bundled sample is a synthetic 16-bit nuclei image with ground truth. "
               "Any 2D array works, or a file path (TIFF, PNG, zarr, ...)."),
        ("code", '''sample = sa.load_sample("nuclei")
seg = sa.Segmenter(sample.image, model=backend)
print(sample.image.shape, sample.image.dtype, "->", seg.normalizer)'''),
        ("md", "One positive click on a nucleus; the best of SAM's candidate masks is kept."),
        ("code", '''mask = seg.segment(points=[sample.point])
gt = sample.labels == sample.object_id
iou = (mask & gt).sum() / max(1, (mask | gt).sum())
print(f"{mask.sum()} px, IoU with ground truth {iou:.2f}")
seg.commit(class_name="nucleus")
seg.show()'''),
        ("md", "Boxes from a detector (here: the ground-truth boxes of three more nuclei) are "
               "decoded in one batched call, one object per box."),
        ("code", '''boxes = []
for oid in (2, 3, 4):
    ys, xs = np.nonzero(sample.labels == oid)
    boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
masks = seg.segment(boxes=boxes)
print(masks.shape)
seg.commit(class_name="nucleus")
seg.show()'''),
        ("code", '''seg.undo()            # the last commit (three boxes) is undone ...
seg.redo()            # ... and re-applied
out = seg.export(seg.labels.path.parent / "nuclei.tif")
print("labels", np.unique(seg.labels_numpy()), "exported to", out.name)'''),
    ],
    "02_volume_propagation.ipynb": [
        ("md", "# Propagating an object through a 3D volume\n\nPrompt one plane of a (z, y, x) "
               "volume, then let slice-wise SAM or SAM2 memory propagation segment the rest. "
               "Results are written plane by plane into a zarr labels store; embeddings are "
               "cached on disk and reused."),
        ("code", SETTINGS),
        ("code", '''import tempfile
from pathlib import Path

from napari_segany.prompts import ObjectPrompt, PromptSet

work = Path(tempfile.mkdtemp())
sample = sa.load_sample("volume")          # (z, y, x) uint16 with one blob
seg = sa.Segmenter(sample.image, model=backend, labels=work / "labels.zarr",
                       cache=work / "embeddings.zarr")
print(sample.image.shape, "prompt on plane", sample.point_plane)'''),
        ("code", '''n = seg.precompute(progress=lambda done, total: None)
print(f"embedded {n} planes; a second precompute embeds {seg.precompute()}")'''),
        ("code", '''prompts = PromptSet()
prompts.add(sample.point_plane, 1, ObjectPrompt(points=[sample.point], labels=[1]))
method = "sam2" if backend.family == "sam2" else "slice"
written = seg.propagate(prompts, method=method)
print(method, "propagation wrote", len(written[1]), "planes")'''),
        ("code", '''for z in (sample.point_plane[0] - 4, sample.point_plane[0], '''
                 '''sample.point_plane[0] + 4):
    labels = seg.labels.read_plane((z,))
    gt = sample.labels[z] == 1
    print(z, "IoU", round(((labels == 1) & gt).sum() / max(1, ((labels == 1) | gt).sum()), 2))
seg.show(sample.point_plane)'''),
        ("md", "The store keeps its provenance: model, weights, prompts and settings."),
        ("code", '''prov = seg.labels.provenance
{k: prov[k] for k in ("version", "model", "propagation")}'''),
    ],
    "03_timelapse_propagation.ipynb": [
        ("md", "# Tracking an object through a time-lapse\n\nA (t, y, x) movie is just another "
               "stack: prompt the first frame with a mask, track it with SAM2's memory. "
               "Frames are read lazily and never written out as JPEG."),
        ("code", SETTINGS),
        ("code", '''from napari_segany.prompts import ObjectPrompt, PromptSet

t, h, w = 30, 160, 200
yy, xx = np.mgrid[:h, :w]
movie = np.zeros((t, h, w), np.uint16)
truth = np.zeros((t, h, w), bool)
rng = np.random.default_rng(0)
for i in range(t):   # a cell drifting right and changing shape
    cy, cx = 80 + 20 * np.sin(i / 6), 40 + 4 * i
    truth[i] = ((yy - cy) / 18) ** 2 + ((xx - cx) / (14 + 4 * np.cos(i / 5))) ** 2 <= 1
    movie[i] = 400 + 3000 * truth[i] + rng.normal(0, 80, (h, w)).clip(-400, 400)
seg = sa.Segmenter(movie, model=backend)'''),
        ("code", '''prompts = PromptSet()
prompts.add((0,), 1, ObjectPrompt(mask=truth[0]))
if backend.family == "sam2":
    written = seg.propagate(prompts, method="sam2")
else:
    written = seg.propagate(prompts, method="slice")
print("tracked through", len(written[1]), "frames")
seg.show((t // 2,))'''),
    ],
    "04_evaluation.ipynb": [
        ("md", "# Comparing two models on data with ground truth\n\nWhich model works on "
               "*your* data, and how many clicks does an object cost? "
               "`napari_segany.evaluation` simulates a user from the ground truth (the same "
               "prompts for every model), runs each model through the same engine as the "
               "widget, and scores the masks. Here: iterative prompting on 2D nuclei (IoU vs "
               "clicks, as micro-sam) and one prompt per object propagated through a CT volume "
               "(Dice and surface Dice in mm)."),
        ("code", '''import os
import tempfile
from pathlib import Path

from IPython.display import Image, display

import napari_segany as sa
from napari_segany.evaluation import (InteractiveSettings, Sample, VolumeSettings, evaluate,
                                      find_samples)

# Two models to compare. Real use: e.g. SAM ViT-B against SAM2.1 Hiera-tiny (weights are
# downloaded once) or a fine-tuned checkpoint. The test suite runs this notebook with
# NAPARI_SEGANY_MODEL=sam2_tiny and NAPARI_SEGANY_RANDOM_WEIGHTS=1: tiny random-weight
# models, so every score below is meaningless there, but every step runs.
MODEL = os.environ.get("NAPARI_SEGANY_MODEL", "sam2.1_hiera_tiny")
RANDOM_WEIGHTS = os.environ.get("NAPARI_SEGANY_RANDOM_WEIGHTS", "0") == "1"
OTHER = os.environ.get("NAPARI_SEGANY_OTHER_MODEL", "sam_tiny" if RANDOM_WEIGHTS else "sam_vit_b")
models = [sa.load_model(name, random_weights=RANDOM_WEIGHTS) for name in (OTHER, MODEL)]
[m.name for m in models]'''),
        ("md", "The shared real data (StarDist nuclei with instance labels, a CT crop of the "
               "spleen from the Medical Segmentation Decathlon) sit beside the repository in "
               "`../shared/data`; without them the bundled synthetic samples are used."),
        ("code", SHARED_DATA + '''

DATA = shared_data()
work = Path(tempfile.mkdtemp())
if DATA is not None:
    nuclei = find_samples(DATA / "stardist" / "tests_img2d.tif",
                          DATA / "stardist" / "tests_mask2d.tif")
    ct = find_samples(DATA / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz",
                      DATA / "msd_spleen_crop" / "sub-spleen2_ct_seg-manual.nii.gz")
else:
    n, v = sa.load_sample("nuclei"), sa.load_sample("volume")
    nuclei, ct = Sample("nuclei", n.image, n.labels), Sample("volume", v.image, v.labels)
print("data:", "shared real data" if DATA is not None else "synthetic samples")'''),
        ("md", "## Interactive 2D: IoU against the number of clicks\n\nEach nucleus starts "
               "from one point at its most interior pixel; each correction adds a positive "
               "point in the missed part and a negative one in the wrongly added part."),
        ("code", '''res2d = evaluate(nuclei, models, protocol="interactive",
                 settings=InteractiveSettings(n_iterations=4), out=work / "nuclei")
print(res2d.table())
display(Image(filename=res2d.files["iou_vs_clicks"]))'''),
        ("code", '''df = res2d.to_pandas()
df.groupby(["model", "clicks"])["iou"].mean().unstack(0).round(3)'''),
        ("md", "## Volume: one prompt per object, propagated\n\nA point on the spleen's "
               "largest plane, then slice-wise propagation (any model) and SAM2 memory "
               "propagation (SAM2 models); Dice and normalised surface Dice with a 2 mm "
               "tolerance, using the voxel spacing of the NIfTI header."),
        ("code", '''window = "ct_soft_tissue" if DATA is not None else None
res3d = evaluate(ct, models, protocol="volume", window=window,
                 settings=VolumeSettings(tolerance=2.0), out=work / "ct")
print(res3d.table())
for note in res3d.summary["notes"]:
    print("note:", note)
display(Image(filename=res3d.files["dice_per_plane"]))'''),
        ("md", "The same from the command line, with a Markdown report in "
               "`eval-nuclei/report.md`:\n\n```bash\nnapari-segany evaluate tests_img2d.tif "
               "--labels tests_mask2d.tif --model sam_vit_b --model sam2.1_hiera_tiny "
               "--out eval-nuclei\n```"),
    ],
    "05_finetuning.ipynb": [
        ("md", "# Fine-tuning a model on your annotations, and measuring the gain\n\nWhen the "
               "stock model misses your nuclei, train it on objects you have annotated: "
               "`napari_segany.finetune` simulates a user from your labels (a point or a box, "
               "then correction clicks, as micro-sam's trainer), trains the mask decoder on "
               "embeddings computed once, and writes a checkpoint that every part of "
               "napari-segany loads. `napari_segany.evaluation` then scores the model before "
               "and after on nuclei that training never saw, with the same simulated clicks "
               "for both."),
        ("code", '''import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from IPython.display import Image, display

import napari_segany as sa
from napari_segany.evaluation import InteractiveSettings, evaluate
from napari_segany.finetune import FinetuneSettings, finetune

# The model to fine-tune. Real use: an official model (weights are downloaded once), e.g.
# "sam_vit_b" or "sam2.1_hiera_tiny". The test suite runs this notebook with
# NAPARI_SEGANY_MODEL=sam2_tiny and NAPARI_SEGANY_RANDOM_WEIGHTS=1: a tiny *random-init*
# model, so a rising IoU there proves the training machinery, not what fine-tuning does
# for a trained model.
MODEL = os.environ.get("NAPARI_SEGANY_MODEL", "sam2.1_hiera_tiny")
RANDOM_WEIGHTS = os.environ.get("NAPARI_SEGANY_RANDOM_WEIGHTS", "0") == "1"
base = sa.load_model(MODEL, random_weights=RANDOM_WEIGHTS)
work = Path(tempfile.mkdtemp())
base'''),
        ("md", "## Annotations to learn from, and nuclei to test on\n\nTraining: the "
               "StarDist/DSB2018 image `img2d.tif` with its 125 annotated nuclei (the shared "
               "real data beside the repository; without it, the bundled synthetic sample). "
               "Test: another image, `tests_img2d.tif` (65 nuclei), never trained on. Both are "
               "cut into tiles; the tiny test model sees its 256-pixel input in 16-pixel "
               "patches, so it gets small tiles (a nucleus then spans a few patches), a real "
               "model larger ones."),
        ("code", SHARED_DATA + '''

def tiles(img, lab, size, name):
    """Square tiles of an image with their labels (tiles without objects left out)."""
    return {f"{name}[{i},{j}]": (img[i:i + size, j:j + size], lab[i:i + size, j:j + size])
            for i in range(0, img.shape[0] - size + 1, size)
            for j in range(0, img.shape[1] - size + 1, size)
            if lab[i:i + size, j:j + size].any()}


def count(pairs):
    return sum(len(np.unique(lab)) - 1 for _, lab in pairs.values())


DATA = shared_data()
TILE = 64 if base.image_size <= 256 else 256
if DATA is not None:
    def read(name):
        return tifffile.imread(DATA / "stardist" / f"{name}.tif")

    train = tiles(read("img2d"), read("mask2d"), TILE, "img2d")
    held_out = tiles(read("tests_img2d"), read("tests_mask2d"), TILE, "tests_img2d")
else:  # the synthetic sample: top half to train, bottom half to test
    s = sa.load_sample("nuclei")
    h = s.image.shape[0] // 2
    train = tiles(s.image[:h], s.labels[:h], min(TILE, h), "top")
    held_out = tiles(s.image[h:], s.labels[h:], min(TILE, h), "bottom")
print("data:", "shared real data" if DATA is not None else "synthetic sample")
# (a nucleus cut by a tile border counts once in each tile)
print(f"train: {len(train)} tiles, {count(train)} objects; "
      f"held out: {len(held_out)} tiles, {count(held_out)} objects")'''),
        ("md", "## Train the decoder\n\n`mode=\"decoder\"` trains the prompt encoder and the "
               "mask decoder; each tile is embedded once (give `cache_dir=` to keep the "
               "embeddings for later runs) and the image encoder never runs in the training "
               "loop, which is what makes this fast on a laptop. `val=` scores every epoch on "
               "the held-out tiles (mean IoU from an interior point and from the box); the "
               "checkpoint keeps the best epoch."),
        ("code", '''EPOCHS = 2 if RANDOM_WEIGHTS else 10
settings = FinetuneSettings(mode="decoder", epochs=EPOCHS, lr=1e-3, objects_per_step=16,
                            n_corrections=1, loss_size=128, max_val_objects=64)
result = finetune(train, base, out=work / "ft-nuclei", val=held_out, settings=settings)
for row in result.log:
    loss = f"loss {row['train_loss']:.3f}" if row["epoch"] else "before training"
    print(f"epoch {row['epoch']}: {loss}, validation IoU {row['val_iou']:.3f}")
print("wrote", result.checkpoint)
display(Image(filename=result.files["plot"]))'''),
        ("md", "## Before and after, with the evaluation protocol\n\nThe interactive protocol "
               "(micro-sam's): each held-out nucleus starts from a point at its most interior "
               "pixel, then each round adds a positive point where the mask misses the "
               "nucleus and a negative one where it spills over. Both models get exactly the "
               "same clicks."),
        ("code", '''report = evaluate(held_out, [base, result.backend], protocol="interactive",
                  settings=InteractiveSettings(n_iterations=3), out=work / "eval")
print(report.table())
display(Image(filename=report.files["iou_vs_clicks"]))'''),
        ("md", "## Use the fine-tuned model\n\nThe checkpoint loads like any SAM or SAM2 "
               "checkpoint: `load_model(path)` here, `--checkpoint` on the command line, the "
               "widget's model picker (or *Use the new model* in its *Fine-tune* section)."),
        ("code", '''tuned = sa.load_model(result.checkpoint)
name, (img, lab) = next(iter(held_out.items()))
seg = sa.Segmenter(img, model=tuned)
oid = int(np.unique(lab)[1])
ys, xs = np.nonzero(lab == oid)
mask = seg.segment(points=[[xs.mean(), ys.mean()]])
iou = (mask & (lab == oid)).sum() / max(1, (mask | (lab == oid)).sum())
print(f"{name}, object {oid}: IoU {iou:.2f} with the fine-tuned model")
seg.commit(class_name="nucleus")
seg.show().resize((4 * img.shape[1], 4 * img.shape[0]), 0)  # a small tile: shown at 4x'''),
        ("md", "The same from the command line:\n\n```bash\nnapari-segany finetune img2d.tif "
               "--labels mask2d.tif --model sam2.1_hiera_tiny --epochs 10 --out ft-nuclei\n"
               "napari-segany evaluate tests_img2d.tif --labels tests_mask2d.tif \\\n"
               "    --model sam2.1_hiera_tiny --checkpoint ft-nuclei/model.pt --out eval-ft\n```"),
    ],
}


def build() -> None:
    for name, cells in NOTEBOOKS.items():
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
                    for kind, src in cells]
        nbf.write(nb, HERE / name)


if __name__ == "__main__":
    build()
