"""The command line never destroys earlier work: --overwrite only replaces labels stores,
refused input changes no byte, concurrent runs get their own object ids, provenance is kept
per run, and bad input is found before anything is written (numbered cases 3-7 of "Never lose
an annotation", and the bad input listed with them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_segany.cli import main
from napari_segany.storage import LabelsStore

SAM = ["--model", "sam_tiny", "--random-weights", "--device", "cpu"]
GO = ["--min-score", "-1e9", "--min-area", "0", "--max-area-ratio", "inf", "-q"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    monkeypatch.setenv("NAPARI_SEGANY_CACHE_DIR", str(tmp_path / "model-cache"))


def _volume(shape=(4, 48, 56)) -> np.ndarray:
    rng = np.random.default_rng(1)
    vol = rng.integers(100, 400, size=shape).astype(np.uint16)
    vol[..., 15:35, 20:40] += 2500
    return vol


@pytest.fixture
def tiff(tmp_path) -> Path:
    path = tmp_path / "data" / "vol.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, _volume(), photometric="minisblack")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def error(capsys, argv, *needles) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-segany: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


def ok(capsys, argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def propagate(tiff, out, *extra):
    return ["propagate", tiff, "--box", "18,12,42,38", "--plane", "1", "--out", out, *GO, *SAM,
            *extra]


def test_overwrite_never_deletes_a_folder_that_is_not_a_labels_store(capsys, tiff, tmp_path):
    """Case 3: the folder holds the input TIFF and notes."""
    folder = tiff.parent
    (folder / "notes.txt").write_text("hours of work")
    before = snapshot(folder)
    error(capsys, propagate(tiff, folder, "--overwrite"), "is the input")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("more work")
    error(capsys, propagate(tiff, other, "--overwrite"), "not a napari-segany labels store")
    assert snapshot(folder) == before and (other / "notes.txt").read_text() == "more work"


def test_out_equal_to_the_input_is_refused(capsys, tmp_path):
    """Case 3: --out is the input zarr or frame folder."""
    import zarr

    arr = zarr.create_array(store=str(tmp_path / "in.zarr"), shape=(3, 40, 40), dtype="uint16",
                            chunks=(1, 40, 40), zarr_format=3)
    arr[:] = _volume((3, 40, 40))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(_volume((40, 40)).astype(np.uint8)).save(frames / f"f{i}.png")
    for src in (tmp_path / "in.zarr", frames):
        before = snapshot(src)
        for extra in ([], ["--overwrite"]):
            error(capsys, ["propagate", src, "--box", "5,5,30,30", "--plane", "0", "--out", src,
                           *GO, *SAM, *extra], "is the input")
        assert snapshot(src) == before


def test_a_refused_cache_leaves_the_store_byte_identical(capsys, tiff, tmp_path):
    """Case 4: embed into a cache, then propagate with other intensities and that cache."""
    cache, out = tmp_path / "c.zarr", tmp_path / "keep.zarr"
    ok(capsys, ["embed", tiff, "--cache", cache, "-q", *SAM])
    ok(capsys, propagate(tiff, out))
    before, cache_before = snapshot(out), snapshot(cache)
    error(capsys, propagate(tiff, out, "--cache", cache, "--percentiles", "0.5,99.5",
                            "--overwrite"), "embedding cache")
    assert snapshot(out) == before and snapshot(cache) == cache_before
    fresh = tmp_path / "never.zarr"
    error(capsys, propagate(tiff, fresh, "--cache", cache, "--percentiles", "0.5,99.5"),
          "embedding cache")
    assert not fresh.exists()  # no empty store left behind


_RUN = """
import sys
from napari_segany.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_two_runs_into_one_store_get_their_own_objects(tiff, tmp_path):
    """Case 5: two processes propagate --points into one store at the same time."""
    out = tmp_path / "shared.zarr"
    runs = [subprocess.Popen([sys.executable, "-c", _RUN, "propagate", str(tiff), "--points",
                              pts, "--plane", "1", "--out", str(out), *GO, *SAM],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for pts in ("25,20", "30,30")]
    outs = [r.communicate(timeout=600) for r in runs]
    assert all(r.returncode == 0 for r in runs), [o[1][-1500:] for o in outs]
    store = LabelsStore.open(out, mode="r")
    assert set(store.objects) == {1, 2}
    said = sorted(line.split(":")[0] for o in outs for line in o[0].splitlines()
                  if line.startswith("object "))
    assert said == ["object 1", "object 2"]
    assert len([r for r in store.provenance["runs"] if r.get("source")]) == 2


def test_a_second_run_keeps_the_first_runs_provenance(capsys, tiff, tmp_path):
    """Case 6."""
    out = tmp_path / "p.zarr"
    ok(capsys, propagate(tiff, out))
    ok(capsys, ["propagate", tiff, "--points", "30,30", "--plane", "2", "--out", out, *GO,
                "--model", "sam2_tiny", "--random-weights", "--device", "cpu"])
    prov = LabelsStore.open(out, mode="r").provenance
    models = [r["model"]["name"] for r in prov["runs"] if "model" in r]
    assert models == ["sam_tiny", "sam2_tiny"]
    assert prov["model"]["name"] == "sam2_tiny"  # the latest
    prompted = [r["prompts"] for r in prov["runs"] if "prompts" in r]
    assert len(prompted) == 2 and prompted[0] != prompted[1]


def test_bad_frame_folders_are_refused_before_anything_is_written(capsys, tmp_path):
    """Case 7: a frame of another size, another mode, or a corrupt frame."""
    for name, bad in (("size", np.zeros((30, 40), np.uint8)),
                      ("mode", np.zeros((40, 40, 3), np.uint8)), ("corrupt", None)):
        frames = tmp_path / f"frames_{name}"
        frames.mkdir()
        for i in range(4):
            Image.fromarray(np.full((40, 40), 90, np.uint8)).save(frames / f"f{i}.png")
        if bad is None:
            (frames / "f2.png").write_bytes(b"\x89PNG broken")
        else:
            Image.fromarray(bad).save(frames / "f2.png")
        out = tmp_path / f"{name}.zarr"
        error(capsys, ["propagate", frames, "--box", "5,5,30,30", "--plane", "0", "--out", out,
                       *GO, *SAM], "f2.png")
        assert not out.exists()


def test_images_too_large_to_hold_are_refused_before_a_store_exists(capsys, tmp_path):
    """Case 7: a TIFF declaring 2**31 x 2**31 pixels, a (200000, 200000) zarr."""
    import zarr

    big = zarr.create_array(store=str(tmp_path / "big.zarr"), shape=(200_000, 200_000),
                            chunks=(1024, 1024), dtype="uint8", zarr_format=3)
    out = tmp_path / "out"
    error(capsys, ["segment", tmp_path / "big.zarr", "--box", "1,1,9,9", "--out", out, *SAM],
          "200000 x 200000 pixels", "crop it")
    assert not out.exists() and big.shape == (200_000, 200_000)
    huge = tmp_path / "huge.tif"  # a small tiled TIFF whose header declares 2**31 x 2**31
    tifffile.imwrite(huge, np.zeros((512, 512), np.uint8), tile=(256, 256), bigtiff=True)
    with tifffile.TiffFile(huge, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(2**31)
        tif.pages[0].tags["ImageLength"].overwrite(2**31)
    error(capsys, ["segment", huge, "--box", "1,1,9,9", "--out", out, *SAM], "pixels")
    assert not out.exists()


def test_a_truncated_tiff_and_a_5d_tiff_are_clear_errors(capsys, tmp_path):
    cut = tmp_path / "cut.tif"
    tifffile.imwrite(tmp_path / "ok.tif", np.zeros((8, 8), np.uint8))
    cut.write_bytes((tmp_path / "ok.tif").read_bytes()[:8])
    error(capsys, ["segment", cut, "--box", "1,1,5,5", "--out", tmp_path / "o", *SAM],
          "cannot read image")
    five = tmp_path / "five.tif"
    tifffile.imwrite(five, np.zeros((2, 2, 2, 8, 8), np.uint8), photometric="minisblack")
    error(capsys, ["segment", five, "--box", "1,1,5,5", "--out", tmp_path / "o", *SAM],
          "5D", "2 to 4 axes")


def test_object_ids_beyond_uint32_are_refused(capsys, tiff, tmp_path):
    prompts = tmp_path / "p.json"
    prompts.write_text('{"format": "napari-segany.prompts", "version": 1, "planes": [{"plane":'
                       ' [1], "objects": [{"id": 4294967296, "points": [[20, 20]], "labels": [1],'
                       ' "box": null}]}]}')
    error(capsys, ["propagate", tiff, "--prompts", prompts, "--out", tmp_path / "o.zarr",
                   *GO, *SAM], "4294967295")
    assert not (tmp_path / "o.zarr").exists()


def test_sam_py_spellings_are_accepted(capsys, tmp_path):
    img = tmp_path / "img.png"
    Image.fromarray(_volume((40, 48)).astype(np.uint8)).save(img)
    out = ok(capsys, ["segment", img, "--input_point", "10,10;20,20;1,1", "--input_label",
                      "1,1,0", "--input_box", "5,5,30,30", "--out", tmp_path / "o", *SAM])
    assert "object 1" in out
    error(capsys, ["segment", img, "--points", "1,2;;3,4", "--out", tmp_path / "o", *SAM],
          "empty point")


def test_model_option_combinations_are_explained(capsys, tmp_path):
    img = tmp_path / "img.png"
    Image.fromarray(_volume((40, 48)).astype(np.uint8)).save(img)
    ck = tmp_path / "w.pth"
    ck.write_bytes(b"x" * 64)
    base = ["segment", img, "--box", "5,5,30,30", "--out", tmp_path / "o", "--device", "cpu"]
    error(capsys, [*base, "--model", "sam_tiny", "--checkpoint", ck, "--random-weights"],
          "not both")
    error(capsys, [*base, "--checkpoint", ck, "--arch", "tiny"], "ambiguous", "sam_tiny")
    error(capsys, [*base, "--model", ck, "--arch", "tiny"], "ambiguous")
    err = error(capsys, [*base, "--checkpoint", ck, "--arch", "vit_b"], "not a checkpoint")
    assert "arbitrary code" not in err


def test_all_nan_images_get_a_command_line_hint(capsys, tmp_path):
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.full((3, 20, 20), np.nan, np.float32), photometric="minisblack")
    err = error(capsys, ["segment", path, "--box", "1,1,9,9", "--plane", "0", "--out",
                         tmp_path / "o", *SAM], "--window LOW,HIGH")
    assert "mode=" not in err


def test_class_names_for_objects_that_do_not_exist_are_refused(capsys, tiff, tmp_path):
    out = tmp_path / "s.zarr"
    ok(capsys, propagate(tiff, out))
    error(capsys, ["export", out, "--out", tmp_path / "c.json", "--class-name", "99=foo"],
          "[99]")
    assert not (tmp_path / "c.json").exists()


def test_a_nifti_with_a_nan_affine_is_read_without_it(capsys, tmp_path):
    data = np.zeros((20, 24, 3), np.int16)
    data[5:15, 5:15] = 100
    header = nib.Nifti1Image(data, None).header
    header.set_sform(None, code=0)
    header.set_qform(None, code=0)
    header["pixdim"][1] = np.nan  # the affine nibabel derives holds NaN
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, None, header), path)
    assert not np.all(np.isfinite(nib.load(str(path)).affine))
    out = tmp_path / "n.zarr"
    with pytest.warns(UserWarning, match="affine"):
        ok(capsys, ["propagate", path, "--box", "4,4,14,14", "--plane", "1", "--out", out,
                    *GO, *SAM])
    text = (out / ".segany" / "log.jsonl").read_text()
    assert "NaN" not in text  # the log stays valid JSON for any reader
    error(capsys, ["export", out, "--out", tmp_path / "n.nii.gz"], "--reference")
