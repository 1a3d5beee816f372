"""Run an evaluation: every sample, every model, one protocol; write the tables and report.

:func:`evaluate` is the one entry point the API, ``Segmenter.evaluate`` and the command
line call. For each sample the ground truth is read and checked, the first prompts of
every object are simulated once (the same for every model), and each model is run on the
sample through the same engine users run: the planes are embedded once per model (through
an embedding cache when ``cache_dir`` is given) and shared by everything done on them.

Finished units (a plane, or a propagation method of a volume) are appended to
``results.csv`` as they end; a cancelled, interrupted or failed run keeps them, and a
second run with the same output folder skips them (``resume=True``), also when more
models are added.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..engine.registry import get_spec, load_model
from ..errors import Cancelled
from ..intensity import normalizer_from_options
from ..storage.cache import EmbeddingCache
from ..storage.embeddings import PlaneEmbeddings
from ._common import Steps, check, embeddings_used, plane_text, planes_with_objects
from .automatic import AutomaticSettings, run_automatic
from .datasets import Sample, as_samples, check_prediction, check_truth
from .interactive import InteractiveSettings, interactive_prompts, run_interactive
from .plots import plot_results
from .report import write_report, write_summary
from .summary import summarize, summary_table
from .table import ResultTable
from .video import VideoSettings, run_video, video_prompts
from .volumes import VolumeSettings, run_volume, volume_prompts

__all__ = ["PROTOCOLS", "ModelEntry", "EvaluationResult", "evaluate", "model_entries",
           "default_settings"]

PROTOCOLS = ("interactive", "automatic", "volume", "video")
_SETTINGS = {"interactive": InteractiveSettings, "automatic": AutomaticSettings,
             "volume": VolumeSettings, "video": VideoSettings}


def default_settings(protocol: str) -> Any:
    """The default settings object of a protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return _SETTINGS[protocol]()


@dataclass(frozen=True)
class ModelEntry:
    """One model of an evaluation, by name, checkpoint, loaded backend or plane source.

    ``name`` labels its rows; ``source`` (a Session or PlaneEmbeddings over the sample's
    image) is used as it is, with its embeddings, for a single sample.
    """

    name: str
    model: str | None = None
    checkpoint: Path | None = None
    arch: str | None = None
    backend: Any = None
    source: Any = None

    def load(self, *, device: Any, random_weights: bool, cache_dir: Any) -> Any:
        if self.source is not None:
            return self.source.backend
        if self.backend is not None:
            return self.backend
        try:
            return load_model(self.model, checkpoint=self.checkpoint, arch=self.arch,
                              device=device, random_weights=random_weights,
                              cache_dir=cache_dir)
        except (ValueError, OSError, RuntimeError) as exc:
            text = " ".join(str(exc).split())
            raise ValueError(f"model {self.name!r} cannot be loaded: {text}") from exc


