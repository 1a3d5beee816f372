"""Old import path of :mod:`napari_segany.storage.cache` (kept so existing code runs)."""

from .storage.cache import *  # noqa: F403
from .storage.cache import (  # noqa: F401
    CacheMismatchError,
    EmbeddingCache,
    __all__,
    cache_signature,
    data_fingerprint,
)
