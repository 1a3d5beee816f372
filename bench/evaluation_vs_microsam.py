"""Protocol 1 (interactive 2D) against micro-sam's ``run_inference_with_iterative_prompting``.

Same process, same model object (a SAM ViT-B; random weights unless ``--checkpoint``), the
same uint8 RGB images and ground-truth objects, side by side, alternating rounds. micro-sam
is NOT a dependency of this package: install it into a separate environment that also sees
this package, e.g. (``MSAM_VENV`` is any folder outside the repository)::

    python -m venv "$MSAM_VENV"
    echo "import site; site.addsitedir('$PWD/.venv/lib/python3.11/site-packages')" \
        > "$MSAM_VENV/lib/python3.11/site-packages/zz_project.pth"
    "$MSAM_VENV/bin/pip" install --no-deps micro-sam python-elf bioimage-cpp kornia \
        kornia-rs xxhash pooch natsort h5py skan numba llvmlite torch-em threadpoolctl \
        scikit-learn joblib narwhals
    "$MSAM_VENV/bin/python" bench/evaluation_vs_microsam.py

Both sides: one positive point at each object's most interior pixel (or its box), then
corrections of one positive point in the false-negative and one negative point in the
false-positive region, chosen at random (micro-sam's only mode; ours ``point_mode=
"random"``, another random stream, so per-object IoUs differ a little); micro-sam's
``n_iterations=8`` (8 predictions) is our ``n_iterations=7``; batches of 32 objects.

Timed: ``cold`` from the image (the encoder runs once per image on both sides: micro-sam
into its zarr embedding folder, ours in memory) and ``warm`` with the embeddings already on
disk (micro-sam's embedding folder, our EmbeddingCache), which isolates the prompting,
decoding and scoring. Time per object = wall time / objects. micro-sam writes one TIFF per
iteration and image, ours the tidy CSV, summary and report (no plots).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_json  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _images(data: Path):
    import tifffile

    from napari_segany.intensity import Normalizer

    pairs = [(data / "stardist" / "tests_img2d.tif", data / "stardist" / "tests_mask2d.tif"),
             (data / "ctc_2d_nuclei" / "N2DH-GOWT1" / "img" / "t21.tif",
              data / "ctc_2d_nuclei" / "N2DH-GOWT1" / "gt" / "man_seg21.tif")]
    out = []
    for img_path, gt_path in pairs:
        img = tifffile.imread(img_path)
        # the same uint8 grey plane for both sides (micro-sam takes an (H, W, 3) array for
        # a volume of H planes; both sides turn a grey plane into RGB by repeating it)
        rgb = Normalizer.fit(img)(img)[..., 0]
        gt = tifffile.imread(gt_path)
        from skimage.segmentation import relabel_sequential

        out.append((img_path.stem, rgb, relabel_sequential(gt.astype(np.uint32))[0]))
    return out


def _ious(masks: np.ndarray, gt: np.ndarray) -> list[float]:
    ids = [i for i in np.unique(gt) if i]
    out = []
    for n, oid in enumerate(ids):
        t, p = gt == oid, masks[n]
        out.append(float((t & p).sum() / max(1, (t | p).sum())))
    return out


def run_microsam(predictor, images, work: Path, *, start: str, n_pred: int, emb_dir: Path):
    import imageio.v3 as imageio
    import micro_sam.evaluation.inference as msi

    captured: dict[str, list[list[float]]] = {}
    original = msi._save_segmentation
    current = {"name": None, "gt": None}

    def save(masks, prediction_path):  # record per-object masks, then save as micro-sam does
        m = masks.detach().cpu().numpy()[:, 0] > 0.5
        captured.setdefault(current["name"], []).append(_ious(m, current["gt"]))
        return original(masks, prediction_path)

    img_paths, gt_paths = [], []
    for name, rgb, gt in images:
        imageio.imwrite(work / f"{name}.tif", rgb)
        imageio.imwrite(work / f"{name}_gt.tif", gt)
        img_paths.append(work / f"{name}.tif")
        gt_paths.append(work / f"{name}_gt.tif")
    msi._save_segmentation = save
    pred_dir = work / "pred"
    try:
        t0 = time.perf_counter()
        for (name, _rgb, gt), ip, gp in zip(images, img_paths, gt_paths, strict=True):
            current.update(name=name, gt=gt)
            shutil.rmtree(pred_dir, ignore_errors=True)
            np.random.seed(0)
            msi.run_inference_with_iterative_prompting(
                predictor, [str(ip)], [str(gp)], embedding_dir=str(emb_dir),
                prediction_dir=str(pred_dir), start_with_box_prompt=start == "box",
                batch_size=32, n_iterations=n_pred)
        seconds = time.perf_counter() - t0
    finally:
        msi._save_segmentation = original
    curve = [float(np.mean([v for name in captured for v in captured[name][i]]))
             for i in range(n_pred)]
    return seconds, curve


def run_ours(backend, images, work: Path, *, start: str, n_pred: int, cache: Path | None):
    from napari_segany.evaluation import InteractiveSettings, Sample, evaluate

    samples = [Sample(name, grey, gt) for name, grey, gt in images]
    out = work / "ours"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = evaluate(samples, [backend], settings=InteractiveSettings(
        start=start, n_iterations=n_pred - 1, point_mode="random", batch_size=32),
        out=out, plots=False, resume=False, cache_dir=cache)
    seconds = time.perf_counter() - t0
    return seconds, res.records[0]["iou_by_iteration"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", default="sam_vit_b")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=8, help="micro-sam's n_iterations")
    ap.add_argument("--starts", nargs="+", default=["point", "box"])
    ap.add_argument("--modes", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="fp32",
                    help="ours; micro-sam's predictor always computes in float32 (so must "
                         "ours, to compare: 'auto' would pick bf16 on CPUs that have it)")
    ap.add_argument("--json", default="evaluation_vs_microsam.json",
                    help="file name under bench/results (a smoke test should not replace "
                         "the recorded run)")
    args = ap.parse_args()

    import torch
    from segment_anything import SamPredictor

    from napari_segany.engine import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    backend = load_model(args.model, checkpoint=args.checkpoint, device=args.device,
                         random_weights=args.checkpoint is None, precision=args.precision)
    predictor = SamPredictor(backend.model)  # the same model object on both sides
    # what micro-sam's get_sam_model sets on its predictors (read by its embedding cache)
    predictor.model_type = {"sam_vit_b": "vit_b", "sam_vit_l": "vit_l",
                            "sam_vit_h": "vit_h"}.get(args.model, args.model)
    predictor.model_name = args.model
    predictor._hash = backend.weights_id
    predictor.checkpoint_path = args.checkpoint
    images = _images(args.data)
    n_obj = sum(len(np.unique(gt)) - 1 for _, _, gt in images)
    import micro_sam

    def save(rows: list) -> Path:  # after every row: a stopped run keeps what it measured
        return write_json(args.json, {
            "model": args.model, "checkpoint": args.checkpoint, "device": args.device,
            "micro_sam": micro_sam.__version__, "iterations": args.iterations,
            "precision": str(backend.precision),
            "rounds": args.rounds, "images": [name for name, _, _ in images], "rows": rows})

    rows = []
    for start in args.starts:
        for mode in args.modes:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                ms_emb, our_cache = work / "ms_emb", work / "our_cache"
                if mode == "warm":  # fill both embedding stores first (not timed)
                    run_microsam(predictor, images, work, start=start, n_pred=1,
                                 emb_dir=ms_emb)
                    run_ours(backend, images, work, start=start, n_pred=1, cache=our_cache)
                times = {"ours": [], "micro_sam": []}
                curves = {}
                for r in range(args.rounds):
                    order = ("ours", "micro_sam") if r % 2 == 0 else ("micro_sam", "ours")
                    for side in order:
                        if mode == "cold":
                            shutil.rmtree(ms_emb, ignore_errors=True)
                        if side == "ours":
                            s, c = run_ours(backend, images, work, start=start,
                                            n_pred=args.iterations,
                                            cache=our_cache if mode == "warm" else None)
                        else:
                            s, c = run_microsam(predictor, images, work, start=start,
                                                n_pred=args.iterations, emb_dir=ms_emb)
                        times[side].append(s)
                        curves[side] = c
                best = {k: min(v) for k, v in times.items()}
                row = {"start": start, "mode": mode, "objects": n_obj,
                       "load_average_1min": round(os.getloadavg()[0], 1),
                       "ours_s_per_object": best["ours"] / n_obj,
                       "micro_sam_s_per_object": best["micro_sam"] / n_obj,
                       "ratio": best["ours"] / best["micro_sam"],
                       "ours_all_s": times["ours"], "micro_sam_all_s": times["micro_sam"],
                       "ours_iou_by_prediction": curves["ours"],
                       "micro_sam_iou_by_prediction": curves["micro_sam"]}
                rows.append(row)
                save(rows)
                print(f"{start:5s} {mode:4s}: ours {row['ours_s_per_object'] * 1e3:7.1f} ms/obj"
                      f"  micro-sam {row['micro_sam_s_per_object'] * 1e3:7.1f} ms/obj"
                      f"  ratio {row['ratio']:.2f}  (median ours "
                      f"{statistics.median(times['ours']):.1f} s, micro-sam "
                      f"{statistics.median(times['micro_sam']):.1f} s)", flush=True)
                print("   IoU by prediction, ours:     ",
                      " ".join(f"{v:.3f}" for v in curves["ours"]))
                print("   IoU by prediction, micro-sam:",
                      " ".join(f"{v:.3f}" for v in curves["micro_sam"]), flush=True)
    print(f"wrote {save(rows)}")


if __name__ == "__main__":
    main()
