"""Checkpoints of fine-tuned models, in the official layouts, with their metadata beside them.

* **SAM**: a plain state dict, as segment-anything's ``build_sam_vit_*`` loads it (strictly:
  an extra key would break it), so the metadata goes into a sidecar ``<name>.json``;
* **SAM2**: ``{"model": state_dict, "napari_segany": metadata}``; sam2's builder reads
  ``["model"]`` and the metadata travels in the file (the sidecar is written too).

Both load through :func:`napari_segany.load_model` (``model="sam_vit_b",
checkpoint=PATH``, ``--checkpoint PATH`` or just the path, whose architecture is guessed)
and the widget's model picker. Every file is written under a temporary name and renamed
into place when complete: a failure never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..storage.atomic import replacing

__all__ = ["save_checkpoint", "read_metadata", "METADATA_KEY"]

METADATA_KEY = "napari_segany"


def save_checkpoint(model: Any, path: str | os.PathLike, *, family: str,
                    metadata: dict[str, Any]) -> Path:
    """Write ``model``'s state dict to ``path`` (and ``path.json``); returns ``path``."""
    import torch

    path = Path(path)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    obj: Any = sd if family == "sam" else {"model": sd, METADATA_KEY: metadata}
    side = path.with_suffix(".json")
    with replacing(side) as tmp:
        tmp.write_text(json.dumps(metadata, indent=2, allow_nan=True) + "\n")
    with replacing(path) as tmp:
        torch.save(obj, tmp)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The training metadata of a fine-tuned checkpoint (its sidecar JSON)."""
    side = Path(path).with_suffix(".json")
    if not side.is_file():
        raise FileNotFoundError(f"no training metadata beside {path} (expected {side})")
    return json.loads(side.read_text())
