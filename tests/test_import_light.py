"""Importing napari_segany must not import torch, model libraries or a GUI toolkit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

HEAVY = [
    "torch", "torchvision", "segment_anything", "sam2", "hydra",
    "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui",
]  # fmt: skip


def _run(code: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(SRC)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_light():
    result = _run(
        f"""
        import json, sys
        import napari_segany, napari_segany.engine, napari_segany.prompts, napari_segany.intensity
        heavy = {HEAVY!r}
        print(json.dumps({{
            "file": napari_segany.__file__,
            "loaded": sorted(m for m in heavy if m in sys.modules),
        }}))
        """
    )
    assert Path(result["file"]).resolve().is_relative_to(SRC.resolve())
    assert result["loaded"] == []


def test_lazy_public_names():
    result = _run(
        """
        import json, sys
        import napari_segany
        before = "napari_segany.engine.registry" in sys.modules
        load_model = napari_segany.load_model
        from napari_segany.engine.registry import load_model as direct
        print(json.dumps({
            "before": before,
            "same": load_model is direct,
            "torch": "torch" in sys.modules,
            "in_dir": "load_model" in dir(napari_segany),
            "models": napari_segany.available_models(),
            "prompt": napari_segany.ObjectPrompt.__module__,
        }))
        """
    )
    assert result["before"] is False
    assert result["same"] is True
    assert result["torch"] is False  # resolving the name still does not build a model
    assert result["in_dir"] is True
    assert "sam_vit_b" in result["models"]
    assert result["prompt"] == "napari_segany.prompts.model"


def test_unknown_attribute():
    result = _run(
        """
        import json
        import napari_segany
        try:
            napari_segany.no_such_name
        except AttributeError as exc:
            print(json.dumps({"error": str(exc)}))
        """
    )
    assert "no_such_name" in result["error"]
