"""Plane embeddings held in memory: a least-recently-used set over the backend and the disk cache.

:class:`EmbeddingLRU` keeps the last few embeddings of any keyed planes or tiles and gets
the others from an :class:`~napari_segany.storage.cache.EmbeddingCache` (which reads them
from disk or computes and stores them) or, without one, from the backend directly.
:class:`PlaneEmbeddings` is that for the planes of one image: the one object that turns an
image, a model and a normaliser into "the embedding of plane k". A
:class:`~napari_segany.session.Session` holds one; tiled embeddings hold an
:class:`EmbeddingLRU` over their tiles. The algorithms take anything that provides the
:class:`PlaneSource` protocol.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._planes import PlaneKey, check_plane
from ..engine.base import Backend, Embedding
from .cache import EmbeddingCache

__all__ = ["EmbeddingLRU", "PlaneEmbeddings", "PlaneSource"]


@runtime_checkable
class PlaneSource(Protocol):
    """What the algorithms need of an image and its model (a Session provides it)."""

    backend: Backend
    shape: tuple[int, ...]
    rgb: bool

    @property
    def plane_keys_shape(self) -> tuple[int, ...]:
        """Shape of the leading (plane-indexing) axes; ``()`` for a 2D image."""

    def check_plane(self, plane: Any) -> PlaneKey:
        """The key of an existing plane (ValueError otherwise)."""

    def plane_rgb(self, plane: Any = None) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 plane the model sees."""

    def embedding(self, plane: Any = None) -> Embedding:
        """The plane's embedding (computed once, then reused)."""


class EmbeddingLRU:
    """Embeddings by key: the ``max_items`` most recently used kept in memory.

    Parameters
    ----------
    compute : callable
        ``compute(key) -> Embedding`` for a key not in memory (used without ``cache``).
    cache : EmbeddingCache, optional
        Keys are then read from (or computed into) this on-disk cache.
    max_items : int
        Embeddings kept in memory.

    Attributes
    ----------
    stats : dict
        ``computed`` (embeddings the backend computed) and ``loaded`` (read from disk).
    """

    def __init__(self, compute: Callable[[Any], Embedding], *, cache: EmbeddingCache | None = None,
                 max_items: int = 8) -> None:
        self.compute, self.cache = compute, cache
        self.max_items = max(1, int(max_items))
        self._held: OrderedDict[Hashable, Embedding] = OrderedDict()
        self.stats = {"computed": 0, "loaded": 0}

    def has(self, key: Hashable) -> bool:
        """Whether ``key`` is ready without running the image encoder."""
        return key in self._held or (self.cache is not None and self.cache.has(key))

    def get(self, key: Hashable) -> Embedding:
        if key in self._held:
            self._held.move_to_end(key)
            return self._held[key]
        if self.cache is not None:
            before = dict(self.cache.stats)
            emb = self.cache.get(key)
            for k in self.stats:
                self.stats[k] += self.cache.stats[k] - before[k]
        else:
            emb = self.compute(key)
            self.stats["computed"] += 1
        self._held[key] = emb
        while len(self._held) > self.max_items:
            self._held.popitem(last=False)
        return emb

    def __len__(self) -> int:
        return len(self._held)


class PlaneEmbeddings:
    """The planes of one image as the model sees them, and their embeddings.

    Parameters
    ----------
    image : array-like
        ``(..., H, W)`` or ``(..., H, W, C)`` with ``rgb=True``; read plane by plane.
    backend : Backend
    normalizer : Normalizer
        Maps a plane to ``(H, W, 3)`` uint8.
    rgb : bool
    cache : EmbeddingCache, optional
    max_in_memory : int
        Plane embeddings kept in memory.
    """

    def __init__(self, image: Any, backend: Backend, normalizer: Any, *, rgb: bool = False,
                 cache: EmbeddingCache | None = None, max_in_memory: int = 8) -> None:
        self.image, self.backend, self.normalizer, self.rgb = image, backend, normalizer, rgb
        self.shape = tuple(int(s) for s in (image.shape[:-1] if rgb else image.shape))
        self.cache = cache
        self.lru = EmbeddingLRU(lambda key: backend.embed(self.plane_rgb(key)), cache=cache,
                                max_items=max_in_memory)

    @property
    def plane_keys_shape(self) -> tuple[int, ...]:
        return self.shape[:-2]

    def check_plane(self, plane: Any) -> PlaneKey:
        return check_plane(plane, self.plane_keys_shape)

    def plane_rgb(self, plane: Any = None) -> np.ndarray:
        key = self.check_plane(plane)
        return self.normalizer(np.asarray(self.image[key]))

    def has_embedding(self, plane: Any = None) -> bool:
        return self.lru.has(self.check_plane(plane))

    def embedding(self, plane: Any = None) -> Embedding:
        return self.lru.get(self.check_plane(plane))
