"""Map scientific image intensities to the (H, W, 3) uint8 RGB planes SAM expects.

The mapping is fitted ONCE per image or volume (:meth:`Normalizer.fit`) from a
bounded sample of planes, then applied to any plane (:meth:`Normalizer.__call__`),
so every plane of a volume is mapped consistently.

For every output channel the mapping is::

    out = floor(clip((x - low) / (high - low), 0, 1) * 255 + 0.5)   # uint8

i.e. values are rounded half up.  Conventions:

* Non-finite values (NaN, +inf, -inf) are ignored when fitting and map to 0.
* A constant channel (``low == high``) maps to 0 where ``x <= low`` and to 255
  where ``x > high``; there is no division by zero and no warning.
* Grayscale is replicated to R, G and B; two channels become R and G with B = 0.

This module imports only numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import IntensityError

__all__ = ["IntensityError", "Normalizer", "CT_WINDOWS", "FILE_WINDOW", "WINDOW_PRESETS",
           "window_limits", "normalizer_from_options"]

#: Named CT windows, ``(low, high)`` in Hounsfield units (width W, level L).
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "ct_soft_tissue": (-160.0, 240.0),  # W 400, L 40
    "ct_lung": (-1350.0, 150.0),  # W 1500, L -600
    "ct_bone": (-500.0, 1300.0),  # W 1800, L 400
    "ct_brain": (0.0, 80.0),  # W 80, L 40
    "ct_liver": (-45.0, 105.0),  # W 150, L 30
}

#: The window named by the image itself: a DICOM file's first WindowCenter/WindowWidth
#: (any modality, MR included), read from the array's ``window`` attribute
#: (:class:`~napari_segany.io.DicomVolume`).
FILE_WINDOW = "file"

#: Every window name a user can pick (widget, command line), with what it shows.
WINDOW_PRESETS: dict[str, str] = {
    "ct_soft_tissue": "CT soft tissue (W 400, L 40)",
    "ct_lung": "CT lung (W 1500, L -600)",
    "ct_bone": "CT bone (W 1800, L 400)",
    "ct_brain": "CT brain (W 80, L 40)",
    "ct_liver": "CT liver (W 150, L 30)",
    FILE_WINDOW: "the file's WindowCenter/WindowWidth (DICOM CT or MR)",
}


def window_limits(window: str | tuple[float, float], data: Any = None) -> tuple[float, float]:
    """``(low, high)`` of a window: a name of :data:`WINDOW_PRESETS` or two numbers.

    Parameters
    ----------
    window : str or (float, float)
        ``"ct_lung"`` etc. (:data:`CT_WINDOWS`), :data:`FILE_WINDOW` (``"file"``: the
        image's own WindowCenter/WindowWidth, ``center -/+ width / 2``), or ``(low, high)``.
    data : array-like, optional
        The image, for ``"file"``: its ``window`` attribute ``(center, width)`` is used.

    Raises
    ------
    IntensityError
        An unknown name, ``"file"`` for an image without a window, or ``low >= high``.
    """
    if isinstance(window, str):
        if window == FILE_WINDOW:
            own = getattr(data, "window", None)
            if own is None:
                raise IntensityError(
                    "window='file' takes WindowCenter/WindowWidth from a DICOM image, and "
                    "this image has none; pick a named window "
                    f"({', '.join(sorted(CT_WINDOWS))}) or give window=(low, high).")
            center, width = (float(v) for v in own)
            window = (center - width / 2.0, center + width / 2.0)
        elif window in CT_WINDOWS:
            window = CT_WINDOWS[window]
        else:
            raise IntensityError(
                f"unknown window {window!r}; known names: {sorted(WINDOW_PRESETS)}, "
                "or pass window=(low, high).")
    if window is None or len(window) != 2:
        raise IntensityError(
            f"a window is (low, high) or one of {sorted(WINDOW_PRESETS)}, got {window!r}.")
    lo, hi = float(window[0]), float(window[1])
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        raise IntensityError(f"window low must be < high, got ({lo}, {hi}).")
    return lo, hi

_MODES = ("identity", "percentile", "window")
_KINDS = {"b": "bool", "u": "unsigned int", "i": "int", "f": "float"}


def _check_dtype(dtype: Any, what: str) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.kind not in _KINDS:
        raise IntensityError(
            f"{what} has dtype {dt}, which cannot be mapped to intensities; expected "
            "bool, integer or real floating point data (take np.abs() or .real of "
            "complex data, and convert object arrays to a numeric dtype first)."
        )
    return dt


@dataclass(frozen=True)
class Normalizer:
    """A fitted intensity mapping from image planes to SAM's uint8 RGB input.

    Create one with :meth:`fit`; apply it with ``normalizer(plane)``.

    Attributes
    ----------
    mode : {"identity", "percentile", "window"}
        How ``low``/``high`` were chosen ("identity": 0..255 for numbers,
        0..1 for bool, so uint8 values pass through unchanged).
    low, high : tuple of float
        Per selected input channel (length 1 for grayscale, else ``len(channels)``):
        the values mapped to 0 and 255.
    channel_axis : int or None
        Axis of channels within a 3D PLANE (a negative index, e.g. -1 for
        (H, W, C) planes, -3 for (C, H, W) planes); None for 2D (H, W) planes.
    channels : tuple of int or None
        Which input channels become R, G, B (1 to 3 of them); None for grayscale.
    """

    mode: str
    low: tuple[float, ...]
    high: tuple[float, ...]
    channel_axis: int | None = None
    channels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise IntensityError(f"mode must be one of {_MODES}, got {self.mode!r}.")
        low, high = tuple(map(float, self.low)), tuple(map(float, self.high))
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if (self.channel_axis is None) != (self.channels is None):
            raise IntensityError("channel_axis and channels must both be set or both be None.")
        n = 1
        if self.channels is not None:
            chans = tuple(int(c) for c in self.channels)
            object.__setattr__(self, "channels", chans)
            object.__setattr__(self, "channel_axis", int(self.channel_axis))
            if not 1 <= len(chans) <= 3 or min(chans) < 0:
                raise IntensityError(f"channels must be 1 to 3 non-negative indices, got {chans}.")
            if self.channel_axis not in (-3, -2, -1):
                raise IntensityError(
                    f"channel_axis must be -3, -2 or -1 (axis within a 3D plane), "
                    f"got {self.channel_axis}."
                )
            n = len(chans)
        if len(low) != n or len(high) != n:
            raise IntensityError(
                f"low and high need {n} value(s) (one per selected channel), "
                f"got {len(low)} and {len(high)}."
            )
        for lo, hi in zip(low, high, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise IntensityError(f"low/high must be finite with low <= high, got {lo}, {hi}.")

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        data: Any,
        *,
        mode: str = "auto",
        percentiles: tuple[float, float] = (1.0, 99.8),
        window: str | tuple[float, float] | None = None,
        rgb: bool = False,
        channel_axis: int | None = None,
        channels: tuple[int, ...] | None = None,
        max_planes: int = 16,
        max_pixels: int = 4_000_000,
    ) -> Normalizer:
        """Fit one mapping for a whole image or volume from a bounded sample.

        Parameters
        ----------
        data : array-like, shape (..., H, W), (..., H, W, C) or with C elsewhere
            numpy, zarr, dask or anything with ``.shape``, ``.dtype``, ``.ndim``
            and numpy-style ``__getitem__``.  Never loaded whole: at most
            `max_planes` planes, evenly spaced over the leading axes and spatially
            strided, about `max_pixels` values in total, are read.
        mode : {"auto", "identity", "percentile", "window"}
            "auto": identity for bool and uint8, percentile otherwise.
        percentiles : (float, float)
            Lower/upper percentile (0..100) of the finite sampled values, per channel.
        window : str or (float, float), optional
            For mode "window": ``(low, high)``, a name in :data:`CT_WINDOWS`, or
            ``"file"`` (:data:`FILE_WINDOW`: the DICOM image's own WindowCenter/WindowWidth).
        rgb : bool
            The last axis holds 3 (RGB) or 4 (RGBA, alpha dropped) channels.
        channel_axis : int, optional
            Axis of `data` holding channels (negative allowed).  The two trailing
            non-channel axes are spatial (H, W); the rest are leading axes.
        channels : tuple of int, optional
            Which 1 to 3 channels become R, G, B.  Required with more than 3 channels.
        max_planes, max_pixels : int
            Sampling budget.

        Returns
        -------
        Normalizer
        """
        dt = _check_dtype(data.dtype, "data")
        shape = tuple(int(s) for s in data.shape)
        ndim = len(shape)
        if int(max_planes) < 1 or int(max_pixels) < 1:
            raise IntensityError("max_planes and max_pixels must be positive integers.")
        if math.prod(shape) == 0:
            raise IntensityError(f"data is empty (shape {shape}); nothing to normalise.")

        # --- channel layout
        if rgb:
            if channel_axis is not None and channel_axis % max(ndim, 1) != ndim - 1:
                raise IntensityError(
                    "rgb=True means channels are on the last axis; do not also pass a "
                    f"different channel_axis ({channel_axis})."
                )
            if ndim < 3 or shape[-1] not in (3, 4):
                raise IntensityError(
                    f"rgb=True needs a last axis of size 3 or 4, got shape {shape}; "
                    "pass channel_axis= for other channel layouts."
                )
            channel_axis = -1
            if channels is None:
                channels = (0, 1, 2)
        cax: int | None = None
        if channel_axis is not None:
            if not -ndim <= int(channel_axis) < ndim:
                raise IntensityError(
                    f"channel_axis={channel_axis} is out of range for shape {shape}.")
            cax = int(channel_axis) % ndim
        non_ch = [a for a in range(ndim) if a != cax]
        if len(non_ch) < 2:
            raise IntensityError(
                f"data of shape {shape} needs at least two spatial axes besides channels."
            )
        yax, xax = non_ch[-2], non_ch[-1]
        lead = non_ch[:-2]
        n_in = shape[cax] if cax is not None else 1
        if cax is not None:
            if channels is None:
                if n_in > 3:
                    raise IntensityError(
                        f"data has {n_in} channels on axis {cax}; SAM takes at most 3: "
                        "pick up to 3 of them with channels=(r, g, b)."
                    )
                channels = tuple(range(n_in))
            channels = tuple(int(c) for c in channels)
            if not 1 <= len(channels) <= 3:
                raise IntensityError(f"channels must name 1 to 3 channels, got {channels}.")
            bad = [c for c in channels if not -n_in <= c < n_in]
            if bad:
                raise IntensityError(
                    f"channels {bad} out of range: data has {n_in} channels on axis {cax}."
                )
            channels = tuple(c % n_in for c in channels)
            plane_cax = sorted((cax, yax, xax)).index(cax) - 3
        elif channels is not None:
            raise IntensityError("channels= needs rgb=True or channel_axis=.")
        else:
            plane_cax = None
        n_out = len(channels) if channels is not None else 1

        # --- mode
        if mode == "auto":
            mode = "identity" if dt.kind == "b" or dt == np.uint8 else "percentile"
        if mode == "identity":
            hi = 1.0 if dt.kind == "b" else 255.0
            return cls("identity", (0.0,) * n_out, (hi,) * n_out, plane_cax, channels)
        if mode == "window":
            if window is None:
                raise IntensityError(
                    f"mode='window' needs window=(low, high) or one of {sorted(WINDOW_PRESETS)}."
                )
            lo, hi = window_limits(window, data)
            return cls("window", (lo,) * n_out, (hi,) * n_out, plane_cax, channels)
        if mode != "percentile":
            raise IntensityError(
                f"mode must be 'auto', 'identity', 'percentile' or 'window', got {mode!r}."
            )
        p_lo, p_hi = (float(p) for p in percentiles)
        if not 0.0 <= p_lo < p_hi <= 100.0:
            raise IntensityError(
                f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}.")

        # --- bounded sample: planes evenly spaced over leading axes, strided in Y/X
        lead_shape = tuple(shape[a] for a in lead)
        n_planes = math.prod(lead_shape)
        k = min(int(max_planes), n_planes)
        flat = np.unique(np.round(np.linspace(0, n_planes - 1, k)).astype(np.int64))
        uniq = sorted(set(channels)) if channels is not None else [None]
        span = uniq[-1] - uniq[0] + 1 if channels is not None else 1
        use_slice = channels is not None and span <= 4
        n_read = span if use_slice else len(uniq)
        h, w = shape[yax], shape[xax]
        budget = max(1, int(max_pixels) // (len(flat) * n_read))
        lo_s, hi_s = 1, max(h, w)  # smallest stride with ceil(h/s)*ceil(w/s) <= budget
        while lo_s < hi_s:
            mid = (lo_s + hi_s) // 2
            if -(-h // mid) * -(-w // mid) <= budget:
                hi_s = mid
            else:
                lo_s = mid + 1
        step = slice(None, None, lo_s)
        samples: dict[int | None, list[np.ndarray]] = {c: [] for c in uniq}
        for f in flat:
            idx: list[Any] = [slice(None)] * ndim
            for a, i in zip(lead, np.unravel_index(int(f), lead_shape) if lead else (),
                            strict=True):
                idx[a] = int(i)
            idx[yax] = idx[xax] = step
            if channels is None:
                samples[None].append(np.asarray(data[tuple(idx)]).ravel())
            elif use_slice:
                idx[cax] = slice(uniq[0], uniq[-1] + 1)
                block = np.moveaxis(np.asarray(data[tuple(idx)]), plane_cax, 0)
                for c in uniq:
                    samples[c].append(block[c - uniq[0]].ravel())
            else:
                for c in uniq:
                    idx[cax] = c
                    samples[c].append(np.asarray(data[tuple(idx)]).ravel())
        stats: dict[int | None, tuple[float, float]] = {}
        for c, parts in samples.items():
            vals = np.concatenate(parts)
            vals = vals.astype(np.float64) if vals.dtype.kind == "b" else vals
            if vals.dtype.kind == "f":
                vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                where = "" if c is None else f" in channel {c}"
                raise IntensityError(
                    f"all sampled values{where} are NaN or infinite; cannot fit a percentile "
                    "mapping. Use mode='window' with window=(low, high) instead."
                )
            lo, hi = np.percentile(vals, [p_lo, p_hi])
            stats[c] = (float(lo), float(hi))
        keys = channels if channels is not None else (None,)
        lows, highs = zip(*(stats[c] for c in keys), strict=True)
        return cls("percentile", lows, highs, plane_cax, channels)

    # ----------------------------------------------------------------- applying
    def __call__(self, plane: Any) -> np.ndarray:
        """Map one plane to SAM input.

        Parameters
        ----------
        plane : array-like
            (H, W) for grayscale, or 3D with channels on ``self.channel_axis``
            (e.g. (H, W, C)); numpy or anything ``np.asarray`` accepts (zarr, dask).

        Returns
        -------
        numpy.ndarray, shape (H, W, 3), dtype uint8, C-contiguous
            Non-finite input values map to 0.
        """
        arr = np.asarray(plane)
        _check_dtype(arr.dtype, "plane")
        if self.channels is None:
            if arr.ndim != 2:
                raise IntensityError(
                    f"expected a 2D (H, W) grayscale plane as fitted, got shape {arr.shape}; "
                    "index the leading axes first, or refit with rgb=/channel_axis=."
                )
            chans = arr[None]
        else:
            if arr.ndim != 3:
                raise IntensityError(
                    f"expected a 3D plane with channels on axis {self.channel_axis} "
                    f"(e.g. (H, W, C) for -1, (C, H, W) for -3), got shape {arr.shape}."
                )
            arr = np.moveaxis(arr, self.channel_axis, 0)
            if max(self.channels) >= arr.shape[0]:
                raise IntensityError(
                    f"plane has {arr.shape[0]} channels on axis {self.channel_axis} but "
                    f"channels {self.channels} were fitted."
                )
            chans = arr[list(self.channels)]
        out = np.zeros(chans.shape[1:] + (3,), dtype=np.uint8)
        mapped = [self._map(c, lo, hi)
                  for c, lo, hi in zip(chans, self.low, self.high, strict=False)]
        for i, m in enumerate(mapped * 3 if len(mapped) == 1 else mapped):
            out[..., i] = m
        return out

    def _map(self, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
        if x.dtype == np.uint8 and lo == 0.0 and hi == 255.0:
            return x  # exact identity
        xf = x.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            if hi > lo:
                y = np.floor(np.clip((xf - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5)
            else:
                y = np.where(xf > hi, 255.0, 0.0)
        if x.dtype.kind == "f":
            y[~np.isfinite(xf)] = 0.0
        return y.astype(np.uint8)

    # ------------------------------------------------------------ serialising
    def to_dict(self) -> dict:
        """JSON-serialisable description (for cache signatures and provenance)."""
        return {
            "mode": self.mode,
            "low": list(self.low),
            "high": list(self.high),
            "channel_axis": self.channel_axis,
            "channels": None if self.channels is None else list(self.channels),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        """Rebuild a :class:`Normalizer` from :meth:`to_dict` output."""
        keys = ("mode", "low", "high", "channel_axis", "channels")
        missing = [k for k in keys if k not in d]
        if missing:
            raise IntensityError(
                f"normalizer dict is missing keys {missing}; expected {list(keys)}.")
        chans = None if d["channels"] is None else tuple(d["channels"])
        return cls(d["mode"], tuple(d["low"]), tuple(d["high"]), d["channel_axis"], chans)


def normalizer_from_options(
    data: Any,
    *,
    rgb: bool = False,
    channels_moved: bool = False,
    window: str | tuple[float, float] | None = None,
    percentiles: tuple[float, float] | None = None,
    channels: tuple[int, ...] | None = None,
) -> Normalizer:
    """The mapping users choose with ``window`` / ``percentiles`` / ``channels``.

    The API, the command line and the widget call this with the options they took.

    Parameters
    ----------
    data : array-like
        The image, channels last when ``rgb`` or ``channels_moved``.
    rgb : bool
        The last axis holds RGB(A) channels.
    channels_moved : bool
        The last axis holds channels moved there from another axis (any number of them,
        see :func:`napari_segany.io.channels_last`).
    window : str or (low, high), optional
        A fixed window: a name of :data:`CT_WINDOWS`, ``"file"`` (the DICOM image's own
        WindowCenter/WindowWidth) or two numbers.
    percentiles : (low, high), optional
        Percentiles mapped to black and white (default of :meth:`Normalizer.fit`).
    channels : tuple of int, optional
        Up to 3 channels that become R, G, B.
    """
    if window is not None and percentiles is not None:
        raise IntensityError("give a window or percentiles, not both")
    kw: dict[str, Any] = {}
    if window is not None:
        kw = {"mode": "window", "window": window if isinstance(window, str) else tuple(window)}
    elif percentiles is not None:
        kw = {"mode": "percentile", "percentiles": tuple(float(v) for v in percentiles)}
    if channels is not None:
        kw["channels"] = tuple(int(c) for c in channels)
    if channels_moved:
        kw["channel_axis"] = -1
    else:
        kw["rgb"] = bool(rgb)
    return Normalizer.fit(data, **kw)
