"""Command line: ``napari-segany segment | propagate | track | auto | boxes | embed | batch |
export | cases | evaluate | finetune | models``.

Points follow the convention of segment-anything's examples: ``--points "x,y;x,y"`` with
``--point-labels "1,0"`` (1 positive, 0 negative); boxes are ``--box x0,y0,x1,y1`` and may
be repeated (one object per box). User errors exit with status 2 and a one-line message on
stderr, never a traceback; progress bars go to stderr. Each command is a module of this
package with ``add_parser(subparsers)`` and ``run(args)``; :func:`main` holds the one error
handler. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..errors import CheckpointError, DownloadError, UsageError
from . import (
    auto,
    batch,
    boxes,
    cases,
    embed,
    evaluate,
    export,
    finetune,
    models,
    propagate,
    segment,
    track,
)
from ._args import (
    join_negative_values,
    parse_box,
    parse_floats,
    parse_labels,
    parse_points,
    parse_range,
)

__all__ = ["main", "build_parser", "parse_points", "parse_box", "parse_range", "parse_labels",
           "parse_floats", "UsageError"]

#: The commands, in the order ``--help`` lists them.
COMMANDS = (segment, propagate, track, auto, boxes, embed, batch, export, cases, evaluate,
            finetune, models)


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-segany`` argument parser (each sub-command sets ``_run``)."""
    parser = argparse.ArgumentParser(
        prog="napari-segany", description="Segment Anything (SAM, SAM2) for scientific images.",
        epilog="Run 'napari-segany COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-segany`` command; returns the exit status."""
    args = build_parser().parse_args(join_negative_values(
        sys.argv[1:] if argv is None else list(argv)))
    try:
        return args._run(args)
    except DownloadError as exc:
        _error(f"{exc} (for a compute-only smoke run without weights add --random-weights)")
        return 2
    except (UsageError, ValueError, FileNotFoundError, CheckpointError) as exc:
        _error(f"error: {exc}")
        return 2
    except OSError as exc:  # unreadable input, full disk, no permission: the user can fix it
        _error(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        _error("interrupted; every plane written so far is complete and kept")
        return 130


def _error(message: str) -> None:
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    print(f"napari-segany: {text}", file=sys.stderr)
