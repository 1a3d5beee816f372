"""--precision on the command line and precision= in the notebook API."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segany.api import Segmenter
from napari_segany.cli import main
from napari_segany.engine import device as device_mod
from napari_segany.engine import load_model
from napari_segany.storage import LabelsStore

TINY = ["--model", "sam_tiny", "--random-weights", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    monkeypatch.setenv("NAPARI_SEGANY_CACHE_DIR", str(tmp_path / "model-cache"))


@pytest.fixture
def tiff2d(tmp_path):
    img = np.random.default_rng(0).integers(100, 400, size=(64, 72)).astype(np.uint16)
    img[20:40, 20:50] += 3000
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, img)
    return path


def _segment(tmp_path, tiff2d, *extra):
    out = tmp_path / "out"
    code = main(["segment", str(tiff2d), "--box", "15,15,55,45", "--out", str(out), *TINY,
                 *extra])
    assert code == 0
    return LabelsStore.open(out / "labels.zarr").provenance["model"]


@pytest.mark.parametrize("flag,expected", [("fp32", "fp32"), ("bf16", "bf16")])
def test_precision_option_is_used_and_recorded(tmp_path, tiff2d, flag, expected):
    assert _segment(tmp_path, tiff2d, "--precision", flag)["precision"] == expected


def test_auto_precision_follows_the_cpu(tmp_path, tiff2d, monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    monkeypatch.delenv("NAPARI_SEGANY_PRECISION", raising=False)
    assert _segment(tmp_path, tiff2d, "--precision", "auto")["precision"] == "bf16"
    assert _segment(tmp_path, tiff2d, "--precision", "fp32", "--overwrite")["precision"] == "fp32"
    assert _segment(tmp_path, tiff2d, "--overwrite")["precision"] == "bf16"  # the default


def test_environment_gives_the_default(tmp_path, tiff2d, monkeypatch):
    monkeypatch.setenv("NAPARI_SEGANY_PRECISION", "bf16")
    assert _segment(tmp_path, tiff2d)["precision"] == "bf16"


def test_bad_precision_is_a_usage_error(tmp_path, tiff2d, capsys):
    with pytest.raises(SystemExit) as info:
        main(["segment", str(tiff2d), "--box", "1,1,9,9", "--out", str(tmp_path / "o"), *TINY,
              "--precision", "int4"])
    assert info.value.code == 2
    assert "--precision" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_fp16_on_cpu_refused_before_anything_is_written(tmp_path, tiff2d, capsys):
    code = main(["segment", str(tiff2d), "--box", "1,1,9,9", "--out", str(tmp_path / "o"), *TINY,
                 "--precision", "fp16"])
    err = capsys.readouterr().err
    assert code == 2 and "fp16 autocast is not supported on the CPU" in err
    assert not (tmp_path / "o").exists()


def test_segmenter_precision(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, size=(40, 50)).astype(np.uint8)
    seg = Segmenter(image, model="sam_tiny", random_weights=True, device="cpu",
                    precision="bf16", labels=tmp_path / "l.zarr")
    assert seg.backend.precision == "bf16"
    assert LabelsStore.open(tmp_path / "l.zarr").provenance["model"]["precision"] == "bf16"
    backend = load_model("sam_tiny", random_weights=True, device="cpu")
    with pytest.raises(ValueError, match="pass precision= to load_model"):
        Segmenter(image, model=backend, precision="fp32", labels=tmp_path / "m.zarr")
