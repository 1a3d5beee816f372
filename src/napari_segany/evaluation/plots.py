"""Figures of an evaluation, as PNG files (matplotlib, drawn off-screen).

* interactive: mean IoU against the number of clicks per model (with the interquartile
  band) and the spread of IoU at the first prompt and after the last correction;
* automatic: mSA, SA50, SA75, precision, recall and F1 per model, and the matched IoU of
  the true objects;
* volume: Dice and surface Dice per object, and Dice along the planes of each volume;
* video: J and F per frame of each sequence.

Each model and method keeps one colour and one line style in every figure, so curves that
lie on top of each other (e.g. two models that both miss an object) stay visible: later
series are drawn thinner and dashed over the earlier ones.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_results"]

_MAX_PANELS = 4


def _figure(ncols: int, nrows: int = 1, *, width: float = 5.2, height: float = 3.8) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), dpi=110, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _series(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for r in rows:
        seen.setdefault((r["model"], r["method"]), None)
    return list(seen)


def _label(model: str, method: str, protocol: str) -> str:
    return model if protocol in ("interactive", "automatic") else f"{model} ({method})"


def _colours(series: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(series)}


_DASHES = ("-", "--", ":", "-.")


def _lines(series: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Line style per series: solid and thick first, then thinner dashed and dotted."""
    return {s: {"linestyle": _DASHES[i % len(_DASHES)], "linewidth": max(1.0, 2.4 - 0.5 * i)}
            for i, s in enumerate(series)}


