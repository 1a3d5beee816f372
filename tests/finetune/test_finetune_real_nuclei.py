"""Fine-tuning on real nuclei (StarDist / DSB2018, the shared data): decoder training of the
tiny random-init architectures lowers the training loss and raises the IoU on nuclei of
another image that training never saw.

The images are cut into 64 x 64 tiles: the tiny test architectures see a 256-pixel input in
16-pixel patches, so a tile is shown at 4x and a nucleus spans a few patches (on a whole
256 x 256 tile it is one patch and a random encoder gives the decoder nothing to learn
from). Measured here (2 epochs, seed 0, 2 torch threads): held-out IoU 0.015 -> 0.117
(sam_tiny) and 0.021 -> 0.156 (sam2_tiny); the asserted margins are well below.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.finetune import FinetuneSettings, finetune
from testdata import DATA

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not (DATA / "stardist" / "img2d.tif").is_file(),
                                 reason="the shared real data (stardist) is absent")]

SETTINGS = FinetuneSettings(epochs=2, lr=1e-3, objects_per_step=16, n_corrections=1,
                            val_fraction=0, patience=None, warmup=0, loss_size=128,
                            max_val_objects=64, seed=0)


def _tiles(name: str, size: int = 64) -> dict:
    import tifffile

    img = tifffile.imread(DATA / "stardist" / f"{name}.tif")
    lab = tifffile.imread(DATA / "stardist" / f"{name.replace('img', 'mask')}.tif")
    out = {}
    for i in range(0, img.shape[0] - size + 1, size):
        for j in range(0, img.shape[1] - size + 1, size):
            if lab[i:i + size, j:j + size].any():
                out[f"{name}[{i},{j}]"] = (img[i:i + size, j:j + size],
                                           lab[i:i + size, j:j + size])
    return out


@pytest.mark.parametrize("model, gain", [("sam_tiny", 0.05), ("sam2_tiny", 0.06)])
def test_decoder_training_raises_the_iou_on_held_out_nuclei(model, gain, tmp_path, request):
    backend = request.getfixturevalue("sam" if model == "sam_tiny" else "sam2")
    train, held = _tiles("img2d"), _tiles("tests_img2d")
    assert len(train) > 40 and len(held) > 10
    res = finetune(train, backend, out=tmp_path, val=held, settings=SETTINGS)
    losses = [r["train_loss"] for r in res.log[1:]]
    before, after = res.log[0]["val_iou"], res.best["val_iou"]
    assert losses[-1] < losses[0] - 0.03, losses  # measured: 1.24 -> 1.15, 1.22 -> 1.15
    assert after > before + gain, res.log
    # the held-out nuclei are another image: no plane of it was trained on
    assert not set(res.metadata["data"]["train"]) & set(res.metadata["data"]["val"])
    assert res.metadata["data"]["val_objects"] >= 50
    assert np.isfinite(losses).all()
