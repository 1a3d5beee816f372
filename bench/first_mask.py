"""Time to first mask on a fresh volume: embed on demand vs precompute every plane first.

Ours: a new ``Session`` on a fresh (n, H, W) volume with an on-disk embedding cache; the user
clicks on plane n//2 and gets a mask (``points_to_prompts`` + ``Session.segment``): only that
plane is embedded. The timer includes building the session (intensity fit, cache signature).
Peer: what micro-sam's annotators do before the first click: embed every plane (a loop of
the raw predictor's ``set_image`` keeping each plane's features), then predict the click.

Precomputing many planes on a CPU takes minutes; ``--measure-planes k`` embeds only ``k``
planes and extrapolates the precompute linearly to ``n`` (per-plane time x n), and says so.

    python bench/first_mask.py --model sam2.1_hiera_tiny --planes 64 --measure-planes 64

Writes ``first_mask.json``. Random weights (cost does not depend on them).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WEIGHTS_NOTE, synthetic_volume, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--planes", type=int, default=64)
    ap.add_argument("--measure-planes", type=int, default=None,
                    help="planes actually precomputed for the peer (default: all)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import numpy as np

    from napari_segany import Session, load_model
    from napari_segany.intensity import Normalizer
    from napari_segany.prompts import points_to_prompts

    n, size = args.planes, args.size
    k = min(n, args.measure_planes or n)
    backend = load_model(args.model, random_weights=True, device="cpu")
    vol = synthetic_volume(n, size)
    z, click = n // 2, np.array([[n // 2, size * 0.5, size * 0.5]])
    backend.embed(np.zeros((size, size, 3), np.uint8))  # warm-up, not timed

    # ours: embed on demand
    tmp = Path(tempfile.mkdtemp(prefix="segany-ttfm-"))
    try:
        t0 = time.perf_counter()
        session = Session(vol, backend, cache=tmp / "cache.zarr")
        seg = session.segment(points_to_prompts(click, image_shape=vol.shape), (z,))[1]
        t_ours = time.perf_counter() - t0
        assert seg.mask.shape == (size, size) and session.embeddings_computed == 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # peer: precompute every plane, then predict
    if backend.family == "sam":
        from segment_anything import SamPredictor

        peer = SamPredictor(backend.model)

        def features() -> object:
            return (peer.features, peer.original_size, peer.input_size)
    else:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        peer = SAM2ImagePredictor(backend.model)
        peer._bb_feat_sizes = backend.predictor._bb_feat_sizes

        def features() -> object:
            return (peer._features, peer._orig_hw)
    t0 = time.perf_counter()
    norm = Normalizer.fit(vol)
    t_fit = time.perf_counter() - t0
    kept, per_plane = {}, []
    for p in range(k):
        t = time.perf_counter()
        peer.set_image(norm(vol[p]))
        kept[p] = features()
        per_plane.append(time.perf_counter() - t)
    if z >= k:  # the clicked plane must be embedded; its cost is in the extrapolation
        peer.set_image(norm(vol[z]))
    t = time.perf_counter()
    peer.predict(point_coords=click[:, [2, 1]], point_labels=np.array([1]),
                 multimask_output=True)
    t_predict = time.perf_counter() - t
    t_pre_measured = sum(per_plane)
    t_pre = t_pre_measured * n / k
    t_peer = t_fit + t_pre + t_predict
    row = {"model": args.model, "planes": n, "plane": [size, size],
           "peer_planes_measured": k, "extrapolated": k < n,
           "ours_s": round(t_ours, 2), "peer_precompute_s": round(t_pre, 1),
           "peer_precompute_measured_s": round(t_pre_measured, 1),
           "peer_s_per_plane": round(t_pre_measured / k, 2), "peer_s": round(t_peer, 1),
           "ratio_peer_over_ours": round(t_peer / t_ours, 1)}
    print(row)
    print(f"\nTime to first mask, fresh {n}-plane {size}x{size} volume, {args.model}, CPU; "
          f"{WEIGHTS_NOTE}")
    print(f"ours (embed the clicked plane only): {t_ours:.1f} s")
    print(f"precompute all {n} planes, then click: {t_peer:.1f} s"
          + (f" (precompute measured on {k} planes, scaled x{n / k:.2f})" if k < n else ""))
    print(f"ratio: {t_peer / t_ours:.1f}x")
    print(f"wrote {write_json('first_mask.json', {'rows': [row]}, args.out)}")


if __name__ == "__main__":
    main()
