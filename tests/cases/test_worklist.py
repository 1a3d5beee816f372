"""The worklist: three DICOM cases, two annotated through the API, statuses and the class
table reopened from disk, and the finished cases exported as one DICOM-SEG each."""

from __future__ import annotations

import json

import highdicom as hd
import numpy as np
import pydicom
import pytest

from dicom_from_nifti import load_nifti, write_series
from napari_segany.cases import CasesError, ClassTable, Worklist, export_finished
from napari_segany.cli import main
from napari_segany.intensity import Normalizer
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.session import Session
from napari_segany.storage import LabelsStore
from testdata import DATA

VOLUMES = {"case_a": DATA / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz",
           "case_b": DATA / "totalsegmentator" / "example_ct_sm.nii.gz",
           "case_c": DATA / "totalsegmentator" / "example_mr_sm.nii.gz"}
needs_data = pytest.mark.skipif(not all(p.exists() for p in VOLUMES.values()),
                                reason="real data absent")


def _bright_point(data, norm, k):
    """(x, y) of a pixel the rule backend segments (bright after the window) on plane k."""
    rgb = norm(np.asarray(data[k]))
    ys, xs = np.nonzero(rgb[..., 0] > 128)
    i = len(ys) // 2
    return [float(xs[i]), float(ys[i])]


def _annotate(wl, case, backend, *, propagate):
    img = wl.image(case)
    norm = Normalizer.fit(img.data, mode="window", window="ct_bone")
    session = Session(img.data, backend, normalizer=norm, labels=case.labels)
    k = img.data.shape[0] // 2
    prompt = ObjectPrompt(points=[_bright_point(img.data, norm, k)], labels=[1])
    bone = wl.classes.id_of("bone")
    if propagate:
        prompts = PromptSet()
        prompts.add((k,), bone, prompt)
        session.propagate(prompts, method="slice")
        session.labels.set_object(bone, class_name="bone")
    else:
        session.commit(session.segment(prompt, (k,))[1], obj_id=bone, class_name="bone")
        seg = session.segment(ObjectPrompt(box=[2, 2, 12, 12]), (k,))[1]
        seg.mask[:] = False
        seg.mask[3:9, 3:9] = True
        session.commit(seg, obj_id=wl.classes.id_of("lesion"), class_name="lesion")
    labels = np.stack([session.labels.read_plane((z,)) for z in range(img.data.shape[0])])
    getattr(session.labels, "close", lambda: None)()
    return labels


@needs_data
def test_three_cases_two_annotated_reopened_and_exported(tmp_path, rule_backend):
    src = tmp_path / "study"
    for cid, path in VOLUMES.items():
        vol, affine = load_nifti(path)
        write_series(src / cid, vol, affine, modality="MR" if "mr" in path.name else "CT",
                     description=f"{cid} axial")
    (src / "readme.txt").write_text("not a case")
    wl = Worklist.create(src, tmp_path / "work", classes=["liver", "bone", "lesion"])
    assert wl.ids == ["case_a", "case_b", "case_c"]
    assert [c.status for c in wl.cases] == ["todo"] * 3
    assert wl.classes.id_of("bone") == 2 and wl.classes["liver"].code[1] == "10200004"

    first = wl.next_case(user="dr_a")
    assert first.id == "case_a" and first.status == "in progress" and first.user == "dr_a"
    assert wl.next_case(user="dr_a").id == "case_a"  # her own case until she finishes it
    labels_a = _annotate(wl, first, rule_backend, propagate=True)
    assert labels_a.any(axis=(1, 2)).sum() > 1 and set(np.unique(labels_a)) == {0, 2}
    assert wl.check(first) == []  # object 2 is "bone", class 2 of the table
    wl.set_status(first, "done", user="dr_a")

    second = wl.next_case(user="dr_b")
    assert second.id == "case_b"
    labels_b = _annotate(wl, second, rule_backend, propagate=False)
    assert set(np.unique(labels_b)) == {0, 2, 3}
    wl.set_status(second, "needs review", user="dr_b", note="check the lesion")
    wl.set_status(second, "done", user="dr_c")

    again = Worklist.open(tmp_path / "work")  # everything from disk
    assert [(c.id, c.status) for c in again.cases] == [
        ("case_a", "done"), ("case_b", "done"), ("case_c", "todo")]
    b = again.case("case_b")
    assert [h["status"] for h in b.history] == ["in progress", "needs review", "done"]
    assert [h["user"] for h in b.history] == ["dr_b", "dr_b", "dr_c"]
    assert b.history[1]["note"] == "check the lesion" and b.updated.startswith("20")
    assert [c.to_dict() for c in again.classes] == [c.to_dict() for c in wl.classes]
    info = again.labels_info("case_b")
    assert info["objects"] == {2: "bone", 3: "lesion"} and info["edited"]
    assert again.summary() == {"todo": 1, "in progress": 0, "done": 2, "needs review": 0}

    results = export_finished(again)
    assert [(r.case, r.error) for r in results] == [("case_a", None), ("case_b", None)]
    for r, labels in zip(results, (labels_a, labels_b), strict=True):
        assert r.path.name == f"{r.case}.seg.dcm"
        seg = hd.seg.segread(r.path)
        case = again.case(r.case)
        uids = again.image(case).data.sop_instance_uids
        px = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids,
                                               combine_segments=True)
        for n in seg.get_segment_numbers():
            desc = seg.get_segment_description(n)
            cls = again.classes[desc.segment_label]
            assert desc.segmented_property_type.value == cls.code[1]
            np.testing.assert_array_equal(px == n, labels == cls.id)
        assert np.array_equal(px > 0, labels > 0)
        assert str(seg.ContentCreatorName) == ("dr_a^" if r.case == "case_a" else "dr_c^")
    assert sorted(p.name for p in (tmp_path / "work" / "exports").iterdir()) == [
        "case_a.seg.dcm", "case_b.seg.dcm"]


