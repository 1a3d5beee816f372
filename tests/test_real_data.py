"""End-to-end runs on real data (skipped when the shared data folder is absent).

The data folder is ``../shared/data`` beside the repository, or ``$NAPARI_SEGANY_TEST_DATA``.
Models are tiny random-weight architectures, so these tests check that whole real volumes
and videos flow through propagation and land in the labels store, not mask quality.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.engine import load_model
from napari_segany.intensity import Normalizer
from napari_segany.io import read_image
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.propagate import SliceSettings
from napari_segany.session import Session
from napari_segany.storage import LabelsStore
from testdata import DATA

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent"),
]
NEVER_STOP = SliceSettings(min_score=-np.inf, min_area=0, max_area_ratio=np.inf)


def _box_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


@pytest.fixture(scope="module")
def spleen():
    ct = read_image(DATA / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz")
    gt = read_image(DATA / "msd_spleen_crop" / "sub-spleen2_ct_seg-manual.nii.gz")
    return ct, np.asarray(gt.data) > 0


@pytest.mark.parametrize("method,model", [("slice", "sam_tiny"), ("sam2", "sam2_tiny")])
def test_ct_spleen_propagation_writes_every_plane(spleen, tmp_path, method, model):
    ct, gt = spleen
    assert ct.data.shape == (26, 166, 164) and ct.spacing[0] == 5.0
    backend = load_model(model, random_weights=True, device="cpu")
    norm = Normalizer.fit(ct.data, mode="window", window="ct_soft_tissue")
    session = Session(ct.data, backend, normalizer=norm, labels=tmp_path / "spleen.zarr",
                      cache=tmp_path / "cache.zarr")
    z = int(np.argmax(gt.reshape(26, -1).sum(1)))
    prompts = PromptSet()
    prompts.add((z,), 1, ObjectPrompt(box=_box_of(gt[z])))
    written = session.propagate(prompts, method=method, settings=NEVER_STOP)
    assert sorted(written[1]) == [(k,) for k in range(26)]
    store = LabelsStore.open(tmp_path / "spleen.zarr")
    assert len(store.provenance["planes"]) == 26
    assert store.provenance["model"]["name"] == model
    assert store.provenance["normalization"]["mode"] == "window"
    # every plane was embedded exactly once and cached
    assert len(session.cache.computed_planes()) == 26


def test_davis_video_sam2_writes_every_frame(tmp_path):
    frames = read_image(DATA / "davis_car-shadow" / "JPEGImages" / "480p" / "car-shadow")
    masks = read_image(DATA / "davis_car-shadow" / "Annotations" / "480p" / "car-shadow")
    assert frames.rgb and frames.data.shape == (40, 480, 854, 3)
    backend = load_model("sam2_tiny", random_weights=True, device="cpu")
    session = Session(frames.data, backend, rgb=True, labels=tmp_path / "car.zarr")
    first = np.asarray(masks.data[0])
    first = (first.max(axis=-1) if first.ndim == 3 else first) > 0
    prompts = PromptSet()
    prompts.add((0,), 1, ObjectPrompt(mask=first))
    done = []
    written = session.propagate(prompts, method="sam2", progress=lambda d, t: done.append(d))
    assert sorted(written[1]) == [(t,) for t in range(40)]
    assert done[-1] == 40
    store = LabelsStore.open(tmp_path / "car.zarr")
    assert store.shape == (40, 480, 854)
    assert len(store.provenance["planes"]) == 40
