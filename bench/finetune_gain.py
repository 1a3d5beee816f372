"""Fine-tuning: the gain on held-out nuclei (evaluation package), and training speed.

``gain``: trains the decoder (``mode="decoder"``, cached embeddings) of a random-weight model
on the four 256 x 256 tiles of the StarDist/DSB2018 image ``stardist/img2d.tif`` (125
nuclei) and scores the model before and after with
:func:`napari_segany.evaluation.evaluate` (interactive protocol, point and box starts) on
another image, ``stardist/tests_img2d.tif`` (65 nuclei) that training never saw.

``speed``: steps per second of the same training step (``objects`` objects of one plane,
first prompt + ``corrections`` rounds, AdamW) for

* ``decoder, cached``: decoder training on embeddings computed once (this package);
* ``decoder, encoder each step``: the same decoder training with the frozen image encoder
  run forward in every step, as trainers without an embedding cache do (apples to apples);
* ``full``: every weight trained, the encoder in every step (micro-sam's trainer default).

Random weights: compute cost does not depend on weight values, so timings hold for real
checkpoints; the gain of training a random-weight decoder proves the machinery, not that
fine-tuning helps a real model.

    python bench/finetune_gain.py gain --model sam2_tiny --epochs 8
    python bench/finetune_gain.py speed --model sam_tiny --model sam2_tiny --steps 6
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _read(data: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    return (tifffile.imread(data / "stardist" / f"{name}.tif"),
            tifffile.imread(data / "stardist" / f"{name.replace('img', 'mask')}.tif"))


def _tiles(img: np.ndarray, lab: np.ndarray, size: int = 256) -> dict:
    out = {}
    for i in range(0, img.shape[0], size):
        for j in range(0, img.shape[1], size):
            out[f"img2d[{i}:{i + size},{j}:{j + size}]"] = (img[i:i + size, j:j + size],
                                                         lab[i:i + size, j:j + size])
    return out


def _scores(res) -> dict:
    """Mean IoU after the first prompt and after the last correction, per model."""
    rows = res.rows
    out = {}
    for model in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == model]
        last = max(int(r["iteration"]) for r in mine)
        out[model] = {f"iou_it{k}": float(np.mean([float(r["iou"]) for r in mine
                                                   if int(r["iteration"]) == k]))
                      for k in (0, last)}
    return out


def gain(args) -> dict:
    from napari_segany.engine import load_model
    from napari_segany.evaluation import InteractiveSettings, Sample, evaluate
    from napari_segany.finetune import FinetuneSettings, finetune

    img, lab = _read(args.data, "img2d")
    held_img, held_lab = _read(args.data, "tests_img2d")
    held = Sample("tests_img2d (held out)", held_img, held_lab)
    base = load_model(args.model[0], random_weights=True, device="cpu")
    s = FinetuneSettings(epochs=args.epochs, lr=args.lr, objects_per_step=args.objects,
                         n_corrections=args.corrections, val_fraction=0, patience=None)
    work = Path(tempfile.mkdtemp(prefix="ft-gain-"))
    t0 = time.perf_counter()
    res = finetune(_tiles(img, lab), base, out=work / "ft", val=held, settings=s)
    train_s = time.perf_counter() - t0
    out = {"model": args.model[0], "settings": s.to_dict(), "train_seconds": train_s,
           "log": res.log, "evaluation": {}}
    for start in ("point", "box"):
        ev = evaluate(held, [base, res.backend], protocol="interactive",
                      settings=InteractiveSettings(start=start, n_iterations=args.iterations),
                      out=work / f"eval-{start}", plots=False)
        out["evaluation"][start] = _scores(ev)
        print(ev.table(), flush=True)
    print(json.dumps(out["evaluation"], indent=1))
    return out


def _time_steps(backend, mode: str, encoder_in_loop: bool, plane, args) -> dict:
    import torch

    from napari_segany.finetune import FinetuneSettings, TrainableModel
    from napari_segany.finetune import train as T

    s = FinetuneSettings(mode=mode, objects_per_step=args.objects,
                         n_corrections=args.corrections,
                         encoder_in_loop=encoder_in_loop and mode == "decoder")
    tm = TrainableModel(backend, mode)
    L = min(s.loss_size, tm.image_size)
    t0 = time.perf_counter()
    (pd,) = T._embed_planes(tm, [plane], L, None, None, encode=mode != "decoder"
                            or encoder_in_loop)
    prep = time.perf_counter() - t0
    opt = torch.optim.AdamW(list(tm.trainable().values()), lr=1e-5)
    rng = np.random.default_rng(0)
    times = []
    for step in range(args.steps + 1):  # the first step warms up
        idx = rng.permutation(len(pd))[: args.objects]
        t0 = time.perf_counter()
        loss = T._step_loss(tm, pd, idx, step, rng, s, L, None)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    per = float(np.median(times[1:]))
    return {"prepare_s": prep, "step_s": per, "steps_per_s": 1 / per,
            "objects": len(pd)}


def speed(args) -> dict:
    import copy

    from napari_segany.engine import load_model
    from napari_segany.finetune import training_planes

    img, lab = _read(args.data, "img2d")
    (plane,) = training_planes((img[:256, :256], lab[:256, :256]))
    out = {}
    for name in args.model:
        base = load_model(name, random_weights=True, device="cpu")
        rows = {}
        for label, mode, loop in (("decoder, cached", "decoder", False),
                                  ("decoder, encoder each step", "decoder", True),
                                  ("full (micro-sam default)", "full", True))[:args.configs]:
            rows[label] = _time_steps(copy.deepcopy(base), mode, loop, plane, args)
            print(name, label, {k: round(v, 3) for k, v in rows[label].items()}, flush=True)
        n_steps = -(-rows["decoder, cached"]["objects"] // args.objects)
        for r in rows.values():
            r["epoch_s"] = r["prepare_s"] + n_steps * r["step_s"]
        out[name] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["gain", "speed"])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--objects", type=int, default=16)
    ap.add_argument("--corrections", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=2, help="evaluation corrections")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", type=int, default=3,
                    help="speed: the first N of cached / encoder each step / full")
    args = ap.parse_args()
    args.model = args.model or (["sam2_tiny"] if args.what == "gain" else ["sam_tiny",
                                                                          "sam2_tiny"])
    import torch

    torch.set_num_threads(args.threads)
    payload = gain(args) if args.what == "gain" else speed(args)
    kept = {k: v for k, v in vars(args).items() if k != "data"}  # no local paths
    name = f"finetune_{args.what}_{'_'.join(args.model)}"
    path = write_json(f"{name}.json", {"args": kept, "results": payload})
    print("wrote", path)


if __name__ == "__main__":
    main()
