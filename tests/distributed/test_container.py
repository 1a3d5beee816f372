"""The container image: built with podman from a local Debian base, then ``napari-segany
--help``, a random-weights ``segment`` and the Dask worker's import inside it
(``scripts/container.sh``). Skipped where podman is absent (it needs the package index
reachable from the build, and several minutes)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed")
def test_the_image_builds_and_runs_the_command_line():
    env = {**os.environ, "SEGANY_JUPYTER": "0", "SEGANY_IMAGE": "localhost/napari-segany:test"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "container.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "usage: napari-segany" in out
    assert "segment: ok" in out
    assert "dask 20" in out
