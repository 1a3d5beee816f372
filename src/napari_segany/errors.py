"""Every exception class of napari-segany, in one place.

Each error says what was wrong and what to do. The classes derive from the built-in
exception a caller would expect (``ValueError`` for bad input, ``OSError`` for storage
failures), so ``except ValueError`` keeps working. They are also importable from the
module that raises them (e.g. ``napari_segany.prompts.PromptError``).
"""

from __future__ import annotations

__all__ = [
    "PromptError",
    "IntensityError",
    "CheckpointError",
    "DownloadError",
    "LabelsStoreError",
    "LabelsStoreIOError",
    "CacheMismatchError",
    "BoxError",
    "ExportError",
    "Cancelled",
    "UsageError",
    "DicomError",
    "CasesError",
    "BatchError",
    "ClusterError",
    "VideoError",
    "TrackingError",
]


class PromptError(ValueError):
    """Layer data cannot become valid SAM prompts; the message says what and how to fix it."""


class IntensityError(ValueError):
    """Image data that cannot be mapped to SAM's uint8 RGB input, or bad options."""


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, tampered with, unsafe or not a state dict."""


class DownloadError(RuntimeError):
    """A checkpoint could not be obtained (offline, network or HTTP error)."""


class LabelsStoreError(ValueError):
    """A labels store cannot be created, opened or written as asked."""


class LabelsStoreIOError(OSError):
    """Writing to a labels store failed (full disk, read-only file system, ...).

    The message names the store and what was being written; ``errno`` is the original
    one (e.g. ``errno.ENOSPC``) and ``__cause__`` the original exception. The plane being
    written is either complete or untouched.
    """


class CacheMismatchError(ValueError):
    """An existing cache was made for other data, model, normalisation or tiling."""


class BoxError(ValueError):
    """Boxes that cannot be read or do not fit the image; the message says which and why."""


class ExportError(ValueError):
    """Labels cannot be exported as asked; the message says why and what to do."""


class Cancelled(Exception):
    """Raised inside a long operation when its ``cancel`` was set; nothing was written."""


class UsageError(ValueError):
    """A command-line argument is malformed."""


class DicomError(ValueError):
    """DICOM input that cannot be read as one image volume; the message names the series
    and the files concerned, and what to do."""


class CasesError(ValueError):
    """A worklist, case or class table that cannot be used as asked; the message says why."""


class VideoError(ValueError):
    """A video file that cannot be read as a stack of frames (no video stream, corrupt or
    truncated data, a frame count that does not match), or a movie that cannot be written;
    the message names the file and what to do."""


class TrackingError(ValueError):
    """Tracking asked for something the stack, the store or the lineage cannot give (a
    missing track, a division on a frame where the parent is absent, ...)."""


class BatchError(ValueError):
    """Inputs of a batch or block run that cannot be used as asked (no images matched, a
    bad manifest row, an output of another shape, a run folder made for other settings);
    the message names the input and what to do. Nothing is written before it is raised."""


class ClusterError(RuntimeError):
    """A Dask cluster that cannot be reached, or workers that cannot run the job (the model
    does not load there, an input cannot be read there); the message names the address or
    the worker and what to do."""
