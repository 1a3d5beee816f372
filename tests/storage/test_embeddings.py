"""Embeddings in memory (napari_segany.storage.embeddings): the LRU over the cache or the
backend that a Session and TiledEmbeddings share."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany.intensity import Normalizer
from napari_segany.storage import EmbeddingCache, EmbeddingLRU, PlaneEmbeddings, PlaneSource
from rule_backend import RuleBackend


def test_lru_keeps_the_most_recent_and_counts_work():
    made = []
    lru = EmbeddingLRU(lambda k: made.append(k) or f"emb{k}", max_items=2)
    assert lru.get(1) == "emb1" and lru.get(2) == "emb2" and lru.get(1) == "emb1"
    assert made == [1, 2] and lru.stats == {"computed": 2, "loaded": 0}
    lru.get(3)  # drops 2, the least recently used
    assert lru.has(1) and lru.has(3) and not lru.has(2) and len(lru) == 2
    lru.get(2)
    assert made == [1, 2, 3, 2] and lru.stats["computed"] == 4


def test_plane_embeddings_read_through_the_disk_cache(tmp_path):
    vol = (np.arange(4 * 20 * 24) % 251).astype(np.uint8).reshape(4, 20, 24)
    backend = RuleBackend()
    norm = Normalizer.fit(vol)
    cache = EmbeddingCache(tmp_path / "c.zarr", backend=backend, normalizer=norm, data=vol)
    planes = PlaneEmbeddings(vol, backend, norm, cache=cache, max_in_memory=1)
    assert isinstance(planes, PlaneSource)
    assert planes.plane_keys_shape == (4,) and not planes.has_embedding(2)
    planes.embedding(2)
    planes.embedding(3)  # the in-memory copy of plane 2 is dropped ...
    assert planes.has_embedding(2)  # ... but it is on disk
    planes.embedding(2)
    assert planes.lru.stats == {"computed": 2, "loaded": 1}
    assert backend.embed_calls == 2
    np.testing.assert_array_equal(planes.plane_rgb(1), norm(vol[1]))
    with pytest.raises(ValueError, match="does not exist"):
        planes.embedding(4)
