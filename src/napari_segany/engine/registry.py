"""Model registry: names -> architectures, official weights (URL + sha256) and builders.

Third-party code adds models with :func:`register_model` and whole new backends with
:func:`register_family`, either directly or through an entry point in the group
``napari_segany.models`` whose target is a callable taking no arguments that calls them.

Examples
--------
>>> backend = load_model("sam2.1_hiera_tiny")                      # doctest: +SKIP
>>> backend = load_model("sam_vit_b", checkpoint="medsam_vit_b.pth")  # doctest: +SKIP
>>> backend = load_model("my_model.pth", arch="vit_b")              # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from . import weights as W
from .device import requested_precision, resolve_device, resolve_precision
from .sam import SAM_ARCHS, SamBackend, build_sam_model
from .sam2 import SAM2_ARCHS, Sam2Backend, build_sam2_model

__all__ = [
    "DEFAULT_MODEL",
    "ENTRY_POINT_GROUP",
    "ModelSpec",
    "available_models",
    "get_spec",
    "load_model",
    "register_family",
    "register_model",
]

DEFAULT_MODEL = "sam2.1_hiera_tiny"
ENTRY_POINT_GROUP = "napari_segany.models"

_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SAM21_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


@dataclass(frozen=True)
class ModelSpec:
    """A named model: family (backend), architecture and where its official weights are.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"sam_vit_b"``.
    family : str
        Backend family: ``"sam"``, ``"sam2"`` or one added with :func:`register_family`.
    arch : str
        Architecture understood by the family's builder.
    url, sha256, size : str, str, int or None
        Official checkpoint location, its SHA-256 and size in bytes. ``url=None`` means the
        model has no published weights (random or user-supplied only).
    description : str
    """

    name: str
    family: str
    arch: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    description: str = ""

    @property
    def filename(self) -> str | None:
        return None if self.url is None else self.url.rsplit("/", 1)[-1]


#: family -> factory(spec, state_dict or None, *, weights_id, device, autocast_dtype, seed)
Factory = Callable[..., Any]

_MODELS: dict[str, ModelSpec] = {}
_FAMILIES: dict[str, Factory] = {}
_entry_points_loaded = False


def register_model(spec: ModelSpec, *, overwrite: bool = False) -> None:
    """Add a model to the registry (``overwrite=True`` replaces one of the same name)."""
    if spec.name in _MODELS and not overwrite:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    _MODELS[spec.name] = spec


def register_family(family: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Add a backend family.

    ``factory(spec, state_dict, *, weights_id, device, autocast_dtype, seed)`` returns an
    object implementing :class:`napari_segany.engine.Backend`; ``state_dict`` is ``None``
    for random weights.
    """
    if family in _FAMILIES and not overwrite:
        raise ValueError(f"a backend family named {family!r} is already registered")
    _FAMILIES[family] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()()
        except Exception as exc:  # a broken plugin must not break the registry
            import warnings

            warnings.warn(f"model plugin {ep.name!r} failed to register: {exc}", stacklevel=2)


def available_models() -> list[str]:
    """Names of all registered models."""
    _load_entry_points()
    return sorted(_MODELS)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name`` (a clear error lists the names)."""
    _load_entry_points()
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_MODELS))}; or pass "
            "a checkpoint file path with arch=..."
        ) from None


# -- architecture inference for user checkpoints ------------------------------------------

_SAM_EMBED_DIMS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}
_SAM2_TRUNKS = {
    (96, 12): "hiera_t", (96, 16): "hiera_s", (112, 24): "hiera_b+", (144, 48): "hiera_l"
}


def infer_arch(state_dict: dict[str, Any]) -> tuple[str, str]:
    """Guess ``(family, arch)`` from a state dict's parameter names and shapes."""
    w = state_dict.get("image_encoder.patch_embed.proj.weight")
    if w is not None:
        arch = _SAM_EMBED_DIMS.get(int(w.shape[0]))
        if arch:
            return "sam", arch
    w = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if w is not None:
        prefix = "image_encoder.trunk.blocks."
        blocks = {k.split(".")[3] for k in state_dict if k.startswith(prefix)}
        trunk = _SAM2_TRUNKS.get((int(w.shape[0]), len(blocks)))
        if trunk:
            version = "sam2.1" if "no_obj_embed_spatial" in state_dict else "sam2"
            return "sam2", f"{version}_{trunk}"
    raise ValueError(
        "cannot tell the architecture of this checkpoint; pass arch= (e.g. 'vit_b' or "
        "'sam2.1_hiera_t')"
    )


