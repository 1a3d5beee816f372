"""The Markdown report and the JSON summary of an evaluation."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .summary import summarize, summary_table

__all__ = ["write_summary", "write_report", "PROTOCOL_TITLES"]

PROTOCOL_TITLES = {
    "interactive": "Interactive 2D: a first prompt, then corrections from the errors",
    "automatic": "Automatic 2D: segment everything, matched to the instances",
    "volume": "Volumes: one prompt per object, propagated through the planes",
    "video": "Video: semi-supervised tracking from the first frame (DAVIS J and F)",
}

_EXPLAIN = {
    "interactive": "IoU per object after the first prompt (`iou_first`), after one "
                   "correction (`iou_1`) and after the last (`iou_last`), averaged over "
                   "objects; each correction adds a positive point in the missed part and "
                   "a negative point in the wrongly added part.",
    "automatic": "Means over planes: mSA (segmentation accuracy TP/(TP+FP+FN) averaged over "
                 "IoU thresholds 0.50 to 0.95), SA at 0.5 and 0.75, and precision, recall "
                 "and F1 at IoU 0.5.",
    "volume": "Means over objects of the Dice and normalised surface Dice on the whole "
              "volume, the mean Dice of the propagated planes, and the number of planes "
              "where an object was missed.",
    "video": "Means over the frames after each object's first frame: J (region IoU), F "
             "(boundary F-measure, DAVIS definition) and J&F.",
}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def write_summary(path: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """Write the JSON summary (NaN becomes null)."""
    p = Path(path)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(summary), indent=2) + "\n")
    os.replace(tmp, p)
    return p


def _random_note(models: dict[str, Any]) -> str | None:
    rnd = [m for m, info in models.items() if info.get("random_weights")]
    if not rnd:
        return None
    return (f"**Random weights** ({', '.join(rnd)}): these models were built without trained "
            "weights, so their masks, and every score below, are meaningless; the report "
            "shows what the evaluation measures and draws, not how good a model is.")


def write_report(folder: str | os.PathLike, summary: dict[str, Any], rows: list[dict],
                 plots: list[Path]) -> Path:
    """Write ``report.md`` in ``folder``: settings, summary table, figures, per data set."""
    out = Path(folder)
    protocol = summary["protocol"]
    lines = [f"# Evaluation report: {protocol}", "", PROTOCOL_TITLES[protocol], ""]
    note = _random_note(summary.get("models", {}))
    if note:
        lines += [f"> {note}", ""]
    if summary.get("cancelled"):
        lines += ["> The run was cancelled: the tables hold the units finished before it; "
                  "run it again with the same output folder to resume.", ""]
    if summary.get("error"):
        lines += [f"> The run stopped at an error: `{summary['error']}`. Rows finished before "
                  "it are kept.", ""]
    lines += ["## Summary", "", summary_table(summary["summary"], protocol, markdown=True), "",
              _EXPLAIN[protocol], ""]
    for p in plots:
        lines += [f"![{p.stem}]({p.relative_to(out).as_posix()})", ""]
    datasets = summary.get("datasets", [])
    if len(datasets) > 1:
        lines += ["## Per data set", ""]
        for d in datasets:
            recs = summarize([r for r in rows if r["dataset"] == d], protocol)
            lines += [f"### {d}", "", summary_table(recs, protocol, markdown=True), ""]
    lines += ["## Models and timing", "",
              "| model | weights | model id | seconds | objects | s / object | embeddings "
              "computed |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for name, info in summary.get("models", {}).items():
        t = summary.get("timing", {}).get(name, {})
        spo = t.get("seconds_per_object")
        lines.append(f"| {name} | {'random' if info.get('random_weights') else 'trained'} | "
                     f"`{info.get('model_id', '')}` | {t.get('seconds', 0):.1f} | "
                     f"{t.get('objects', 0)} | {'-' if spo is None else f'{spo:.3f}'} | "
                     f"{t.get('embeddings', {}).get('computed', 0)} |")
    lines += ["", "## Settings", "", "```json", json.dumps(_clean(summary.get("settings", {})),
                                                          indent=2), "```", ""]
    if summary.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in summary["notes"]] + [""]
    lines += ["Data: " + ", ".join(f"`{d}`" for d in datasets) + ".",
              f"Rows: `results.csv` ({len(rows)} rows); summary: `summary.json`; the first "
              "prompts of every object: `prompts.json`.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
