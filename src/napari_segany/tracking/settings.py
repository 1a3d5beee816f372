"""Settings of tracking: the propagation method and when a split counts as a division."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import TrackingError
from ..propagate import SliceSettings

__all__ = ["TrackSettings", "METHODS"]

METHODS = ("slice", "sam2")


@dataclass(frozen=True)
class TrackSettings:
    """How objects are followed from frame to frame and when one divides.

    Attributes
    ----------
    method : {"slice", "sam2"}
        ``"slice"``: slice-wise propagation (any model; each frame prompted by the last
        frame's mask, see :class:`~napari_segany.propagate.SliceSettings`). ``"sam2"``:
        SAM2 memory propagation (SAM2 models).
    division_frames : int
        K: a mask that falls apart into two or more components of at least
        ``min_area`` pixels on K consecutive frames is a division (from the first of
        them on, each component is a daughter with a new id and a parent link). A split
        that heals within K frames is not one.
    min_area : int
        Components smaller than this are fragments, not daughters (they go to the
        nearest daughter); an object whose mask has fewer pixels is lost (its track ends).
    slice : SliceSettings
        Prompting and stopping rules of slice-wise propagation.
    """

    method: str = "slice"
    division_frames: int = 3
    min_area: int = 16
    slice: SliceSettings = field(default_factory=SliceSettings)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TrackingError(f"method must be one of {METHODS}, got {self.method!r}")
        k = self.division_frames
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise TrackingError(f"division_frames must be an integer >= 1, got {k!r}")
        a = self.min_area
        if isinstance(a, bool) or not isinstance(a, int) or a < 1:
            raise TrackingError(f"min_area must be an integer >= 1, got {a!r}")
        if not isinstance(self.slice, SliceSettings):
            raise TrackingError(f"slice must be a SliceSettings, got {type(self.slice).__name__}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["slice"] = {k: (v if not isinstance(v, float) or abs(v) != float("inf") else str(v))
                        for k, v in out["slice"].items()}
        return out
