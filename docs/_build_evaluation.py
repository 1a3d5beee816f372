"""Build the example reports shown in docs/evaluation.md (run from the repository root).

    .venv/bin/python docs/_build_evaluation.py [--data ../shared/data]

Tiny random-weight models (``sam_tiny``, ``sam2_tiny``) on the shared real data: the
figures show what the evaluation measures and draws; the scores themselves are
meaningless (the reports say so). Writes ``docs/evaluation/{nuclei,ct,davis,automatic}/``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from napari_segany.engine import load_model
from napari_segany.evaluation import (
    AutomaticSettings,
    InteractiveSettings,
    VideoSettings,
    VolumeSettings,
    davis_pairs,
    evaluate,
    find_samples,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "evaluation"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = [load_model(m, random_weights=True, device="cpu") for m in ("sam_tiny",
                                                                           "sam2_tiny")]
    d = args.data
    runs = {
        "nuclei": dict(data=find_samples(d / "stardist" / "tests_img2d.tif",
                                         d / "stardist" / "tests_mask2d.tif"),
                       protocol="interactive", settings=InteractiveSettings()),
        "automatic": dict(data=find_samples(d / "stardist" / "tests_img2d.tif",
                                            d / "stardist" / "tests_mask2d.tif"),
                          protocol="automatic", settings=AutomaticSettings()),
        "ct": dict(data=find_samples(d / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz",
                                     d / "msd_spleen_crop" / "sub-spleen2_ct_seg-manual.nii.gz"),
                   protocol="volume", settings=VolumeSettings(corrections=1),
                   window="ct_soft_tissue"),
        "davis": dict(data=davis_pairs(d / "davis_blackswan"), protocol="video",
                      settings=VideoSettings()),
    }
    for name, kw in runs.items():
        out = OUT / name
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        res = evaluate(models=models, out=out, **kw)
        (out / "units.txt").unlink()
        (out / "run.json").unlink()
        print(f"{name}: {time.perf_counter() - t0:.1f} s\n{res.table()}\n")


if __name__ == "__main__":
    main()
