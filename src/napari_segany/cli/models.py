"""``napari-segany models``: the models in the registry."""

from __future__ import annotations

import argparse
from typing import Any

from ..engine.registry import available_models, get_spec

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list the models in the registry",
                   description="List the registered models: name, family, architecture.")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    for name in available_models():
        spec = get_spec(name)
        print(f"{name:24s} {spec.family:5s} {spec.arch:16s} {spec.description}")
    return 0