def _values(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    vals = [r[key] for r in rows if r.get(key) is not None]
    arr = np.asarray(vals, float)
    return arr[~np.isnan(arr)]


def _save(fig: Any, path: Path, title: str, subtitle: str | None) -> Path:
    fig.suptitle(title if not subtitle else f"{title}\n{subtitle}", fontsize=11)
    fig.savefig(path)
    return path


def _interactive(rows, out: Path, subtitle) -> list[Path]:
    series = _series(rows)
    colours, lines = _colours(series), _lines(series)
    fig, axes = _figure(2)
    ax, box = axes[0]
    for s in series:
        these = [r for r in rows if (r["model"], r["method"]) == s]
        its = sorted({int(r["iteration"]) for r in these})
        per = [_values([r for r in these if r["iteration"] == i], "iou") for i in its]
        clicks = [int(np.median([r["clicks"] for r in these if r["iteration"] == i]))
                  for i in its]
        mean = [v.mean() if v.size else math.nan for v in per]
        lo = [np.percentile(v, 25) if v.size else math.nan for v in per]
        hi = [np.percentile(v, 75) if v.size else math.nan for v in per]
        ax.plot(clicks, mean, marker="o", markersize=4, color=colours[s], **lines[s],
                label=_label(*s, "interactive"))
        ax.fill_between(clicks, lo, hi, color=colours[s], alpha=0.15, linewidth=0)
    ticks = sorted({int(r["clicks"]) for r in rows})
    if len(ticks) <= 20:
        ax.set_xticks(ticks)
    start = rows[0]["method"] if rows else "point"
    ax.set_xlabel("points clicked" + (" (after the box)" if start == "box" else ""))
    ax.set_ylabel("IoU with the ground truth (mean, IQR band)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("IoU vs number of clicks", fontsize=10)
    data, labels, cols = [], [], []
    for s in series:
        these = [r for r in rows if (r["model"], r["method"]) == s]
        last = max(int(r["iteration"]) for r in these)
        for it, tag in ((0, "first"), (last, "last")):
            data.append(_values([r for r in these if r["iteration"] == it], "iou"))
            labels.append(f"{s[0]}\n{tag}")
            cols.append(colours[s])
    parts = box.boxplot(data, patch_artist=True, widths=0.6)
    for patch, c in zip(parts["boxes"], cols, strict=False):
        patch.set_facecolor(c)
        patch.set_alpha(0.5)
    box.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    box.set_ylabel("IoU per object")
    box.set_ylim(0, 1.02)
    box.set_title("first prompt and after the last correction", fontsize=10)
    box.grid(alpha=0.3, axis="y")
    return [_save(fig, out / "iou_vs_clicks.png", "Interactive segmentation", subtitle)]


def _automatic(rows, out: Path, subtitle) -> list[Path]:
    series = _series(rows)
    colours = _colours(series)
    keys = ("msa", "sa50", "sa75", "precision", "recall", "f1")
    fig, axes = _figure(2)
    ax, hist = axes[0]
    width = 0.8 / max(1, len(series))
    per_object = []
    for n, s in enumerate(series):
        planes = [r for r in rows if (r["model"], r["method"]) == s and r["source"] == "plane"]
        means = [_values(planes, k).mean() if _values(planes, k).size else 0 for k in keys]
        bars = ax.bar(np.arange(len(keys)) + n * width - 0.4 + width / 2, means, width,
                      color=colours[s], label=s[0])
        if len(series) <= 3:
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        per_object.append(_values([r for r in rows if (r["model"], r["method"]) == s
                                   and r["object_id"] is not None], "iou"))
    # side by side in each bin: identical histograms must not hide each other
    hist.hist(per_object, bins=np.linspace(0, 1, 11), color=[colours[s] for s in series],
              label=[s[0] for s in series])
    hist.set_xticks(np.linspace(0, 1, 11))
    ax.set_xticks(range(len(keys)), ["mSA", "SA50", "SA75", "precision", "recall", "F1"])
    ax.set_ylabel("score (0 to 1)")
    ax.set_ylim(0, 1.02)
    ax.set_title("instance scores (mean over planes)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    hist.set_xlabel("IoU of each true object with its best match (bins of 0.1)")
    hist.set_ylabel("objects")
    hist.set_title("matched IoU per object", fontsize=10)
    hist.legend(fontsize=8)
    return [_save(fig, out / "automatic_scores.png", "Automatic segmentation", subtitle)]


def _volume(rows, out: Path, subtitle) -> list[Path]:
    series = _series(rows)
    colours, lines = _colours(series), _lines(series)
    last = {s: max(int(r["iteration"] or 0) for r in rows if (r["model"], r["method"]) == s)
            for s in series}
    final = [r for r in rows if int(r["iteration"] or 0) == last[(r["model"], r["method"])]]
    objs = [r for r in final if r["source"] == "volume"]
    keys = sorted({(r["dataset"], r["object_id"]) for r in objs})
    fig, axes = _figure(2, width=max(5.2, min(14, 0.35 * len(keys) + 3)))
    for ax, metric, name in ((axes[0][0], "dice", "Dice"), (axes[0][1], "nsd", "surface Dice")):
        width = 0.8 / max(1, len(series))
        for n, s in enumerate(series):
            val = {(r["dataset"], r["object_id"]): r[metric] for r in objs
                   if (r["model"], r["method"]) == s}
            ys = [val.get(k, math.nan) for k in keys]
            if len(keys) <= 24:
                bars = ax.bar(np.arange(len(keys)) + n * width - 0.4 + width / 2, ys, width,
                              color=colours[s], label=_label(*s, "volume"))
                if len(keys) <= 6:
                    ax.bar_label(bars, fmt="%.2f", fontsize=7)
            else:
                ax.scatter(np.arange(len(keys)), ys, s=10, color=colours[s],
                           label=_label(*s, "volume"))
        datasets = {d for d, _ in keys}
        ticks = [f"{d}:{o}" if len(datasets) > 1 else str(o) for d, o in keys]
        step = max(1, len(keys) // 24)
        rotate = 90 if len(keys) > 8 or max(map(len, ticks), default=0) > 6 else 0
        ax.set_xticks(range(0, len(keys), step), ticks[::step], rotation=rotate,
                      fontsize=7 if rotate else 9)
        ax.set_xlabel("object")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name} per object", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    paths = [_save(fig, out / "dice_per_object.png", "Volumes: per object", subtitle)]
    datasets = sorted({r["dataset"] for r in final})[:_MAX_PANELS]
    fig, axes = _figure(len(datasets))
    for ax, d in zip(axes[0], datasets, strict=False):
        for s in series:
            planes = [r for r in final if r["dataset"] == d and r["source"] != "volume"
                      and (r["model"], r["method"]) == s]
            zs = sorted({int(r["plane"]) for r in planes})
            ys = [_values([r for r in planes if int(r["plane"]) == z], "dice").mean() for z in zs]
            ax.plot(zs, ys, marker=".", color=colours[s], **lines[s],
                    label=_label(*s, "volume"))
            ann = sorted({int(r["plane"]) for r in planes if r["source"] == "annotated"})
            for z in ann:
                ax.axvline(z, color=colours[s], alpha=0.25, linestyle=":")
        ax.set_xlabel("plane (dotted: prompted)")
        ax.set_ylabel("Dice (mean over objects on the plane)")
        ax.set_ylim(0, 1.02)
        ax.set_title(d, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    paths.append(_save(fig, out / "dice_per_plane.png", "Volumes: along the planes", subtitle))
    return paths


def _video(rows, out: Path, subtitle) -> list[Path]:
    series = _series(rows)
    colours, lines = _colours(series), _lines(series)
    datasets = sorted({r["dataset"] for r in rows})[:_MAX_PANELS]
    fig, axes = _figure(len(datasets), 2, height=3.2)
    for col, d in enumerate(datasets):
        for row_i, (metric, name) in enumerate((("j", "J (region IoU)"),
                                                ("f", "F (boundary)"))):
            ax = axes[row_i][col]
            for s in series:
                these = [r for r in rows if r["dataset"] == d and (r["model"], r["method"]) == s]
                ts = sorted({int(r["plane"]) for r in these})
                ys = [_values([r for r in these if int(r["plane"]) == t], metric).mean()
                      for t in ts]
                ax.plot(ts, ys, color=colours[s], **lines[s], label=_label(*s, "video"))
            prompted = sorted({int(r["plane"]) for r in rows if r["dataset"] == d
                               and r["source"] == "annotated"})
            for t in prompted:
                ax.axvline(t, color="grey", alpha=0.6, linestyle=":")
            ax.set_ylim(0, 1.02)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if row_i == 0:
                ax.set_title(d, fontsize=10)
                ax.legend(fontsize=8)
            else:
                ax.set_xlabel("frame (dotted: the prompted frame of an object)")
    return [_save(fig, out / "jf_per_frame.png", "Video: J and F per frame", subtitle)]


_PLOTS = {"interactive": _interactive, "automatic": _automatic, "volume": _volume,
          "video": _video}


def plot_results(rows: list[dict[str, Any]], protocol: str, folder: str | os.PathLike, *,
                 subtitle: str | None = None) -> list[Path]:
    """Draw the protocol's figures from the results rows into ``folder``; returns the PNGs."""
    rows = [r for r in rows if r["protocol"] == protocol]
    if not rows:
        return []
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return _PLOTS[protocol](rows, out, subtitle)
