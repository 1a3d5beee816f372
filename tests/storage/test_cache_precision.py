"""The embedding cache records the compute precision and serves the other precisions."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_segany.engine import load_model
from napari_segany.intensity import Normalizer
from napari_segany.prompts import ObjectPrompt
from napari_segany.session import Session
from napari_segany.storage import CacheMismatchError, EmbeddingCache
from napari_segany.storage.cache import ATTRS_KEY
from napari_segany.storage.labels import LabelsStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOLUME = np.random.default_rng(0).integers(100, 4000, size=(3, 48, 56)).astype(np.uint16)


@pytest.fixture(scope="module")
def models():
    return {p: load_model("sam_tiny", random_weights=True, device="cpu", precision=p)
            for p in ("fp32", "bf16")}


def _attrs(path):
    return dict(zarr.open_group(str(path), mode="r").attrs[ATTRS_KEY])


def test_precision_recorded_and_another_precision_served(tmp_path, models):
    norm = Normalizer.fit(VOLUME)
    path = tmp_path / "cache.zarr"
    bf16 = EmbeddingCache(path, backend=models["bf16"], normalizer=norm, data=VOLUME)
    assert bf16.signature["model"]["precision"] == "bf16"
    assert bf16.precisions == []  # nothing computed yet
    first = bf16.get(0)
    assert _attrs(path)["precisions"] == ["bf16"]

    fp32 = EmbeddingCache(path, backend=models["fp32"], normalizer=norm, data=VOLUME)  # not refused
    assert fp32.precisions == ["bf16"]
    again = fp32.get(0)  # the bf16 plane is read, not recomputed
    assert fp32.stats == {"computed": 0, "loaded": 1}
    np.testing.assert_array_equal(again.to_numpy()["image_embed"],
                                  first.to_numpy()["image_embed"].astype(np.float32))
    fp32.get(1)
    assert _attrs(path)["precisions"] == ["bf16", "fp32"]
    # the signature stored at creation is unchanged: the creator's precision stays on record
    assert _attrs(path)["signature"]["model"]["precision"] == "bf16"


def test_other_model_differences_still_refused(tmp_path, models):
    norm = Normalizer.fit(VOLUME)
    EmbeddingCache(tmp_path / "c", backend=models["bf16"], normalizer=norm, data=VOLUME)
    seed1 = load_model("sam_tiny", random_weights=True, device="cpu", seed=1, precision="fp32")
    with pytest.raises(CacheMismatchError, match="weights random-seed0 vs random-seed1") as info:
        EmbeddingCache(tmp_path / "c", backend=seed1, normalizer=norm, data=VOLUME)
    assert "precision" not in str(info.value)


def test_cache_without_precision_opens(tmp_path, models):
    """A cache written before precisions were recorded opens and starts a record."""
    norm = Normalizer.fit(VOLUME)
    path = tmp_path / "old.zarr"
    EmbeddingCache(path, backend=models["fp32"], normalizer=norm, data=VOLUME)
    group = zarr.open_group(str(path), mode="r+")
    meta = dict(group.attrs[ATTRS_KEY])
    del meta["signature"]["model"]["precision"]
    group.attrs[ATTRS_KEY] = meta
    cache = EmbeddingCache(path, backend=models["bf16"], normalizer=norm, data=VOLUME)
    cache.get(2)
    assert _attrs(path)["precisions"] == ["bf16"]


def test_provenance_records_the_precision(tmp_path, models):
    session = Session(VOLUME, models["bf16"], labels=tmp_path / "labels.zarr")
    seg = session.segment(ObjectPrompt(points=[[20.0, 20.0]], labels=[1]), plane=(0,))[1]
    session.commit(seg)
    store = LabelsStore.open(tmp_path / "labels.zarr")
    assert store.provenance["model"]["precision"] == "bf16"
