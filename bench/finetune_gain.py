"""Fine-tuning: the gain on held-out nuclei (evaluation package), and training speed.

``gain``: trains the decoder (``mode="decoder"``, cached embeddings) of a random-weight model
on ``--tile`` x ``--tile`` tiles of the StarDist/DSB2018 image ``stardist/img2d.tif`` (125
nuclei) and scores the model before and after with
:func:`napari_segany.evaluation.evaluate` (interactive protocol, point and box starts) on
tiles of another image, ``stardist/tests_img2d.tif`` (65 nuclei), that training never saw.

``speed``: seconds per training step (``objects`` objects of one plane, first prompt +
``corrections`` rounds, forward, backward and AdamW) for each count of ``--objects``:

* ``decoder, cached``: decoder training on embeddings computed once (this package);
* ``decoder, encoder each step``: the same decoder training with the frozen image encoder
  run forward in every step, as trainers without an embedding cache do (apples to apples);
* ``full`` (``--full``): every weight trained, the encoder in every step (micro-sam's
  trainer default).

Every side runs at the same precision (``--precision``, float32 by default) and with
torch's default threads. Random weights: compute cost does not depend on weight values, so
timings hold for real checkpoints; the gain of training a random-weight decoder proves the
machinery, not that fine-tuning helps a real model.

    python bench/finetune_gain.py gain --model sam2_tiny --epochs 3 --corrections 1
    python bench/finetune_gain.py speed --model sam_vit_b --model sam2.1_hiera_tiny \
        --objects 1,4,8,16 --steps 2 --corrections 1 --full
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


def _tiles(img: np.ndarray, lab: np.ndarray, size: int = 256, name: str = "img2d") -> dict:
    out = {}
    for i in range(0, img.shape[0] - size + 1, size):
        for j in range(0, img.shape[1] - size + 1, size):
            if lab[i:i + size, j:j + size].any():
                out[f"{name}[{i}:{i + size},{j}:{j + size}]"] = (img[i:i + size, j:j + size],
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
    from napari_segany.evaluation import InteractiveSettings, evaluate
    from napari_segany.finetune import FinetuneSettings, finetune

    img, lab = _read(args.data, "img2d")
    held_img, held_lab = _read(args.data, "tests_img2d")
    train = _tiles(img, lab, args.tile, "img2d")
    held = _tiles(held_img, held_lab, args.tile, "tests_img2d")
    base = load_model(args.model[0], random_weights=True, device=args.device,
                      precision=args.precision)
    s = FinetuneSettings(epochs=args.epochs, lr=args.lr, objects_per_step=int(args.objects),
                         n_corrections=args.corrections, val_fraction=0, patience=None,
                         loss_size=128, max_val_objects=64)
    work = Path(tempfile.mkdtemp(prefix="ft-gain-"))
    t0 = time.perf_counter()
    res = finetune(train, base, out=work / "ft", val=held, settings=s)
    train_s = time.perf_counter() - t0
    out = {"model": args.model[0], "tile": args.tile, "train_tiles": len(train),
           "held_out_tiles": len(held), "settings": s.to_dict(), "train_seconds": train_s,
           "log": res.log, "evaluation": {}}
    for start in ("point", "box"):
        ev = evaluate(held, [base, res.backend], protocol="interactive",
                      settings=InteractiveSettings(start=start, n_iterations=args.iterations),
                      out=work / f"eval-{start}", plots=False)
        out["evaluation"][start] = _scores(ev)
        print(ev.table(), flush=True)
    print(json.dumps(out["evaluation"], indent=1))
    return out


def _time_steps(backend, mode: str, encoder_in_loop: bool, plane, args, objects: int) -> dict:
    import torch

    from napari_segany.finetune import FinetuneSettings, TrainableModel
    from napari_segany.finetune import train as T

    s = FinetuneSettings(mode=mode, objects_per_step=objects,
                         n_corrections=args.corrections,
                         encoder_in_loop=encoder_in_loop and mode == "decoder")
    tm = TrainableModel(backend, mode)
    L = min(s.loss_size, tm.image_size)
    dtype = T._train_dtype(backend)
    t0 = time.perf_counter()
    (pd,) = T._embed_planes(tm, [plane], L, None, None, encode=mode != "decoder"
                            or encoder_in_loop)
    prep = time.perf_counter() - t0
    opt = torch.optim.AdamW(list(tm.trainable().values()), lr=1e-5)
    rng = np.random.default_rng(0)
    times = []
    for step in range(args.steps + 1):  # the first step warms up
        idx = rng.permutation(len(pd))[:objects]
        t0 = time.perf_counter()
        T.train_step(tm, pd, idx, step, rng, s, L, dtype)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    per = float(np.median(times[1:]))
    n_steps = -(-len(pd) // objects)
    return {"prepare_s": prep, "step_s": per, "steps_per_s": 1 / per, "objects": len(pd),
            "steps_per_epoch": n_steps, "epoch_s": prep + n_steps * per,
            "all_step_s": times[1:]}


CONFIGS = (("decoder, cached", "decoder", False),
           ("decoder, encoder each step", "decoder", True),
           ("full, encoder trained (micro-sam's default)", "full", True))


def speed(args) -> dict:
    import copy

    from napari_segany.engine import load_model
    from napari_segany.finetune import training_planes

    img, lab = _read(args.data, "img2d")
    (plane,) = training_planes((img[:256, :256], lab[:256, :256]))
    out = {}
    counts = [int(k) for k in str(args.objects).split(",")]
    for name in args.model:
        base = load_model(name, random_weights=True, device=args.device,
                          precision=args.precision)
        rows: dict = {}
        for k in counts:  # both sides per batch size, one after the other
            for label, mode, loop in CONFIGS[:2]:
                r = _time_steps(copy.deepcopy(base), mode, loop, plane, args, k)
                rows[f"{label}, {k} objects"] = r
                print(name, label, k, {a: round(b, 3) for a, b in r.items()
                                       if isinstance(b, float)}, flush=True)
        if args.full:
            k = counts[len(counts) // 2]
            label, mode, loop = CONFIGS[2]
            r = _time_steps(copy.deepcopy(base), mode, loop, plane, args, k)
            rows[f"{label}, {k} objects"] = r
            print(name, label, k, round(r["step_s"], 3), flush=True)
        out[name] = rows
        print(f"\n| {name} | objects / step | cached (s / step) | encoder each step "
              f"(s / step) | ratio | epoch cached (s) | epoch encoder each step (s) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for k in counts:
            c, e = rows[f"{CONFIGS[0][0]}, {k} objects"], rows[f"{CONFIGS[1][0]}, {k} objects"]
            print(f"| | {k} | {c['step_s']:.2f} | {e['step_s']:.2f} | "
                  f"{e['step_s'] / c['step_s']:.1f}x | {c['epoch_s']:.1f} | "
                  f"{e['epoch_s']:.1f} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["gain", "speed"])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--tile", type=int, default=64,
                    help="gain: train and test on tiles of this size (64: the tiny test "
                         "architectures' 16-px patches then resolve the nuclei)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--objects", default="16",
                    help="objects per step; speed: a comma-separated list, e.g. 1,4,8,16")
    ap.add_argument("--corrections", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=2, help="evaluation corrections")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's own setting)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "auto", "bf16"],
                    help="the same on every side (auto: bf16 on CPUs with native bf16)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    ap.add_argument("--full", action="store_true",
                    help="speed: also full training (encoder trained), at the middle count")
    args = ap.parse_args()
    args.model = args.model or (["sam2_tiny"] if args.what == "gain" else ["sam_tiny",
                                                                          "sam2_tiny"])
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    payload = gain(args) if args.what == "gain" else speed(args)
    kept = {k: v for k, v in vars(args).items() if k != "data"}  # no local paths
    name = f"finetune_{args.what}_{'_'.join(args.model)}" + (
        "" if args.precision == "fp32" else f"_{args.precision}")
    path = write_json(f"{name}.json", {"args": kept, "results": payload})
    print("wrote", path)


if __name__ == "__main__":
    main()
