"""Embedding throughput over a stack: our cache precompute (with zarr writes) vs set_image.

Ours: ``EmbeddingCache.precompute()`` over every plane of an in-memory (n, H, W) uint16
stack: read plane, normalise, embed, write the features to the on-disk zarr cache (float16)
and mark the plane done. Peer: a loop of the raw predictor's ``set_image`` on the same
normalised planes (the features are left in memory and overwritten by the next plane; no
persistence). Both include the same intensity normalisation of each plane. Ours is run
twice per round: with the cache's default overlapped writes (the zarr write of plane k runs
in a background thread while plane k+1 is embedded) and with serial writes
(``EmbeddingCache.overlap_writes = False``). The sides alternate order between rounds and
the best round of each is kept (the median round is reported too; on a shared machine the best
round is the least disturbed one).

    python bench/embed_throughput.py --model sam2.1_hiera_tiny --planes 4 --rounds 5
    python bench/embed_throughput.py --model sam_vit_b --planes 2 --rounds 1
    python bench/embed_throughput.py --model sam_vit_b --int8 --rounds 2   # int8 encoder

Ours runs at ``precision="auto"`` (bf16 autocast on CPUs with native bf16, see
``napari_segany.engine.device``); the raw loop runs the same model in float32, as
segment-anything's and sam2's documentation show on a CPU.

On a GPU (``--device cuda --batch-size 8``) ours embeds ``batch_size`` planes per forward
pass under the backend's bf16 autocast; the raw loop runs as the libraries' notebooks do
(SAM2: bfloat16 autocast and TF32; segment-anything: float32), one plane per call, and
both sides synchronise the device before the clock stops.

Writes/updates ``embed_throughput.json`` (rows keyed by model and device). Random weights
(cost does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, WEIGHTS_NOTE, synthetic_volume, write_json  # noqa: E402


def bench(name: str, planes: int, size: int, rounds: int, device: str = "cpu",
          batch_size: int = 1) -> dict:
    import contextlib

    import torch

    from napari_segany import load_model
    from napari_segany.intensity import Normalizer
    from napari_segany.storage import EmbeddingCache

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device == "cuda"
    backend = load_model(name, random_weights=True, device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    peer_amp = contextlib.nullcontext
    if cuda and backend.family == "sam2":  # as in SAM2's notebooks
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

        def peer_amp():
            return torch.autocast("cuda", dtype=torch.bfloat16)
    vol = synthetic_volume(planes, size)
    norm = Normalizer.fit(vol)
    if backend.family == "sam":
        from segment_anything import SamPredictor

        peer = SamPredictor(backend.model)
    else:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        peer = SAM2ImagePredictor(backend.model)
        peer._bb_feat_sizes = backend.predictor._bb_feat_sizes
    backend.embed(norm(vol[0]))  # warm-up (first-call allocations), not timed
    with peer_amp():
        peer.set_image(norm(vol[0]))

    cpu: dict[str, list[float]] = {"raw": [], "ours": [], "serial": []}

    def raw() -> float:
        c, t = time.process_time(), time.perf_counter()
        with peer_amp():
            for k in range(planes):
                peer.set_image(norm(vol[k]))
        sync()
        cpu["raw"].append(time.process_time() - c)
        return time.perf_counter() - t

    def ours(overlap: bool) -> tuple[float, int]:
        tmp = Path(tempfile.mkdtemp(prefix="segany-cache-"))
        try:
            c, t = time.process_time(), time.perf_counter()
            cache = EmbeddingCache(tmp / "c.zarr", backend=backend, normalizer=norm, data=vol)
            cache.overlap_writes = overlap
            n = cache.precompute(batch_size=batch_size)
            sync()
            dt = time.perf_counter() - t
            cpu["ours" if overlap else "serial"].append(time.process_time() - c)
            nbytes = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
            assert n == planes and len(cache.computed_planes()) == planes
            return dt, nbytes
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    t_raw, t_ours, t_serial, nbytes = [], [], [], 0
    for r in range(rounds):
        seq = ("raw", "ours", "serial") if r % 2 == 0 else ("serial", "ours", "raw")
        for who in seq:
            if who == "raw":
                t_raw.append(raw())
            else:
                dt, nbytes = ours(overlap=who == "ours")
                (t_ours if who == "ours" else t_serial).append(dt)
        print({"round": r, "raw_s": t_raw[-1], "ours_s": t_ours[-1],
               "ours_serial_writes_s": t_serial[-1], "raw_cpu_s": cpu["raw"][-1],
               "ours_cpu_s": cpu["ours"][-1], "ours_serial_cpu_s": cpu["serial"][-1]},
              flush=True)
    import statistics

    best_raw, best_ours, best_serial = min(t_raw), min(t_ours), min(t_serial)
    med_raw, med_ours = statistics.median(t_raw), statistics.median(t_ours)
    return {"model": name, "device": device, "batch_size": batch_size, "planes": planes,
            "ours_precision": backend.precision,
            "plane": [size, size], "rounds": rounds,
            "raw_s": [round(t, 2) for t in t_raw], "ours_s": [round(t, 2) for t in t_ours],
            "ours_serial_writes_s": [round(t, 2) for t in t_serial],
            "raw_planes_per_s": round(planes / best_raw, 4),
            "ours_planes_per_s": round(planes / best_ours, 4),
            "ours_serial_planes_per_s": round(planes / best_serial, 4),
            "ratio": round(best_raw / best_ours, 3),
            "ratio_serial_writes": round(best_raw / best_serial, 3),
            "ratio_median_rounds": round(med_raw / med_ours, 3),
            "cache_mib": round(nbytes / 2**20, 1),
            # CPU time (process_time, all threads): the work done, robust on a shared machine
            "raw_cpu_s": [round(t, 2) for t in cpu["raw"]],
            "ours_cpu_s": [round(t, 2) for t in cpu["ours"]],
            "ours_serial_cpu_s": [round(t, 2) for t in cpu["serial"]],
            "ratio_cpu": round(min(cpu["raw"]) / min(cpu["ours"]), 3),
            "ratio_cpu_serial_writes": round(min(cpu["raw"]) / min(cpu["serial"]), 3)}


def int8_check(name: str, size: int, rounds: int) -> dict:
    """int8 dynamic quantisation of the image encoder's linear layers against float32 and bf16.

    ``torch.ao.quantization.quantize_dynamic`` replaces every ``nn.Linear`` of the image
    encoder (attention projections, MLPs: most of its multiply-adds) with an int8 kernel
    whose activations are quantised on the fly; attention products, convolutions and norms
    stay float32. Reports CPU seconds per plane (``time.process_time``, best of ``rounds``,
    the three variants alternating; run with ``OMP_NUM_THREADS=1``) and the agreement with
    float32: cosine of the image embedding, IoU of the
    masks of three prompts. Random weights: the rounding of trained weights differs, so the
    agreement is indicative only.
    """
    import copy

    import numpy as np
    import torch

    from napari_segany import load_model
    from napari_segany.intensity import Normalizer
    from napari_segany.prompts import ObjectPrompt

    fp32 = load_model(name, random_weights=True, device="cpu", precision="fp32")
    bf16 = load_model(name, random_weights=True, device="cpu", precision="bf16")
    int8 = load_model(name, random_weights=True, device="cpu", precision="fp32")
    int8.model.image_encoder = torch.ao.quantization.quantize_dynamic(
        copy.deepcopy(int8.model.image_encoder), {torch.nn.Linear}, dtype=torch.qint8)
    vol = synthetic_volume(1, size)
    plane = Normalizer.fit(vol)(vol[0])
    c = size / 2
    prompts = [ObjectPrompt(points=[[c, size * 0.3]], labels=[1]),
               ObjectPrompt(box=[c - 0.15 * size, 0.15 * size, c + 0.15 * size, 0.45 * size]),
               ObjectPrompt(points=[[c, size * 0.3], [10.0, 10.0]], labels=[1, 0])]
    variants = {"fp32": fp32, "bf16": bf16, "int8": int8}
    times: dict[str, list[float]] = {k: [] for k in variants}
    embs = {}
    for r in range(rounds + 1):  # round 0 warms up
        for k in (list(variants) if r % 2 else list(variants)[::-1]):
            t = time.process_time()  # CPU time: robust on a shared machine (one thread)
            embs[k] = variants[k].embed(plane)
            if r:
                times[k].append(time.process_time() - t)
    ref = embs["fp32"].to_numpy()["image_embed"].ravel().astype(np.float64)
    masks = {k: variants[k].predict(embs[k], prompts, multimask=False).masks[:, 0]
             for k in variants}
    row = {"model": name, "plane": [size, size], "rounds": rounds}
    for k in variants:
        e = embs[k].to_numpy()["image_embed"].ravel().astype(np.float64)
        ious = [float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))
                for a, b in zip(masks[k], masks["fp32"], strict=True)]
        row[k] = {"cpu_s_per_plane": round(min(times[k]), 2),
                  "speedup_vs_fp32": round(min(times["fp32"]) / min(times[k]), 2),
                  "cosine_vs_fp32": round(float(e @ ref / np.linalg.norm(e) / np.linalg.norm(ref)),
                                          6),
                  "mask_iou_vs_fp32": [round(x, 4) for x in ious]}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--planes", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--batch-size", type=int, default=1, help="planes per forward pass (ours)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--int8", action="store_true",
                    help="measure int8 dynamic quantisation of the encoder (CPU) instead")
    args = ap.parse_args()
    if args.int8:
        row = int8_check(args.model, args.size, args.rounds)
        print(json.dumps(row, indent=1))
        path = (args.out or RESULTS) / "int8_encoder.json"
        rows = json.loads(path.read_text())["rows"] if path.exists() else []
        rows = [r for r in rows if r["model"] != row["model"]] + [row]
        print(f"wrote {write_json('int8_encoder.json', {'rows': rows}, args.out)}")
        return
    row = bench(args.model, args.planes, args.size, args.rounds, args.device, args.batch_size)
    path = (args.out or RESULTS) / "embed_throughput.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in rows if (r["model"], r.get("device", "cpu"))
            != (row["model"], row["device"])] + [row]
    print(f"\nEmbedding a stack of {args.size}x{args.size} planes; {WEIGHTS_NOTE}")
    print(f"{'model':>20} {'device':>6} {'ours':>5} {'batch':>5} {'planes':>6}"
          f" {'set_image loop pl/s':>20}"
          f" {'ours+cache pl/s':>16} {'ours/raw':>9} {'median rounds':>14} {'serial writes':>14}")
    for r in rows:
        print(f"{r['model']:>20} {r.get('device', 'cpu'):>6} {r.get('ours_precision', '?'):>5} "
              f"{r.get('batch_size', 1):>5} "
              f"{r['planes']:>6} {r['raw_planes_per_s']:>20.3f} "
              f"{r['ours_planes_per_s']:>16.3f} {r['ratio']:>9.2f} "
              f"{r.get('ratio_median_rounds', float('nan')):>14.2f} "
              f"{r['ratio_serial_writes']:>14.2f}")
    print(f"wrote {write_json('embed_throughput.json', {'rows': rows}, args.out)}")


if __name__ == "__main__":
    main()
