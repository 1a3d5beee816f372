"""Values typed on the command line: points, labels, boxes, numbers and plane ranges.

Malformed values raise :class:`~napari_segany.errors.UsageError` naming the option and the
expected form.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError

__all__ = ["parse_points", "parse_labels", "parse_box", "parse_floats", "parse_range",
           "join_negative_values"]


def parse_points(text: str) -> np.ndarray:
    """``"x,y;x,y"`` -> ``(N, 2)`` float array."""
    parts = text.strip().rstrip(";").split(";")
    if any(not pair.strip() for pair in parts):  # '1,2;;3,4': a point is missing
        raise UsageError(f"malformed --points {text!r}: an empty point between ';'; expected "
                         "'x,y;x,y'")
    try:
        pts = [[float(v) for v in pair.split(",")] for pair in parts]
    except ValueError:
        raise UsageError(f"malformed --points {text!r}; expected 'x,y;x,y'") from None
    if not pts or any(len(p) != 2 for p in pts) or not np.all(np.isfinite(pts)):
        raise UsageError(f"malformed --points {text!r}; expected 'x,y;x,y'")
    return np.array(pts, dtype=float)


def parse_labels(text: str, n: int) -> np.ndarray:
    """``"1,0"`` -> ``(n,)`` int array of 1 (positive) / 0 (negative)."""
    try:
        labels = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"malformed --point-labels {text!r}; expected e.g. '1,0'") from None
    if len(labels) != n or any(v not in (0, 1) for v in labels):
        raise UsageError(f"--point-labels needs {n} values of 1 or 0, got {text!r}")
    return np.array(labels, dtype=np.int32)


def parse_box(text: str) -> np.ndarray:
    """``"x0,y0,x1,y1"`` -> ``(4,)`` float array."""
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise UsageError(f"malformed --box {text!r}; expected 'x0,y0,x1,y1'")
    return np.array(box, dtype=float)


def parse_floats(text: str, option: str, n: int | None = None) -> tuple[float, ...]:
    """``"1,99.8"`` -> floats (exactly ``n`` of them when given)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or (n is not None and len(values) != n):
        want = f"{n} comma-separated numbers" if n else "comma-separated numbers"
        raise UsageError(f"malformed {option} {text!r}; expected {want}")
    return values


def parse_range(text: str, size: int) -> tuple[int, int]:
    """``"a:b"`` (either side optional) -> ``(a, b)`` with ``0 <= a < b <= size``."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        lo = int(parts[0]) if parts[0].strip() else 0
        hi = int(parts[1]) if parts[1].strip() else size
    except ValueError:
        raise UsageError(f"malformed --range {text!r}; expected 'start:stop', e.g. '10:40'") \
            from None
    if not 0 <= lo < hi <= size:
        raise UsageError(f"--range {text} is not a non-empty range within 0:{size}")
    return lo, hi


_NUMERIC_OPTIONS = {"--window", "--box", "--points", "--percentiles", "--spacing",
                    "--min-score", "--channel-axis", "--axis", "--input_point", "--input_box"}


def join_negative_values(argv: list[str]) -> list[str]:
    """``--window -160,240`` -> ``--window=-160,240`` (argparse takes '-1...' for an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if token in _NUMERIC_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and (
                nxt[1].isdigit() or nxt[1] == "." or nxt[1:4].lower() == "inf"):
            out.append(f"{token}={nxt}")
            i += 2
        else:
            out.append(token)
            i += 1
    return out
