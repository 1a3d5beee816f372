"""The dock widget's messages: image shapes it refuses, and errors as one short line with
the action to take (the full text goes under *Details* and into the notification's
details)."""

from __future__ import annotations

import re

from ..errors import (
    CacheMismatchError,
    CheckpointError,
    DownloadError,
    IntensityError,
    LabelsStoreError,
    LabelsStoreIOError,
)

__all__ = ["shape_problem", "short_error", "StartError", "SHORT"]

#: The longest status line (characters); the rest is under Details.
SHORT = 180

_OFFLINE_HINT = ("pick a checkpoint file with '…' next to the model, or tick 'random weights "
                 "(testing)'.")
_CACHE_HINT = ("choose another output path, or untick 'cache embeddings on disk'.")
_CHECKPOINT_HINT = "pick another checkpoint file with '…', or a model name from the list."
_INTENSITY_HINT = "check the image layer's data (e.g. only NaN values), or pick another layer."
_STORE_HINT = "choose another output path ('…' next to it)."


class StartError(Exception):
    """A failure of Start, with the stage that failed ("model" or "output")."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.stage, self.exc = stage, exc


def shape_problem(name: str, shape: tuple[int, ...], rgb: bool) -> str | None:
    """Why an image layer of this shape cannot be segmented (None when it can)."""
    planes = shape[:-1] if rgb else shape
    if len(planes) >= 2 and 0 not in planes:
        return None
    return (f"Cannot segment {name!r}: shape {shape}{' (RGB)' if rgb else ''} has fewer "
            "than two non-empty axes; pick another image layer.")


def _clip(text: str, limit: int = SHORT) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for stop in (". ", "; ", ": ", ", "):
        i = cut.rfind(stop)
        if i > limit // 2:
            return cut[:i + 1].rstrip(",;:") + " …"
    return cut.rstrip() + " …"


def short_error(exc: BaseException, doing: str) -> str:
    """One line: what failed and what to do (the full text is the details)."""
    if isinstance(exc, StartError):
        inner = exc.exc
        if exc.stage == "model":
            hint = (_OFFLINE_HINT if isinstance(inner, DownloadError) else
                    _CHECKPOINT_HINT if isinstance(inner, CheckpointError) else
                    "check the model name or the checkpoint file.")
            return _clip(f"Could not load the model: {_first(inner)}") + " Fix: " + hint
        if isinstance(inner, CacheMismatchError):
            return ("The embedding cache next to the output belongs to another image or "
                    "model. Fix: " + _CACHE_HINT)
        if isinstance(inner, IntensityError):
            return _clip(f"Cannot map the image to the model's input: {_first(inner)}") + \
                " Fix: " + _INTENSITY_HINT
        if isinstance(inner, (LabelsStoreError, LabelsStoreIOError, OSError)):
            return _clip(f"Could not open the output store: {_first(inner)}") + \
                " Fix: " + _STORE_HINT
        return _clip(f"Could not open the output: {_first(inner)}") + " Fix: " + _STORE_HINT
    return _clip(f"{doing} failed: {_first(exc)}")


def _first(exc: BaseException) -> str:
    """The first sentence of an error message (its gist)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    m = re.match(r"(.{20,}?\.)\s", text + " ")
    return m.group(1) if m else text
