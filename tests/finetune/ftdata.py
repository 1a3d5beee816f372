"""Small annotated images for the fine-tuning tests (bright discs on noise)."""

from __future__ import annotations

import numpy as np

from napari_segany.finetune import FinetuneSettings

#: A few quick steps: 4 objects per step, one correction, the loss in a 64-pixel frame.
FAST = FinetuneSettings(epochs=2, lr=1e-3, objects_per_step=4, n_corrections=1,
                        val_fraction=0, patience=None, warmup=0, loss_size=64,
                        max_val_objects=4)


def discs(n: int = 4, size: int = 64, seed: int = 0, radius: int = 7):
    """A uint8 image of ``n`` bright discs on noise and its instance labels."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, (size, size)).astype(np.uint8)
    lab = np.zeros((size, size), np.uint16)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy = 12 + (i % 2) * 32 + int(rng.integers(-3, 4))
        cx = 12 + (i // 2) * 32 + int(rng.integers(-3, 4))
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        lab[m] = i + 1
        img[m] = 200 + int(rng.integers(0, 40))
    return img, lab


def dataset(k: int = 2):
    return {f"img{i}": discs(seed=i) for i in range(k)}
