"""Old import path of :mod:`napari_segany.storage.labels` (kept so existing code runs)."""

from .storage.labels import *  # noqa: F403
from .storage.labels import (  # noqa: F401  # noqa: F401
    ATTRS_KEY,
    FORMAT_VERSION,
    LabelsStore,
    LabelsStoreError,
    LabelsStoreIOError,
    __all__,
)
