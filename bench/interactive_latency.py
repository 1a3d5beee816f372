"""Interactive latency: one click -> mask on a plane whose embedding is ready.

Ours, end to end: napari-style Points data ``(z, y, x)`` -> ``prompts.points_to_prompts``
-> ``Session.segment`` (decoder call, best of 3 candidates) -> mask written into a numpy
preview array (what the widget shows). Peer: the raw library's predictor alone on the
same model object and the same embedded plane (``SamPredictor.predict`` /
``SAM2ImagePredictor.predict``, points already in (x, y) pixels, no preview write).
The two are timed alternately, click after click, and the medians compared.

    python bench/interactive_latency.py --models sam_vit_b sam2.1_hiera_tiny --repeats 30

Ours runs at ``precision="auto"`` (bf16 autocast on CPUs with native bf16); the peer's
``predict`` runs the same model in float32, as its documentation shows on a CPU.

Writes ``interactive_latency.json``. Random weights (cost does not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WEIGHTS_NOTE, synthetic_volume, write_json  # noqa: E402


def bench_model(name: str, repeats: int, size: int, planes: int) -> dict:
    import numpy as np

    from napari_segany import Session, load_model
    from napari_segany.prompts import points_to_prompts

    backend = load_model(name, random_weights=True, device="cpu")
    vol = synthetic_volume(planes, size)
    z = planes // 2
    session = Session(vol, backend)
    t0 = time.perf_counter()
    session.embedding((z,))
    t_embed = time.perf_counter() - t0
    rgb = session.plane_rgb((z,))
    if backend.family == "sam":
        from segment_anything import SamPredictor

        peer = SamPredictor(backend.model)
    else:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        peer = SAM2ImagePredictor(backend.model)
        peer._bb_feat_sizes = backend.predictor._bb_feat_sizes  # only differs for sam2_tiny
    peer.set_image(rgb)  # the peer's own embedding of the same plane (not timed)
    preview = np.zeros((size, size), np.uint8)
    rng = np.random.default_rng(1)
    clicks = rng.uniform(0.1 * size, 0.9 * size, (repeats + 3, 2))  # (y, x)

    def ours(y: float, x: float) -> None:
        prompts = points_to_prompts(np.array([[z, y, x]]), image_shape=vol.shape,
                                    labels=[True])
        seg = session.segment(prompts, (z,))[1]
        preview[...] = 0
        preview[seg.mask] = 1

    def raw(y: float, x: float) -> None:
        peer.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]),
                     multimask_output=True)

    t_ours, t_raw = [], []
    for i, (y, x) in enumerate(clicks):
        order = (("ours", ours), ("raw", raw)) if i % 2 else (("raw", raw), ("ours", ours))
        for who, fn in order:
            t = time.perf_counter()
            fn(float(y), float(x))
            dt = time.perf_counter() - t
            if i >= 3:  # warm-up clicks are not counted
                (t_ours if who == "ours" else t_raw).append(dt)
    peer_name = "SamPredictor.predict" if backend.family == "sam" else "SAM2ImagePredictor.predict"
    mo, mr = statistics.median(t_ours), statistics.median(t_raw)
    return {"model": name, "peer": peer_name, "plane": [size, size], "repeats": repeats,
            "ours_precision": backend.precision,
            "embed_s": round(t_embed, 2), "ours_median_ms": round(mo * 1e3, 1),
            "raw_median_ms": round(mr * 1e3, 1), "ratio": round(mo / mr, 3),
            "ours_p90_ms": round(sorted(t_ours)[int(0.9 * len(t_ours))] * 1e3, 1),
            "raw_p90_ms": round(sorted(t_raw)[int(0.9 * len(t_raw))] * 1e3, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["sam_vit_b", "sam2.1_hiera_tiny"])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--planes", type=int, default=4, help="planes of the synthetic volume")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    for name in args.models:
        rows.append(bench_model(name, args.repeats, args.size, args.planes))
        print(rows[-1], flush=True)
    print(f"\nOne click -> mask, embedding ready, {args.size}x{args.size} plane, CPU; "
          f"{WEIGHTS_NOTE}")
    print(f"{'model':>20} {'peer':>28} {'ours ms':>8} {'raw ms':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:>20} {r['peer']:>28} {r['ours_median_ms']:>8.1f} "
              f"{r['raw_median_ms']:>8.1f} {r['ratio']:>6.2f}")
    path = write_json("interactive_latency.json", {"rows": rows, "target_ratio_max": 1.15},
                      args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
