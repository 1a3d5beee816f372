"""Where the tests find the real data with ground truth.

``../shared/data`` beside the repository, or ``$NAPARI_SEGANY_TEST_DATA``. Tests that need it
skip when it is absent, so a fresh clone passes its tests.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(os.environ.get("NAPARI_SEGANY_TEST_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