def _checkpoint_arch(path: Path, state_dict: dict[str, Any]) -> tuple[str, str]:
    """``(family, arch)`` of a checkpoint file: from its contents, else from the training
    record a fine-tune writes beside it (``<name>.json``: the family and architecture of the
    model it was trained from, which names the test architectures too)."""
    try:
        return infer_arch(state_dict)
    except ValueError:
        side = path.with_suffix(".json")
        try:
            meta = json.loads(side.read_text()) if side.is_file() else {}
        except (OSError, ValueError):
            meta = {}
        fam, arch = meta.get("family"), meta.get("arch")
        if not (meta.get("napari_segany_finetune") and fam in _FAMILIES and arch):
            raise
        return str(fam), str(arch)


def _family_of_arch(arch: str) -> str:
    if arch == "tiny":
        raise ValueError("architecture 'tiny' is ambiguous for a checkpoint file: give the tiny "
                         "model by name with the file, model='sam_tiny' or 'sam2_tiny' "
                         "(--model sam_tiny --checkpoint FILE)")
    if arch in SAM_ARCHS:
        return "sam"
    if arch in SAM2_ARCHS:
        return "sam2"
    sam2 = sorted(a for a in SAM2_ARCHS if a != "tiny")
    raise ValueError(f"unknown architecture {arch!r}; SAM: vit_b, vit_l, vit_h; SAM2: "
                     f"{', '.join(sam2)}")


# -- loading ------------------------------------------------------------------------------


def load_model(
    model: str | os.PathLike | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    arch: str | None = None,
    device: Any = None,
    precision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    random_weights: bool = False,
    seed: int = 0,
    offline: bool | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Any:
    """Build a backend ready to embed and predict.

    Parameters
    ----------
    model : str or path, optional
        A registry name (see :func:`available_models`) or the path of a checkpoint file.
        None: the default model (:data:`DEFAULT_MODEL`), or, with ``checkpoint``, the
        architecture of that file (``arch``, or guessed from its contents).
    checkpoint : path, optional
        A local weights file to use instead of the official download (works offline), e.g.
        fine-tuned SAM weights such as MedSAM or micro-sam models with ``model="sam_vit_b"``.
    arch : str, optional
        Architecture of a checkpoint given as ``model``; guessed from the file when omitted.
    device : str, optional
        ``"auto"`` (default: cuda > mps > cpu), ``"cpu"``, ``"cuda"``, ...
    precision : {"auto", "fp32", "bf16", "fp16"}, optional
        ``"auto"`` is bf16 (or fp16) autocast on CUDA, bf16 on CPUs that compute bf16
        natively (AVX512-BF16 or AMX) and float32 elsewhere; ``"fp32"`` forces float32,
        whose results equal segment-anything's and sam2's. None (default):
        ``$NAPARI_SEGANY_PRECISION``, else ``"auto"``. See
        :mod:`napari_segany.engine.device`.
    cache_dir : path, optional
        Where official weights are downloaded (default: ``$NAPARI_SEGANY_CACHE_DIR`` or
        ``~/.cache/napari-segany/models``).
    random_weights : bool
        Skip weights entirely: compute cost is real, masks are meaningless (benchmarks,
        offline smoke tests).
    seed : int
        Seed of the random initialisation with ``random_weights``.
    offline : bool, optional
        Never download (default: ``$NAPARI_SEGANY_OFFLINE``).
    progress : callable, optional
        ``progress(done_bytes, total_bytes)`` during a download.
    """
    if model is None and checkpoint is None:
        model = DEFAULT_MODEL
    dev = resolve_device(device)
    dtype = resolve_precision(requested_precision(precision), dev)
    state_dict = None
    weights_id = f"random-seed{seed}"
    path = None if model is None or (isinstance(model, str) and model in _names()) \
        else Path(model)
    if path is not None and (path.suffix in {".pt", ".pth", ".bin", ".ckpt"} or path.exists()):
        if checkpoint is not None:
            raise ValueError("give the checkpoint either as model or as checkpoint=, not both")
        checkpoint, model = path, None
    elif path is not None:
        get_spec(str(model))  # raises the unknown-model error
    if random_weights and checkpoint is not None:
        raise ValueError("give a checkpoint (weights from a file) or random_weights=True "
                         "(--random-weights), not both")
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {checkpoint}")
        if model is None and arch:
            _family_of_arch(arch)  # an unknown or ambiguous arch= before reading the file
        state_dict = W.load_state_dict(checkpoint)
        weights_id = "sha256:" + W.file_sha256(checkpoint)
        if model is None:
            fam, arch = (_family_of_arch(arch), arch) if arch else _checkpoint_arch(
                checkpoint, state_dict)
            spec = ModelSpec(name=checkpoint.name, family=fam, arch=arch)
        else:
            spec = get_spec(str(model))
    else:
        spec = get_spec(str(model))
        if not random_weights:
            if spec.url is None:
                raise ValueError(
                    f"model {spec.name!r} has no published weights; pass checkpoint=PATH "
                    "(--checkpoint) or random_weights=True (--random-weights)"
                )
            file = W.fetch_checkpoint(
                spec.url, sha256=spec.sha256, cache_dir=cache_dir, offline=offline,
                progress=progress,
            )
            state_dict = W.load_state_dict(file)
            weights_id = "sha256:" + spec.sha256
    factory = _FAMILIES.get(spec.family)
    if factory is None:
        raise ValueError(f"no backend family {spec.family!r} is registered for {spec.name!r}")
    return factory(spec, state_dict, weights_id=weights_id, device=dev, autocast_dtype=dtype,
                   seed=seed)


def _names() -> set[str]:
    _load_entry_points()
    return set(_MODELS)


def _load_weights(model: Any, state_dict: dict[str, Any] | None, spec: ModelSpec) -> None:
    if state_dict is None:
        return
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the checkpoint does not fit architecture {spec.arch!r} of {spec.name!r}: "
            f"{str(exc).splitlines()[0]} ... pass the right arch= for this file"
        ) from exc


