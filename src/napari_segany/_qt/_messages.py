"""Messages of the dock widget's Start: image shapes it refuses, and what to do in the widget."""

from __future__ import annotations

from ..errors import CacheMismatchError, CheckpointError, DownloadError, IntensityError

_OFFLINE_HINT = ("In the widget you can also pick a checkpoint file with '…' next to the "
                 "model, or tick 'random weights (testing)' to try the widget without weights.")
_CACHE_HINT = ("The widget keeps the embedding cache next to the output: choose another output "
               "path, or untick 'cache embeddings on disk'.")
_CHECKPOINT_HINT = ("Pick another checkpoint file with '…' next to the model, or pick a model "
                    "name from the list.")
_INTENSITY_HINT = ("Check the image layer's data (e.g. only NaN or infinite values), or pick "
                   "another image layer.")


def _shape_problem(name: str, shape: tuple[int, ...], rgb: bool) -> str | None:
    """Why an image layer of this shape cannot be segmented (None when it can)."""
    planes = shape[:-1] if rgb else shape
    if len(planes) >= 2 and 0 not in planes:
        return None
    return (f"Cannot segment image layer {name!r}: its data has shape {shape}"
            f"{' (RGB)' if rgb else ''}, but Segment Anything needs at least two non-empty "
            "axes (..., height, width). Pick another image layer, or load the data again.")


def _start_hint(exc: BaseException) -> str:
    """What the user can do in the widget about a failed Start ('' when nothing specific)."""
    for kind, hint in ((DownloadError, _OFFLINE_HINT), (CacheMismatchError, _CACHE_HINT),
                       (CheckpointError, _CHECKPOINT_HINT), (IntensityError, _INTENSITY_HINT)):
        if isinstance(exc, kind):
            return f" {hint}"
    return ""
