"""A folder of 2D frames (PNG, JPEG, TIFF, BMP) as a lazy ``(t, H, W[, C])`` array."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FrameFolder"]

_TIFF = {".tif", ".tiff"}


class FrameFolder:
    """A folder of 2D frames as a lazy ``(t, H, W[, C])`` array; frames are read on demand.

    All frames must have the same shape and dtype (checked on the first frame; a frame
    that differs is an error naming it when it is read).
    """

    _EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.files = sorted(f for f in self.folder.iterdir() if f.suffix.lower() in self._EXT)
        if not self.files:
            raise ValueError(f"{self.folder} holds no image frames ({', '.join(self._EXT)})")
        first = self._read(0)
        self._frame_shape, self.dtype = first.shape, first.dtype
        self.shape = (len(self.files),) + first.shape
        self.ndim = len(self.shape)

    def _read(self, i: int) -> np.ndarray:
        f = self.files[i]
        if f.suffix.lower() in _TIFF:
            import tifffile

            return tifffile.imread(f)
        from PIL import Image

        with Image.open(f) as im:
            return np.asarray(im.convert("RGB") if im.mode in ("P", "CMYK") else im)

    def frame(self, i: int) -> np.ndarray:
        arr = self._read(i)
        if arr.shape != self._frame_shape:
            raise ValueError(f"frame {self.files[i].name} has shape {arr.shape}, the first "
                             f"frame {self._frame_shape}; all frames must match")
        return arr

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.frame(range(len(self))[int(first)])[rest]
        frames = [self.frame(i) for i in range(len(self))[first]]
        out = np.stack(frames) if frames else np.empty((0,) + self._frame_shape, self.dtype)
        return out[(slice(None),) + rest]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)