def _synthetic_cases(root, n=3):
    rng = np.random.default_rng(1)
    for i in range(n):
        vol = rng.integers(-100, 100, (4, 16, 12)).astype(np.int16)
        write_series(root / f"p{i}", vol, np.diag([0.5, 0.5, 2.0, 1.0]))


def test_csv_cases_statuses_and_refusals(tmp_path):
    _synthetic_cases(tmp_path / "img")
    (tmp_path / "list.csv").write_text("case,source,status\nfirst,img/p0,\nsecond,img/p1,"
                                       "needs-review\n")
    wl = Worklist.create(tmp_path / "list.csv", tmp_path / "w", classes=["liver"])
    assert [(c.id, c.status) for c in wl.cases] == [("first", "todo"),
                                                    ("second", "needs review")]
    with pytest.raises(CasesError, match="no labels store yet"):
        wl.set_status("first", "done")
    store = LabelsStore.create(wl.case("first").labels, (4, 16, 12))
    plane = np.zeros((16, 12), np.uint32)
    plane[2:5, 2:5] = 7
    store.write_plane((1,), plane)
    store.set_object(7, class_name="tumour")
    getattr(store, "close", lambda: None)()
    with pytest.raises(CasesError, match=r"object 7 \(tumour\) is not a class"):
        wl.set_status("first", "done")
    assert wl.set_status("first", "done", force=True).status == "done"
    with pytest.raises(CasesError, match="unknown status"):
        wl.set_status("first", "finished-ish")
    with pytest.raises(CasesError, match="no case 'third'"):
        wl.case("third")
    with open(tmp_path / "list.csv", "a") as f:
        f.write("third,img/p2,\n")
    assert wl.refresh() == ["third"] and len(wl) == 3
    assert wl.next_case(user="x", claim=False).id == "third"
    results = export_finished(wl, format="rtstruct")
    assert results[0].case == "first" and results[0].error is None
    assert pydicom.dcmread(results[0].path).StructureSetROISequence[0].ROIName == "tumour"
    with pytest.raises(CasesError, match="already holds a worklist"):
        Worklist.create(tmp_path / "img", tmp_path / "w")
    with pytest.raises(CasesError, match="may add classes but not change"):
        Worklist.create(tmp_path / "list.csv", tmp_path / "w", classes=["spleen"])
    assert Worklist.create(tmp_path / "list.csv", tmp_path / "w",
                           classes=["liver", "spleen"]).classes.describe() == "1 liver, 2 spleen"
    moved = tmp_path / "share"  # the same files, mounted elsewhere
    moved.mkdir()
    for name in ("img", "list.csv", "w"):
        (tmp_path / name).rename(moved / name)
    again = Worklist.open(moved / "w")
    first = again.case("first")
    assert first.source == moved / "img" / "p0" and first.labels == moved / "w" / "cases" / \
        "first" / "labels.zarr"
    assert first.labels.exists() and again.image(first).data.shape == (4, 16, 12)
    assert again.refresh() == []


def test_class_table_file(tmp_path):
    table = ClassTable()
    table.add("liver", color="#ff0000")
    table.add("spleen", id=5, code={"scheme": "SCT", "value": "78961009", "meaning": "Spleen"})
    table.add("kidney")
    assert [(c.id, c.name) for c in table] == [(1, "liver"), (5, "spleen"), (6, "kidney")]
    table.save(tmp_path / "classes.json")
    back = ClassTable.load(tmp_path / "classes.json")
    assert back.to_dict() == table.to_dict() and back["LIVER"].color == (255, 0, 0)
    assert json.loads((tmp_path / "classes.json").read_text())["classes"][2]["code"][
        "value"] == "64033007"
    with pytest.raises(CasesError, match="already in the table"):
        back.add("Liver")
    with pytest.raises(CasesError, match="id 5 is taken"):
        back.add("lung", id=5)
    (tmp_path / "names.txt").write_text("liver\nspleen\n")
    assert ClassTable.load(tmp_path / "names.txt").describe() == "1 liver, 2 spleen"


def test_cli_cases(tmp_path, capsys):
    _synthetic_cases(tmp_path / "img")
    work = str(tmp_path / "w")
    assert main(["cases", "init", str(tmp_path / "img"), work, "--class", "liver",
                 "--class", "lesion"]) == 0
    assert "3 cases (3 new); classes: 1 liver, 2 lesion" in capsys.readouterr().out
    assert main(["cases", "next", work, "--user", "dr_a"]) == 0
    out = capsys.readouterr().out
    assert "case p0 (in progress, dr_a)" in out and "labels.zarr" in out
    assert main(["cases", "set", work, "p1", "in-progress", "--user", "dr_b"]) == 0
    assert main(["cases", "list", work]) == 0
    out = capsys.readouterr().out
    assert "p1" in out and "dr_b" in out and "3 cases: 1 todo, 2 in progress" in out
    assert main(["cases", "classes", work, "--add", "spleen"]) == 0
    assert "78961009" in capsys.readouterr().out
    assert main(["cases", "set", work, "p0", "done"]) == 2
    assert "no labels store yet" in capsys.readouterr().err
    assert main(["cases", "list", str(tmp_path / "nowhere")]) == 2
    assert main(["cases", "export", work, "-q"]) == 0
    assert "exported 0 of 0 finished cases" in capsys.readouterr().out