def _random_init(builder: Callable[[], Any], seed: int) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder()


def _sam_factory(spec, state_dict, *, weights_id, device, autocast_dtype, seed):
    model = _random_init(lambda: build_sam_model(spec.arch), seed)
    _load_weights(model, state_dict, spec)
    return SamBackend(model, name=spec.name, arch=spec.arch, weights_id=weights_id,
                      device=device, autocast_dtype=autocast_dtype)


def _sam2_factory(spec, state_dict, *, weights_id, device, autocast_dtype, seed):
    model = _random_init(lambda: build_sam2_model(spec.arch, device="cpu"), seed)
    _load_weights(model, state_dict, spec)
    return Sam2Backend(model, name=spec.name, arch=spec.arch, weights_id=weights_id,
                       device=device, autocast_dtype=autocast_dtype)


def _register_builtins() -> None:
    register_family("sam", _sam_factory)
    register_family("sam2", _sam2_factory)
    sam = [
        ("vit_b", "sam_vit_b_01ec64.pth",
         "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375042383),
        ("vit_l", "sam_vit_l_0b3195.pth",
         "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", 1249524607),
        ("vit_h", "sam_vit_h_4b8939.pth",
         "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2564550879),
    ]
    for arch, fname, sha, size in sam:
        register_model(ModelSpec(f"sam_{arch}", "sam", arch, _SAM_URL + fname, sha, size,
                                 f"Segment Anything {arch.replace('_', '-').upper()}"))
    sam2 = [
        ("sam2", "tiny", "t", _SAM2_URL,
         "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125", 155906050),
        ("sam2", "small", "s", _SAM2_URL,
         "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3", 184309650),
        ("sam2", "base_plus", "b+", _SAM2_URL,
         "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071", 323493298),
        ("sam2", "large", "l", _SAM2_URL,
         "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b", 897952466),
        ("sam2.1", "tiny", "t", _SAM21_URL,
         "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69", 156008466),
        ("sam2.1", "small", "s", _SAM21_URL,
         "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38", 184416285),
        ("sam2.1", "base_plus", "b+", _SAM21_URL,
         "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5", 323606802),
        ("sam2.1", "large", "l", _SAM21_URL,
         "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318", 898083611),
    ]
    for version, size_name, short, base, sha, size in sam2:
        name = f"{version}_hiera_{size_name}"
        register_model(ModelSpec(name, "sam2", f"{version}_hiera_{short}", f"{base}{name}.pt",
                                 sha, size, f"{version.upper()} Hiera {size_name}"))
    register_model(ModelSpec("sam_tiny", "sam", "tiny", description=(
        "tiny SAM architecture (256 px input, 2-block encoder) for tests and smoke runs; "
        "random weights: masks are meaningless")))
    register_model(ModelSpec("sam2_tiny", "sam2", "tiny", description=(
        "tiny SAM2.1 architecture (256 px input, stages of 1, 1, 2 and 1 blocks) for tests and "
        "smoke "
        "runs; random weights: masks are meaningless")))


_register_builtins()
