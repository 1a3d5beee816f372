"""Summaries of the results table: one record per model and method, and a printed table.

* interactive: mean IoU over objects at every iteration (``iou_by_iteration``), and at
  the first prompt, after one correction and after the last;
* automatic: mSA, SA50, SA75, precision, recall and F1 averaged over planes;
* volume: mean Dice and surface Dice of the objects after the last correction round, and
  the mean Dice of the propagated planes;
* video: mean J, F and J&F over the frames after each object's prompted frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["summarize", "summary_table", "HEADLINES"]

#: The columns each protocol's printed table shows (after model and method).
HEADLINES = {
    "interactive": ("objects", "iou_first", "iou_1", "iou_last", "dice_last"),
    "automatic": ("planes", "msa", "sa50", "sa75", "precision", "recall", "f1"),
    "volume": ("objects", "dice", "nsd", "dice_propagated", "planes_missed"),
    "video": ("objects", "frames", "j", "f", "jf"),
}


def _mean(values: Iterable[Any]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["model"], r["method"]), []).append(r)
    return out


def _interactive(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_it: dict[int, list[float]] = {}
    for r in rows:
        by_it.setdefault(int(r["iteration"]), []).append(r["iou"])
    its = sorted(by_it)
    curve = [_mean(by_it[i]) for i in its]
    last = its[-1] if its else 0
    objects = {(r["dataset"], r["plane"], r["object_id"]) for r in rows}
    return {"objects": len(objects), "iterations": len(its) - 1 if its else 0,
            "iou_by_iteration": curve, "iou_first": curve[0] if curve else float("nan"),
            "iou_1": curve[1] if len(curve) > 1 else float("nan"),
            "iou_last": curve[-1] if curve else float("nan"),
            "dice_last": _mean(r["dice"] for r in rows if r["iteration"] == last)}


def _automatic(rows: list[dict[str, Any]]) -> dict[str, Any]:
    planes = [r for r in rows if r["source"] == "plane"]
    out: dict[str, Any] = {"planes": len(planes)}
    for k in ("msa", "sa50", "sa75", "precision", "recall", "f1"):
        out[k] = _mean(r[k] for r in planes)
    out["n_true"] = int(sum(r["n_true"] or 0 for r in planes))
    out["n_pred"] = int(sum(r["n_pred"] or 0 for r in planes))
    return out


def _volume(rows: list[dict[str, Any]]) -> dict[str, Any]:
    last = max((int(r["iteration"] or 0) for r in rows), default=0)
    final = [r for r in rows if int(r["iteration"] or 0) == last]
    objs = [r for r in final if r["source"] == "volume"]
    planes = [r for r in final if r["source"] != "volume"]
    by_round = []
    for rnd in range(last + 1):
        these = [r for r in rows if int(r["iteration"] or 0) == rnd and r["source"] == "volume"]
        by_round.append(_mean(r["dice"] for r in these))
    return {"objects": len(objs), "rounds": last + 1, "dice": _mean(r["dice"] for r in objs),
            "nsd": _mean(r["nsd"] for r in objs), "dice_by_round": by_round,
            "dice_propagated": _mean(r["dice"] for r in planes if r["source"] == "propagated"),
            "planes_missed": sum(1 for r in planes if r["source"] == "missed")}


def _video(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rows if r["source"] != "annotated"]
    j, f = _mean(r["j"] for r in scored), _mean(r["f"] for r in scored)
    return {"objects": len({(r["dataset"], r["object_id"]) for r in rows}),
            "frames": len(scored), "j": j, "f": f, "jf": (j + f) / 2}


_BY_PROTOCOL = {"interactive": _interactive, "automatic": _automatic, "volume": _volume,
                "video": _video}


def summarize(rows: list[dict[str, Any]], protocol: str) -> list[dict[str, Any]]:
    """One record per ``(model, method)`` of ``rows`` (in order of first appearance)."""
    fn = _BY_PROTOCOL[protocol]
    return [{"model": m, "method": meth, **fn(group)}
            for (m, meth), group in _groups([r for r in rows if r["protocol"] == protocol]
                                            ).items()]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def summary_table(records: list[dict[str, Any]], protocol: str, *,
                  markdown: bool = False) -> str:
    """The summary records as an aligned text table (or a Markdown table)."""
    cols = ("model", "method") + HEADLINES[protocol]
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in records]
    if markdown:
        lines = ["| " + " | ".join(cols) + " |",
                 "| " + " | ".join("---" if i < 2 else "---:" for i in range(len(cols))) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(cols)]
    def line(vals: list[str]) -> str:
        return "  ".join(v.ljust(w) if i < 2 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(vals, widths, strict=False)))
    return "\n".join([line(list(cols)), line(["-" * w for w in widths])] +
                     [line(row) for row in cells])
