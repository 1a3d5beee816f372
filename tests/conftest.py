"""Fixtures shared by the whole suite.

* ``sam`` / ``sam2``: tiny random-weight configurations of the real SAM and SAM2
  architectures, built through the real builders (one per test module).
* ``one_torch_thread``: runs a module with one torch thread (the test CPUs are shared:
  one thread is several times faster than two there). Use it with
  ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
* ``rule_backend``: the deterministic torch-free backend of :mod:`rule_backend`.

The tests folder is put on ``sys.path`` so that test modules in sub-folders import
:mod:`rule_backend` and :mod:`testdata` directly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

# The suite computes in float32 on every machine (precision="auto" would be bf16 on CPUs with
# native bf16 and float32 elsewhere); tests of bf16 ask for it. Commands the tests start
# inherit this. NAPARI_SEGANY_PRECISION=auto runs the suite at this machine's default.
os.environ.setdefault("NAPARI_SEGANY_PRECISION", "fp32")

from rule_backend import rule_backend_fixture  # noqa: E402, F401  (the rule_backend fixture)


@pytest.fixture(scope="module")
def sam():
    """The tiny SAM architecture (256 px input, 2-block encoder), random weights."""
    from napari_segany.engine import load_model

    return load_model("sam_tiny", random_weights=True, device="cpu")


@pytest.fixture(scope="module")
def sam2():
    """The tiny SAM2.1 architecture (256 px input, stages 1-1-2-1), random weights."""
    from napari_segany.engine import load_model

    return load_model("sam2_tiny", random_weights=True, device="cpu")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module (restored after it)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
