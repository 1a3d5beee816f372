"""Everything the package keeps on disk or in memory between calls.

* :mod:`.labels`: :class:`LabelsStore`, the zarr labels store (the only code that lays
  one out).
* :mod:`.cache`: :class:`EmbeddingCache`, plane embeddings on disk, keyed by a signature of
  data, model, normalisation and tiling.
* :mod:`.embeddings`: :class:`PlaneEmbeddings` and :class:`EmbeddingLRU`, embeddings held
  in memory over the cache or the backend.
* :mod:`.atomic`: :func:`replacing`, write-then-rename for finished files and folders.

Only numpy and zarr are imported here (zarr when a store is opened).
"""

from ..errors import CacheMismatchError, LabelsStoreError, LabelsStoreIOError
from .array import StoreArray
from .atomic import remove, replacing
from .cache import EmbeddingCache, cache_signature, data_fingerprint
from .embeddings import EmbeddingLRU, PlaneEmbeddings, PlaneSource
from .history import UndoResult
from .labels import ATTRS_KEY, FORMAT_VERSION, LabelsStore, ObjectRow, Operation

__all__ = ["LabelsStore", "LabelsStoreError", "LabelsStoreIOError", "ATTRS_KEY",
           "FORMAT_VERSION", "EmbeddingCache", "CacheMismatchError", "data_fingerprint",
           "cache_signature", "EmbeddingLRU", "PlaneEmbeddings", "PlaneSource", "replacing",
           "remove", "Operation", "UndoResult", "StoreArray", "ObjectRow"]
