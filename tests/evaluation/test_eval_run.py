"""Outputs, progress, cancel and resume of an evaluation; ``Segmenter.evaluate``."""

from __future__ import annotations

import csv
import json
import threading

import numpy as np
import pytest
from PIL import Image
from test_eval_protocols import discs

from napari_segany.evaluation import (
    COLUMNS,
    InteractiveSettings,
    Sample,
    VolumeSettings,
    evaluate,
    read_rows,
)
from rule_backend import RuleBackend

S = InteractiveSettings(n_iterations=2)


def _samples(n=3):
    out = []
    for i in range(n):
        img, lab = discs(3 + i, seed=i)
        out.append(Sample(f"img{i}", img, lab))
    return out


def test_outputs_are_written_and_readable(tmp_path):
    res = evaluate(_samples(2), [RuleBackend(name="a"), RuleBackend(name="b", threshold=200)],
                   settings=S, out=tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert {"results.csv", "summary.json", "prompts.json", "report.md", "plots",
            "run.json", "units.txt"} <= names
    with open(tmp_path / "results.csv") as fh:
        header = next(csv.reader(fh))
    assert tuple(header) == COLUMNS
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == len(res.rows) == 2 * (3 + 4) * 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["model"] for r in summary["summary"]] == ["a", "b"]
    assert set(summary["by_dataset"]) == {"img0", "img1"}
    assert summary["timing"]["a"]["objects"] == 7
    assert summary["timing"]["a"]["embeddings"]["computed"] == 2
    report = (tmp_path / "report.md").read_text()
    assert "| model | method | objects |" in report and "![iou_vs_clicks]" in report
    png = Image.open(tmp_path / "plots" / "iou_vs_clicks.png")
    assert png.size[0] > 600
    assert "a " in res.table() and "iou_first" in res.table()
    df = res.to_pandas()
    assert len(df) == len(res.rows)


def test_random_weights_are_labelled(tmp_path, sam):
    img, lab = discs(2, size=64)
    evaluate(Sample("d", img, lab), [sam], settings=InteractiveSettings(n_iterations=1),
             out=tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "**Random weights** (sam_tiny)" in report and "meaningless" in report
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["models"]["sam_tiny"]["random_weights"] is True


def test_progress_reaches_the_total():
    calls = []
    evaluate(_samples(2), [RuleBackend()], settings=S,
             progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1] == 2 * 3  # two planes, three predictions each
    assert all(d <= t for d, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


class _CancelAfter:
    def __init__(self, n):
        self.n, self.calls = n, 0

    def __call__(self):
        self.calls += 1
        return self.calls > self.n


def test_cancel_keeps_finished_units_and_resume_completes_them(tmp_path):
    rb = RuleBackend()
    first = evaluate(_samples(3), [rb], settings=S, out=tmp_path, cancel=_CancelAfter(6))
    assert first.cancelled
    done_first = {r["dataset"] for r in first.rows}
    assert done_first and done_first != {"img0", "img1", "img2"}
    assert json.loads((tmp_path / "summary.json").read_text())["cancelled"] is True
    assert "cancelled" in (tmp_path / "report.md").read_text()
    rb2 = RuleBackend()
    second = evaluate(_samples(3), [rb2], settings=S, out=tmp_path)
    assert not second.cancelled
    assert rb2.embed_calls == 3 - len(done_first)  # finished images are not redone
    full = evaluate(_samples(3), [RuleBackend()], settings=S)
    key = lambda r: (r["dataset"], r["object_id"], r["iteration"])  # noqa: E731
    assert sorted(map(key, second.rows)) == sorted(map(key, full.rows))
    assert len(read_rows(tmp_path / "results.csv")) == len(full.rows)


def test_resume_adds_a_model_and_refuses_other_settings(tmp_path):
    evaluate(_samples(1), [RuleBackend(name="a")], settings=S, out=tmp_path)
    a, b = RuleBackend(name="a"), RuleBackend(name="b")
    res = evaluate(_samples(1), [a, b], settings=S, out=tmp_path)
    assert a.embed_calls == 0 and b.embed_calls == 1
    assert {r["model"] for r in res.rows} == {"a", "b"}
    with pytest.raises(ValueError, match=r"another evaluation \(settings \['n_iterations'\]"):
        evaluate(_samples(1), [a], settings=InteractiveSettings(n_iterations=5), out=tmp_path)
    res = evaluate(_samples(1), [a], settings=InteractiveSettings(n_iterations=5),
                   out=tmp_path, resume=False)
    assert {r["model"] for r in read_rows(tmp_path / "results.csv")} == {"a"}


def test_a_torn_last_unit_is_dropped_on_resume(tmp_path):
    evaluate(_samples(2), [RuleBackend()], settings=S, out=tmp_path)
    units = (tmp_path / "units.txt").read_text().splitlines()
    (tmp_path / "units.txt").write_text(units[0] + "\n")  # the second unit never finished
    with open(tmp_path / "results.csv", "a") as fh:
        fh.write("rule,img1,interactive,point,,1,0")  # and a torn line
    rb = RuleBackend()
    res = evaluate(_samples(2), [rb], settings=S, out=tmp_path)
    assert rb.embed_calls == 1
    assert len(res.rows) == (3 + 4) * 3


def test_cancel_with_an_event_stops_at_once():
    ev = threading.Event()
    ev.set()
    res = evaluate(_samples(1), [RuleBackend()], settings=S, cancel=ev)
    assert res.cancelled and res.rows == []


def test_segmenter_evaluate_reuses_its_embeddings(sam, tmp_path):
    import napari_segany as sa

    img, lab = discs(2, size=64)
    seg = sa.Segmenter(img, model=sam, cache=tmp_path / "emb.zarr")
    seg.embedding()
    res = seg.evaluate(lab, settings=InteractiveSettings(n_iterations=1), out=tmp_path / "o")
    assert len(res.rows) == 2 * 2 and res.rows[0]["model"] == "sam_tiny"
    assert res.summary["timing"]["sam_tiny"]["embeddings"] == {"computed": 0, "loaded": 0}
    assert (tmp_path / "o" / "report.md").exists()
    vol = np.stack([img] * 4)
    seg3 = sa.Segmenter(vol, model=sam)
    res = seg3.evaluate(np.stack([lab] * 4), protocol="volume",
                        settings=VolumeSettings(methods=("slice",)))
    assert {r["object_id"] for r in res.rows if r["source"] == "volume"} == {1, 2}


@pytest.mark.usefixtures("one_torch_thread")
def test_embedding_cache_is_filled_once_and_reused(sam, tmp_path):
    img, lab = discs(2, size=64)
    stack, labels = np.stack([img, img[::-1]]), np.stack([lab, lab[::-1]])
    kw = {"settings": InteractiveSettings(n_iterations=1), "cache_dir": tmp_path / "emb"}
    first = evaluate(Sample("s", stack, labels), [sam], out=tmp_path / "a", **kw)
    assert first.summary["timing"]["sam_tiny"]["embeddings"] == {"computed": 2, "loaded": 0}
    assert list((tmp_path / "emb").iterdir())  # one cache folder per model
    second = evaluate(Sample("s", stack, labels), [sam], out=tmp_path / "b", **kw)
    assert second.summary["timing"]["sam_tiny"]["embeddings"] == {"computed": 0, "loaded": 2}
    assert [r["iou"] for r in second.rows] == [r["iou"] for r in first.rows]