def _unique(names: list[str]) -> list[str]:
    out, seen = [], {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def model_entries(models: Any = None, *, checkpoints: Any = (),
                  arch: str | None = None) -> list[ModelEntry]:
    """Entries for registry names, checkpoint paths, loaded backends or ModelEntry objects.

    Registry names and checkpoint files are checked here, before anything runs.
    """
    items = [] if models is None else (list(models) if isinstance(models, (list, tuple))
                                        else [models])
    raw: list[ModelEntry] = []
    for m in items:
        if isinstance(m, ModelEntry):
            raw.append(m)
        elif isinstance(m, (str, os.PathLike)):
            text = str(m)
            if Path(text).suffix in (".pt", ".pth", ".ckpt", ".bin") or Path(text).is_file():
                if not Path(text).is_file():
                    raise FileNotFoundError(f"checkpoint not found: {text}")
                raw.append(ModelEntry(Path(text).stem, model=text, arch=arch))
            else:
                get_spec(text)  # unknown names fail now, listing the known ones
                raw.append(ModelEntry(text, model=text))
        elif hasattr(m, "embed") and hasattr(m, "predict"):
            raw.append(ModelEntry(str(getattr(m, "name", type(m).__name__)), backend=m))
        elif hasattr(m, "backend") and hasattr(m, "embedding"):
            raw.append(ModelEntry(str(getattr(m.backend, "name", "model")), source=m))
        else:
            raise TypeError(f"a model is a registry name, a checkpoint path or a backend, got "
                            f"{type(m).__name__}")
    for c in [] if checkpoints is None else (
            [checkpoints] if isinstance(checkpoints, (str, os.PathLike)) else list(checkpoints)):
        path = Path(c)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        raw.append(ModelEntry(path.stem, model=None, checkpoint=path, arch=arch))
    names = _unique([e.name for e in raw])
    return [dataclasses.replace(e, name=n) for e, n in zip(raw, names, strict=False)]


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    protocol : str
    rows : list of dict
        The tidy table (see :mod:`napari_segany.evaluation.table` for the columns).
    summary : dict
        What ``summary.json`` holds: ``summary`` (one record per model and method),
        ``by_dataset``, ``models``, ``timing``, ``settings``, ``notes``, ...
    folder : Path or None
        Where the files were written.
    files : dict of str to Path
        ``results``, ``summary``, ``report``, ``prompts`` and the plots.
    cancelled : bool
    """

    protocol: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    folder: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def records(self) -> list[dict[str, Any]]:
        """One summary record per model and method."""
        return self.summary["summary"]

    def table(self) -> str:
        """The summary as an aligned text table."""
        return summary_table(self.records, self.protocol)

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def __str__(self) -> str:
        return self.table()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str,
                                 allow_nan=True).replace("Infinity", '"inf"'))


def _prompts_for(protocol: str, truth: Any, s: Any, dataset: str) -> Any:
    if protocol == "interactive":
        return interactive_prompts(truth, s, dataset)
    if protocol == "volume":
        return volume_prompts(truth, s, dataset)
    if protocol == "video":
        return video_prompts(truth, s, dataset)
    return None


def _units(protocol: str, truth: Any, prompts: Any, s: Any, pred: Any) -> list[str]:
    if protocol == "interactive":
        return [plane_text(k) for k in prompts.planes()]
    if protocol == "automatic":
        return [plane_text(k) for k in planes_with_objects(truth)]
    return ["prediction"] if pred is not None else list(s.methods)


def _run_one(protocol, source, sample, truth, prompts, s, *, model, pred, skip, steps,
             cancel, notes):
    kw = {"model": model, "dataset": sample.name, "settings": s, "skip": skip,
          "steps": steps, "cancel": cancel}
    if protocol == "interactive":
        return run_interactive(source, truth, prompts, **kw)
    if protocol == "automatic":
        return run_automatic(source, truth, prediction=pred, **kw)
    if protocol == "volume":
        return run_volume(source, truth, prompts, spacing=sample.spacing, prediction=pred,
                          notes=notes, **kw)
    return run_video(source, truth, prompts, prediction=pred, notes=notes, **kw)


def _check_run_file(folder: Path, protocol: str, settings: dict, resume: bool) -> None:
    run = folder / "run.json"
    want = {"protocol": protocol, "settings": settings}
    if resume and run.exists():
        try:
            have = json.loads(run.read_text())
        except (OSError, ValueError):
            have = None
        if have is not None and {k: have.get(k) for k in want} != want:
            diff = [k for k in settings if (have.get("settings") or {}).get(k) != settings[k]]
            what = "protocol" if have.get("protocol") != protocol else f"settings {diff}"
            raise ValueError(f"{folder} holds results of another evaluation ({what} differ); "
                             "give another output folder, or resume=False (--no-resume) to "
                             "replace them")
    run.write_text(json.dumps(want, indent=2) + "\n")


def evaluate(
    data: Any,
    models: Any = None,
    *,
    protocol: str = "interactive",
    settings: Any = None,
    out: str | os.PathLike | None = None,
    checkpoints: Any = (),
    arch: str | None = None,
    device: Any = None,
    random_weights: bool = False,
    weights_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    window: Any = None,
    percentiles: tuple[float, float] | None = None,
    resume: bool = True,
    plots: bool = True,
    max_in_memory: int = 64,
    progress: Any = None,
    cancel: Any = None,
) -> EvaluationResult:
    """Measure segmentation quality against ground truth with simulated prompts.

    Parameters
    ----------
    data : Sample, FilePair, (image, labels), dict, path or list of them
        What to evaluate (:func:`~napari_segany.evaluation.datasets.as_samples`): arrays
        ``(..., H, W)`` (or ``(..., H, W, C)`` RGB with a :class:`Sample`) with integer
        labels of the same spatial shape, image/label files, a CTC or DAVIS folder.
    models : str, path, Backend or list of them, optional
        Registry names (``"sam_vit_b"``, ``"sam2.1_hiera_tiny"``), checkpoint files, or
        loaded backends; all get the same simulated prompts. Optional when every sample
        has a ``prediction`` to score.
    protocol : {"interactive", "automatic", "volume", "video"}
    settings : InteractiveSettings, AutomaticSettings, VolumeSettings or VideoSettings
        Default: the protocol's defaults.
    out : path, optional
        Folder for ``results.csv``, ``summary.json``, ``prompts.json``, ``report.md`` and
        the PNG plots (nothing is written without one).
    checkpoints : path or list of paths
        More models, one per checkpoint file (``arch`` when it cannot be told).
    device, random_weights, weights_dir :
        For :func:`napari_segany.load_model` (``weights_dir`` is its ``cache_dir``).
    cache_dir : path, optional
        Embedding caches, one per model and sample, reused by later runs.
    window, percentiles :
        Intensity mapping (e.g. ``window="ct_soft_tissue"``); default percentiles.
    resume : bool
        Skip units already in ``out``'s table (same protocol and settings).
    plots : bool
        Draw the PNG figures (and show them in the report).
    max_in_memory : int
        Plane embeddings held in memory per model and sample.
    progress : callable, optional
        ``progress(done, total)`` in steps (iterations, planes, propagation rounds).
    cancel : threading.Event or callable, optional
        Checked between steps; finished units are kept and written.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ValueError
        Bad input (labels of another shape, non-integer labels, empty ground truth, an
        unreadable file, a model that cannot load), naming the file or model. The rows
        finished before it are written (with ``out``) and kept for resuming.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    s = default_settings(protocol) if settings is None else settings
    if not isinstance(s, _SETTINGS[protocol]):
        raise TypeError(f"settings of the {protocol} protocol are a "
                        f"{_SETTINGS[protocol].__name__}, got {type(s).__name__}")
    entries = model_entries(models, checkpoints=checkpoints, arch=arch)
    samples = as_samples(data)
    if not samples:
        raise ValueError("nothing to evaluate: no samples")
    folder = None if out is None else Path(out)
    settings_json = _jsonable(s)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        _check_run_file(folder, protocol, settings_json, resume)
    table = ResultTable(folder, resume=resume)
    old = _old_summary(folder) if (folder is not None and resume and table.resumed) else {}
    state = _State(protocol, s, settings_json, old)
    steps = Steps(progress, len(samples) * max(1, len(entries)))
    backends: dict[str, Any] = {}
    error: BaseException | None = None
    try:
        for item in samples:
            check(cancel)
            _one_sample(item, entries, backends, state, table, steps, cancel,
                        device=device, random_weights=random_weights, weights_dir=weights_dir,
                        cache_dir=cache_dir, window=window, percentiles=percentiles,
                        max_in_memory=max_in_memory)
    except Cancelled:
        state.cancelled = True
    except KeyboardInterrupt:
        state.cancelled = True
        _finish(state, table, folder, plots, None)
        raise
    except (ValueError, OSError, KeyError) as exc:
        error = exc
    result = _finish(state, table, folder, plots, error)
    if error is not None:
        raise error
    return result


class _State:
    def __init__(self, protocol: str, settings: Any, settings_json: dict, old: dict) -> None:
        self.protocol, self.settings, self.settings_json = protocol, settings, settings_json
        self.models: dict[str, Any] = dict(old.get("models", {}))
        self.timing: dict[str, Any] = {k: dict(v) for k, v in old.get("timing", {}).items()}
        self.notes: list[str] = list(old.get("notes", []))
        self.prompts: dict[str, Any] = {}
        self.datasets: list[str] = list(old.get("datasets", []))
        self.cancelled = False

    def time(self, name: str, seconds: float, objects: int, emb: dict[str, int]) -> None:
        t = self.timing.setdefault(name, {"seconds": 0.0, "objects": 0,
                                          "embeddings": {"computed": 0, "loaded": 0}})
        t["seconds"] += seconds
        t["objects"] += objects
        for k in ("computed", "loaded"):
            t["embeddings"][k] = t["embeddings"].get(k, 0) + emb.get(k, 0)
        t["seconds_per_object"] = t["seconds"] / t["objects"] if t["objects"] else None


def _old_summary(folder: Path) -> dict:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def _one_sample(item, entries, backends, state: _State, table: ResultTable, steps, cancel, *,
                device, random_weights, weights_dir, cache_dir, window, percentiles,
                max_in_memory) -> None:
    protocol, s = state.protocol, state.settings
    sample: Sample = item.load()
    truth = check_truth(sample)
    pred = check_prediction(sample) if sample.prediction is not None else None
    if pred is not None and protocol == "interactive":
        raise ValueError(f"{sample.name!r}: a prediction is scored with the automatic, volume "
                         "or video protocol; the interactive protocol needs a model")
    if pred is None and not entries:
        raise ValueError("give at least one model (or samples with a prediction to score)")
    if sample.name not in state.datasets:
        state.datasets.append(sample.name)
    prompts = _prompts_for(protocol, truth, s, sample.name)
    if prompts is not None:
        state.prompts[sample.name] = prompts.to_dict(include_masks=False)
    units = _units(protocol, truth, prompts, s, pred)
    runs = [ModelEntry("prediction")] if pred is not None else entries
    normalizer = None
    for entry in runs:
        skip = table.finished(entry.name, sample.name, protocol)
        if all(u in skip for u in units):
            steps.skip()
            continue
        check(cancel)
        source = entry.source
        if pred is None and source is None:
            backend = backends.get(entry.name)
            if backend is None:
                backend = backends[entry.name] = entry.load(
                    device=device, random_weights=random_weights, cache_dir=weights_dir)
            if normalizer is None:
                normalizer = normalizer_from_options(sample.image, rgb=sample.rgb,
                                                     window=window, percentiles=percentiles)
            cache = None
            if cache_dir is not None:
                path = Path(cache_dir) / _safe(entry.name) / f"{_safe(sample.name)}.zarr"
                path.parent.mkdir(parents=True, exist_ok=True)
                cache = EmbeddingCache(path, backend=backend, normalizer=normalizer,
                                       data=sample.image, rgb=sample.rgb)
            source = PlaneEmbeddings(sample.image, backend, normalizer, rgb=sample.rgb,
                                     cache=cache, max_in_memory=max_in_memory)
        elif source is not None and tuple(source.shape) != sample.shape:
            raise ValueError(f"{entry.name}: its image of shape {tuple(source.shape)} is not "
                             f"the sample {sample.name!r} of shape {sample.shape}")
        _describe_model(state, entry, None if source is None else source.backend,
                        random_weights)
        before = embeddings_used(source) if source is not None else {}
        steps.expect(0)
        t0 = time.perf_counter()
        objects: set = set()
        for unit, rows in _run_one(protocol, source, sample, truth, prompts, s,
                                   model=entry.name, pred=pred, skip=skip, steps=steps,
                                   cancel=cancel, notes=state.notes):
            table.add_unit(entry.name, sample.name, protocol, unit, rows)
            objects |= {(r["plane"] if protocol == "interactive" else "", r["object_id"])
                        for r in rows if r.get("object_id") is not None}
        after = embeddings_used(source) if source is not None else {}
        state.time(entry.name, time.perf_counter() - t0, len(objects),
                   {k: after.get(k, 0) - before.get(k, 0) for k in ("computed", "loaded")})


def _describe_model(state: _State, entry: ModelEntry, backend: Any, random_weights: bool) -> None:
    if backend is None:
        state.models.setdefault(entry.name, {"model": "prediction", "random_weights": False})
        return
    weights = str(getattr(backend, "weights_id", ""))
    state.models[entry.name] = {
        "model": entry.model or getattr(backend, "name", None),
        "checkpoint": None if entry.checkpoint is None else str(entry.checkpoint),
        "family": getattr(backend, "family", None),
        "model_id": getattr(backend, "model_id", None),
        "random_weights": weights.startswith("random"),
        "capabilities": sorted(getattr(backend, "capabilities", ()) or ()),
    }


def _finish(state: _State, table: ResultTable, folder: Path | None, plots: bool,
            error: BaseException | None) -> EvaluationResult:
    protocol = state.protocol
    rows = table.rows
    summary = {
        "protocol": protocol, "version": __version__, "settings": state.settings_json,
        "models": state.models, "datasets": state.datasets,
        "summary": summarize(rows, protocol),
        "by_dataset": {d: summarize([r for r in rows if r["dataset"] == d], protocol)
                       for d in state.datasets},
        "timing": state.timing, "notes": sorted(set(state.notes)),
        "cancelled": state.cancelled, "rows": len(rows),
        "error": None if error is None else " ".join(str(error).split()),
    }
    files: dict[str, Path] = {}
    if folder is not None:
        files["results"] = table.csv_path
        if state.prompts:
            path = folder / "prompts.json"
            old = {}
            if path.exists():
                try:
                    old = json.loads(path.read_text())
                except (OSError, ValueError):
                    old = {}
            path.write_text(json.dumps({**old, **state.prompts}) + "\n")
            files["prompts"] = path
        pngs: list[Path] = []
        if plots and rows:
            rnd = [m for m, i in state.models.items() if i.get("random_weights")]
            sub = f"random weights ({', '.join(rnd)}): scores are meaningless" if rnd else None
            pngs = plot_results(rows, protocol, folder / "plots", subtitle=sub)
            files.update({p.stem: p for p in pngs})
        summary["files"] = {k: str(v.relative_to(folder)) for k, v in files.items()}
        files["summary"] = write_summary(folder / "summary.json", summary)
        files["report"] = write_report(folder, summary, rows, pngs)
    return EvaluationResult(protocol, rows, summary, folder, files, state.cancelled)
