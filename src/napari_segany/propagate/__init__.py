"""Propagation of prompted objects through volumes and time stacks, plane by plane.

* :mod:`.slicewise`: any backend; each plane is prompted by the previous plane's mask.
* :mod:`.sam2`: SAM2 memory tracking (backends with the ``"memory"`` capability).

Both are generators of :class:`PlaneResult` (one object on one plane) that read frames
lazily; the session writes what they yield.
"""

from .sam2 import Sam2Propagator, propagate_sam2
from .slicewise import (
    DIRECTIONS,
    PROMPT_MODES,
    PlaneResult,
    SliceSettings,
    Stop,
    propagate_slicewise,
)

__all__ = ["SliceSettings", "PlaneResult", "Stop", "propagate_slicewise", "propagate_sam2",
           "Sam2Propagator", "PROMPT_MODES", "DIRECTIONS"]
