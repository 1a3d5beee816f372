"""A folder of 2D frames (PNG, JPEG, TIFF, BMP) as a lazy ``(t, H, W[, C])`` array."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FrameFolder"]

_TIFF = {".tif", ".tiff"}
#: PIL image mode -> (channels, dtype of the numpy array PIL gives)
_MODES = {"1": (1, "bool"), "L": (1, "uint8"), "LA": (2, "uint8"), "RGB": (3, "uint8"),
          "RGBA": (4, "uint8"), "I;16": (1, "uint16"), "I;16B": (1, ">u2"), "I": (1, "int32"),
          "F": (1, "float32")}


def _text(shape: tuple[int, ...], dtype: str) -> str:
    return f"{' x '.join(map(str, shape))} {dtype}"


class FrameFolder:
    """A folder of 2D frames as a lazy ``(t, H, W[, C])`` array; frames are read on demand.

    All frames must have the same shape and dtype: every frame's header is read when the
    folder is opened (no pixels are decoded), and a frame of another size or mode, or one
    whose header cannot be read, is an error naming it before anything is done.
    """

    _EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.files = sorted(f for f in self.folder.iterdir() if f.suffix.lower() in self._EXT)
        if not self.files:
            raise ValueError(f"{self.folder} holds no image frames ({', '.join(self._EXT)})")
        headers = [self._header(f) for f in self.files]
        (shape0, dtype0), name0 = headers[0], self.files[0].name
        for f, (shape, dtype) in zip(self.files[1:], headers[1:], strict=True):
            if (shape, dtype) != (shape0, dtype0):
                raise ValueError(f"frame {f.name} of {self.folder} is {_text(shape, dtype)}, but "
                                 f"{name0} is {_text(shape0, dtype0)}; all frames must match")
        self._frame_shape, self.dtype = shape0, np.dtype(dtype0)
        self.shape = (len(self.files),) + shape0
        self.ndim = len(self.shape)

    def _header(self, f: Path) -> tuple[tuple[int, ...], str]:
        """A frame's ``(shape, dtype)`` as it will be read, from its header alone."""
        try:
            if f.suffix.lower() in _TIFF:
                import tifffile

                with tifffile.TiffFile(f) as tif:
                    series = tif.series[0]
                    return tuple(int(v) for v in series.shape), np.dtype(series.dtype).name
            from PIL import Image

            with Image.open(f) as im:
                mode, (w, h) = im.mode, im.size
        except Exception as exc:  # PIL and tifffile raise many kinds for a broken file
            raise ValueError(f"frame {f.name} of {self.folder} cannot be read ({exc}); "
                             "replace or remove it") from None
        mode = "RGB" if mode in ("P", "CMYK") else mode
        if mode not in _MODES:
            raise ValueError(f"frame {f.name} of {self.folder} has the image mode {mode!r}, "
                             "which is not supported; convert it to grayscale or RGB")
        channels, dtype = _MODES[mode]
        return ((h, w) if channels == 1 else (h, w, channels)), dtype

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
