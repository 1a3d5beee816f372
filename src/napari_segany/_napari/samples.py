"""napari sample-data contributions (layer data tuples; no napari import needed)."""

from __future__ import annotations

from typing import Any

from ..samples import load_sample

__all__ = ["nuclei_sample", "volume_sample"]


def _layers(name: str) -> list[tuple[Any, dict[str, Any], str]]:
    sample = load_sample(name)
    return [(sample.image, {"name": f"{name} (sample)"}, "image")]


def nuclei_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """The synthetic 2D nuclei image, 256x256 uint16."""
    return _layers("nuclei")


def volume_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """The synthetic 3D volume (z, y, x) = (24, 128, 128) uint16."""
    return _layers("volume")
