"""Build the worked example shown in docs/finetuning.md (run from the repository root).

    .venv/bin/python docs/_build_finetuning.py [--data ../shared/data] [--epochs 3]

Trains the decoder of the tiny SAM2.1 architecture with **random** weights
(``sam2_tiny``) on 64 x 64 tiles of the StarDist/DSB2018 image ``stardist/img2d.tif`` and
scores the model before and after with the evaluation package's interactive protocol on
tiles of ``stardist/tests_img2d.tif``, which training never sees (the notebook
``notebooks/05_finetuning.ipynb`` does the same). Writes ``docs/finetuning/``: the training
log and plot, and the evaluation report with its plots. With random weights the gain proves
the training machinery, not what fine-tuning does for a trained model; the report says so.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_segany.engine import load_model
from napari_segany.evaluation import InteractiveSettings, evaluate
from napari_segany.finetune import FinetuneSettings, finetune

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "finetuning"


def tiles(img: np.ndarray, lab: np.ndarray, size: int, name: str) -> dict:
    return {f"{name}[{i},{j}]": (img[i:i + size, j:j + size], lab[i:i + size, j:j + size])
            for i in range(0, img.shape[0] - size + 1, size)
            for j in range(0, img.shape[1] - size + 1, size)
            if lab[i:i + size, j:j + size].any()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)

    def read(name: str) -> np.ndarray:
        return tifffile.imread(args.data / "stardist" / f"{name}.tif")

    train = tiles(read("img2d"), read("mask2d"), 64, "img2d")
    held_out = tiles(read("tests_img2d"), read("tests_mask2d"), 64, "tests_img2d")
    base = load_model("sam2_tiny", random_weights=True, device="cpu", precision="fp32")
    shutil.rmtree(OUT, ignore_errors=True)
    settings = FinetuneSettings(mode="decoder", epochs=args.epochs, lr=1e-3,
                                objects_per_step=16, n_corrections=1, loss_size=128,
                                max_val_objects=64)
    t0 = time.perf_counter()
    res = finetune(train, base, out=OUT / "ft-nuclei", val=held_out, settings=settings)
    print(f"training: {time.perf_counter() - t0:.1f} s")
    for row in res.log:
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
    for key in ("checkpoint", "state"):  # the weights are not documentation
        res.files[key].unlink()
    (OUT / "ft-nuclei" / "model.pt.sha256").unlink(missing_ok=True)
    t0 = time.perf_counter()
    report = evaluate(held_out, [base, res.backend], protocol="interactive",
                      settings=InteractiveSettings(n_iterations=3), out=OUT / "eval")
    for name in ("units.txt", "run.json"):
        (OUT / "eval" / name).unlink(missing_ok=True)
    print(f"evaluation: {time.perf_counter() - t0:.1f} s\n{report.table()}")


if __name__ == "__main__":
    main()
