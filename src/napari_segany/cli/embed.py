"""``napari-segany embed``: every plane's embedding into a resumable cache."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..session import Session
from ._common import (
    Progress,
    add_image_argument,
    add_intensity_options,
    add_model_options,
    build_normalizer,
    load_backend,
    load_image,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    emb = sub.add_parser(
        "embed", help="precompute the embeddings of every plane into a cache",
        description="Embed every plane into the cache folder DIR. Resumable: planes already "
                    "cached are skipped, so a second run computes nothing. Use the same "
                    "model and intensity options with 'propagate --cache DIR'.")
    add_image_argument(emb)
    emb.add_argument("--cache", type=Path, required=True, help="embedding cache folder")
    emb.add_argument("--batch-size", type=int, default=1,
                     help="planes per forward pass (larger is faster on a GPU)")
    emb.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_intensity_options(emb)
    add_model_options(emb)
    emb.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    image, rgb, _ = load_image(args)
    normalizer = build_normalizer(args, image, rgb)
    backend = load_backend(args)
    session = Session(image, backend, rgb=rgb, normalizer=normalizer, cache=args.cache)
    t0 = time.perf_counter()
    with Progress("embedding", quiet=args.quiet) as bar:
        n = session.precompute(batch_size=args.batch_size, progress=bar)
    cache = session.cache
    total = int(np.prod(cache.lead_shape)) if cache.lead_shape else 1
    print(f"computed {n} plane embeddings in {time.perf_counter() - t0:.1f} s with "
          f"{backend.name} on {backend.device}; {len(cache.computed_planes())} of {total} "
          f"planes cached in {args.cache}")
    return 0
