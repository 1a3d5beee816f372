"""The inputs of a batch: a folder, a glob pattern or a CSV manifest, and shards of them.

* a **folder**: every image file in it (TIFF, PNG, JPEG, BMP, NIfTI, ``.npy``; zarr arrays
  and DICOM series as sub-folders are named in a manifest instead), sorted by name;
* a **glob** (``"plates/*/*.tif"``, ``**`` recursive), sorted;
* a **CSV manifest** (``.csv``): a header row with ``image`` (required) and optionally
  ``out`` (the output), ``boxes`` (a box file, for ``boxes``), ``prompts`` (a prompts
  JSON, for ``propagate``) and ``key``; relative paths are relative to the manifest.

Outputs default to ``OUT_DIR/<key>.zarr`` (``<key>.cache`` for ``embed``), ``key`` being the
file name without its extension (parent folders joined by ``__`` where two inputs would
collide). :func:`shard` takes the deterministic share ``i`` of ``n`` for job arrays.
"""

from __future__ import annotations

import csv
import glob as globlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BatchError

__all__ = ["BatchItem", "collect_inputs", "shard", "parse_shard", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".npy", ".nii", ".nii.gz")


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch and where its results go.

    Attributes
    ----------
    key : str
        A unique name (the default output's stem; how progress and the summary name it).
    image : str
        The image path, as workers will read it.
    out : str
        The output: a labels store (``auto``, ``boxes``, ``propagate``) or an embedding
        cache folder (``embed``).
    boxes, prompts : str, optional
        A box file (``boxes``) or a prompts JSON (``propagate``) of this image.
    """

    key: str
    image: str
    out: str
    boxes: str | None = None
    prompts: str | None = None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".ome.tif", ".ome.tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.suffix else name


def _is_image(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def _keys(paths: list[Path]) -> list[str]:
    """File stems, made unique with parent folder names where they collide."""
    keys = [_stem(p) for p in paths]
    depth = 1
    while len(set(keys)) < len(keys) and depth < 16:
        seen: dict[str, int] = {}
        for k in keys:
            seen[k] = seen.get(k, 0) + 1
        keys = ["__".join([*p.parent.parts[-depth:], _stem(p)]) if seen[k] > 1 else k
                for p, k in zip(paths, keys, strict=True)]
        depth += 1
    return keys  # duplicates left are refused (with the files named) by _check_unique


def collect_inputs(source: str | os.PathLike, *, out_dir: str | os.PathLike | None = None,
                   suffix: str = ".zarr") -> list[BatchItem]:
    """The items of a folder, a glob pattern or a CSV manifest, sorted by key.

    Parameters
    ----------
    source : path or str
        A folder, a glob pattern, or a ``.csv`` manifest.
    out_dir : path, optional
        Where outputs go when the manifest does not name them (required otherwise).
    suffix : str
        Ending of default outputs (``.zarr`` for labels stores, ``.cache`` for embedding
        caches).

    Raises
    ------
    BatchError
        Nothing matched, a manifest row lacks an image, two items write one output, or an
        output is an input.
    """
    text = str(source)
    path = Path(text)
    rows: list[dict[str, str | None]]
    base = Path.cwd()
    if path.suffix.lower() == ".csv" and path.is_file():
        rows = _manifest(path)
        base = path.parent
    elif path.is_dir() and not (path / "zarr.json").exists():
        files = sorted(p for p in path.iterdir() if _is_image(p))
        if not files:
            raise BatchError(f"no images in the folder {path} (looked for "
                             f"{', '.join(IMAGE_SUFFIXES)}); give a glob or a manifest")
        rows = [{"image": str(p)} for p in files]
    elif any(c in text for c in "*?["):
        files = sorted(Path(p) for p in globlib.glob(text, recursive=True))
        files = [p for p in files if _is_image(p) or (p / "zarr.json").exists()]
        if not files:
            raise BatchError(f"the pattern {text!r} matched no images")
        rows = [{"image": str(p)} for p in files]
    elif path.exists():
        rows = [{"image": str(path)}]
    else:
        raise BatchError(f"no such input {text!r}: give a folder, a glob pattern (quoted) or "
                         "a CSV manifest")
    images = [(base / str(r["image"])) if not Path(str(r["image"])).is_absolute()
              else Path(str(r["image"])) for r in rows]
    keys = [str(r.get("key") or "") for r in rows]
    auto = _keys(images)
    keys = [k or a for k, a in zip(keys, auto, strict=True)]
    items = []
    for r, img, key in zip(rows, images, keys, strict=True):
        out = r.get("out")
        if out:
            out_path = Path(out) if Path(out).is_absolute() else base / out
        elif out_dir is not None:
            out_path = Path(out_dir) / f"{key}{suffix}"
        else:
            raise BatchError(f"no output for {img}: give an output folder (--out-dir) or an "
                             "'out' column in the manifest")
        extra = {}
        for col in ("boxes", "prompts"):
            v = r.get(col)
            extra[col] = None if not v else str(Path(v) if Path(v).is_absolute() else base / v)
        items.append(BatchItem(key, str(img), str(out_path), **extra))
    _check_unique(items)
    return sorted(items, key=lambda it: it.key)


def _manifest(path: Path) -> list[dict[str, str | None]]:
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "image" not in fields:
                raise BatchError(f"the manifest {path} needs a header row with an 'image' "
                                 f"column (and optionally out, boxes, prompts, key); got "
                                 f"{fields}")
            rows = []
            for n, row in enumerate(reader, start=2):
                clean = {str(k).strip().lower(): (v.strip() if isinstance(v, str) else None)
                         for k, v in row.items() if k is not None}
                if not clean.get("image"):
                    raise BatchError(f"{path}, line {n}: no image")
                rows.append(clean)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BatchError(f"cannot read the manifest {path}: {exc}") from None
    if not rows:
        raise BatchError(f"the manifest {path} lists no images")
    return rows


def _check_unique(items: list[BatchItem]) -> None:
    keys: dict[str, str] = {}
    outs: dict[str, str] = {}
    inputs = {str(Path(it.image).resolve()) for it in items}
    for it in items:
        if it.key in keys:
            raise BatchError(f"two inputs have the key {it.key!r} ({keys[it.key]} and "
                             f"{it.image}); name them apart in the manifest")
        keys[it.key] = it.image
        out = str(Path(it.out).resolve())
        if out in outs:
            raise BatchError(f"{outs[out]} and {it.image} would both write {it.out}")
        if out in inputs:
            raise BatchError(f"the output {it.out} is an input; choose another output")
        outs[out] = it.image


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N) -> ``(I, N)``."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise BatchError(f"malformed shard {text!r}; expected I/N, e.g. 0/8 (I counts from 0; "
                         "with SLURM arrays: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)") \
            from None
    if not 0 <= i < n:
        raise BatchError(f"shard {text}: I must satisfy 0 <= I < N")
    return i, n


def shard(items: list, index: int, count: int) -> list:
    """The deterministic share ``index`` of ``count``: every ``count``-th item of the
    sorted list, starting at ``index`` (shards are disjoint and cover every item)."""
    if not 0 <= int(index) < int(count):
        raise BatchError(f"shard {index}/{count}: the index must satisfy 0 <= I < N")
    return list(items)[int(index)::int(count)]
