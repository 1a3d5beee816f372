"""Old import path of :mod:`napari_segany.propagate.sam2` (kept so existing code runs)."""

from .propagate.sam2 import Sam2Propagator, __all__, propagate_sam2  # noqa: F401
