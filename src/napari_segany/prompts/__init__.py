"""Prompts for Segment Anything: the prompt model, and napari layer data turned into it.

* :mod:`.model`: :class:`ObjectPrompt` (points, labels, a box and a mask for one object on
  one plane, in SAM's ``(x, y)`` convention) and :class:`PromptSet` (per plane and object).
* :mod:`.layers`: napari Points / Shapes layer data -> :class:`PromptSet` (the only place
  that converts napari coordinates: world -> data, axis order, scale/translate).
* :mod:`.geometry`: the layer :class:`Transform`, plane indices, clipping, in-plane checks.

Nothing here imports napari; layers are read by duck typing.
"""

from ..errors import PromptError
from .geometry import Transform, check_in_plane
from .layers import points_to_prompts, shapes_to_prompts
from .model import ObjectPrompt, PromptSet, merge_prompts

__all__ = ["PromptError", "Transform", "ObjectPrompt", "PromptSet", "points_to_prompts",
           "shapes_to_prompts", "merge_prompts", "check_in_plane"]
