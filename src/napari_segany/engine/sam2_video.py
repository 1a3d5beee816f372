"""SAM2 memory tracking over a sequence of planes, fed from arrays, in bounded memory.

SAM2's own video predictor reads a JPEG folder or an MP4 file and keeps every frame as a
1024x1024x3 float32 tensor, plus the memory of every frame it has tracked, so its memory
grows with the length of the stack. :class:`Sam2Propagator` builds the predictor's state
directly instead:

* frames are never decoded up front: the image features of a frame are computed (or read
  from an embedding cache) when SAM2 asks for them, through the same
  ``get_embedding(plane)`` used by interactive prompting, and only the current frame's
  features are held;
* after each frame, per-frame outputs that SAM2 can no longer use (non-conditioning frames
  further back than its memory window: ``max(num_maskmem, max_obj_ptrs_in_encoder)``
  frames) are released. Annotated (conditioning) frames are kept.
* with ``batch_objects = True``, objects are tracked together: those whose memories come
  from the same frames go through each frame as one batch, the frame's shared work done
  once (:mod:`.sam2_track`, :mod:`.sam2_kernels`). Off by default (slower on CPUs, see
  the attribute).

This is engine code: it fills sam2's inference state and calls its video methods.
Backends that support it declare the ``"memory"`` capability.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .._progress import is_cancelled
from .base import Backend, has_capability
from .sam2_kernels import lean_tracking
from .sam2_track import FrameStepper

__all__ = ["MEMORY_CAPABILITY", "Sam2Propagator", "supports_memory"]

#: Backends with this capability can track objects with :class:`Sam2Propagator`.
MEMORY_CAPABILITY = "memory"


def supports_memory(backend: Any) -> bool:
    """Whether ``backend`` can run SAM2 memory propagation."""
    return has_capability(backend, MEMORY_CAPABILITY)


class _LazyFeatures:
    """Stands in for the predictor's ``cached_features`` dict: features on demand.

    Only the ``keep`` most recently used frames are held (SAM2 alternates between a couple
    of frames while it encodes the memories of prompted frames).
    """

    def __init__(self, model: Any, get_embedding: Callable[[int], Any], keep: int = 2) -> None:
        from collections import OrderedDict

        self.model = model
        self.get_embedding = get_embedding
        self.keep = keep
        self._held: OrderedDict[int, Any] = OrderedDict()
        self._pos: dict[tuple, Any] = {}
        self.computed = 0

    def get(self, frame_idx: int, default: Any = None) -> Any:
        if frame_idx in self._held:
            self._held.move_to_end(frame_idx)
            return self._held[frame_idx]
        while len(self._held) >= self.keep:  # release before computing the next one
            self._held.popitem(last=False)
        value = self._backbone_out(self.get_embedding(frame_idx))
        self._held[frame_idx] = value
        self.computed += 1
        return value

    def _position_encoding(self, f: Any) -> Any:
        """The neck's sine encoding for a feature map's shape, computed once and shared.

        It depends only on the shape; SAM2 reads it and never writes it (its own predictor
        also reuses one frame's encodings for every call on that frame)."""
        key = (tuple(f.shape), f.dtype, f.device)
        if key not in self._pos:
            pe = self.model.image_encoder.neck.position_encoding
            self._pos[key] = pe(f).to(f.dtype)
        return self._pos[key]

    def _backbone_out(self, emb: Any) -> tuple[Any, dict[str, list[Any]]]:
        """Turn an image-predictor embedding back into SAM2's backbone output."""
        import torch

        t = emb.tensors
        dtype = t["image_embed"].dtype
        no_mem = self.model.no_mem_embed.reshape(1, -1, 1, 1).to(dtype)
        fpn = [t["high_res_feats_0"], t["high_res_feats_1"], t["image_embed"] - no_mem]
        pos = [self._position_encoding(f) for f in fpn]
        image = torch.zeros(1, 3, 1, 1, device=fpn[0].device)  # not used by tracking
        return image, {"backbone_fpn": fpn, "vision_pos_enc": pos}


def _match_memory_dtype(model: Any) -> None:
    """Let float32 (CPU) runs read SAM2's bf16-stored memories.

    SAM2 stores per-frame memory features in bfloat16 to save space and relies on CUDA
    autocast to mix them with float32 weights; without autocast its memory attention fails
    with a dtype mismatch. A forward pre-hook casts the memory inputs to the weights' dtype
    when autocast is off. Installed once per model.
    """
    import torch

    if getattr(model, "_segany_memory_hook", False):
        return
    weight_dtype = next(model.memory_attention.parameters()).dtype

    def hook(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if torch.is_autocast_enabled("cuda") or torch.is_autocast_enabled("cpu"):
            return args, kwargs
        fixed = {
            k: (v.to(weight_dtype) if isinstance(v, torch.Tensor) and v.is_floating_point()
                else v)
            for k, v in kwargs.items()
        }
        return args, fixed

    model.memory_attention.register_forward_pre_hook(hook, with_kwargs=True)
    model._segany_memory_hook = True
    try:  # hole filling needs sam2's optional compiled extension; without it SAM2 warns
        import sam2._C  # noqa: F401
    except ImportError:
        model.fill_hole_area = 0


@contextlib.contextmanager
def _quiet_tqdm() -> Iterator[None]:
    """SAM2 wraps propagation in a tqdm bar; progress is reported by the caller instead."""
    import sam2.sam2_video_predictor as vp

    original = vp.tqdm
    vp.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        vp.tqdm = original


class Sam2Propagator:
    """SAM2 memory tracking over one sequence of planes (frames).

    Parameters
    ----------
    backend : Sam2Backend
        A SAM2 backend from :func:`napari_segany.load_model`.
    n_frames : int
        Number of planes in the sequence.
    frame_size : tuple of int
        ``(H, W)`` of each plane.
    get_embedding : callable
        ``get_embedding(frame_index) -> Embedding`` from the backend (e.g. a session's or
        an embedding cache's lookup).
    offload_state_to_cpu : bool
        Keep SAM2's per-frame memories in CPU memory (saves GPU memory on long stacks).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        n_frames: int,
        frame_size: tuple[int, int],
        get_embedding: Callable[[int], Any],
        offload_state_to_cpu: bool = False,
    ) -> None:
        if not supports_memory(backend):
            raise ValueError(
                f"SAM2 propagation needs a SAM2 model, got {getattr(backend, 'name', backend)!r}; "
                "use slice-wise propagation for SAM models"
            )
        if n_frames < 1:
            raise ValueError("need at least one plane to propagate through")
        import torch

        self.backend = backend
        self.model = backend.model
        self.model.add_all_frames_to_correct_as_cond = True
        _match_memory_dtype(self.model)
        self.n_frames = int(n_frames)
        self.features = _LazyFeatures(self.model, get_embedding)
        #: Batch sizes of the last propagation pass (objects tracked together per call).
        self.last_batches: list[int] = []
        #: Track objects together (:mod:`.sam2_track`, :mod:`.sam2_kernels`). Off by
        #: default: measured on a 2-core CPU with 4 objects it took 1.34x the CPU time of
        #: SAM2's own loop and 3.3x its peak memory (the batched attention materialises
        #: every object's attention matrix at once); equal results, kept for GPUs/tests.
        self.batch_objects = False
        dev = backend.device
        self.window = max(int(self.model.num_maskmem), int(self.model.max_obj_ptrs_in_encoder))
        self.state: dict[str, Any] = {
            "images": None,  # never used: features come from _LazyFeatures
            "num_frames": self.n_frames,
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": offload_state_to_cpu,
            "video_height": int(frame_size[0]),
            "video_width": int(frame_size[1]),
            "device": dev,
            "storage_device": torch.device("cpu") if offload_state_to_cpu else dev,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": self.features,
            "constants": {},
            "obj_id_to_idx": {},
            "obj_idx_to_id": {},
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        from collections import OrderedDict

        self.state["obj_id_to_idx"] = OrderedDict()
        self.state["obj_idx_to_id"] = OrderedDict()

    # -- prompts ------------------------------------------------------------------------------
    def add_prompt(self, frame: int, obj_id: int, prompt: Any) -> np.ndarray:
        """Prompt object ``obj_id`` on ``frame``; returns its ``(H, W)`` bool mask there.

        Points and a box are used together; a mask prompt is used when there are neither.
        Prompts replace earlier prompts of that object on that frame.
        """
        import torch

        if not 0 <= frame < self.n_frames:
            raise ValueError(f"frame {frame} is outside the {self.n_frames} planes")
        if int(obj_id) < 1:
            raise ValueError(f"object ids start at 1, got {obj_id}")
        p = self.model
        lean = lean_tracking(p) if self.batch_objects else contextlib.nullcontext()
        with torch.inference_mode(), self.backend._autocast(), lean:
            if len(prompt.points) or prompt.box is not None:
                has_pts = len(prompt.points) > 0
                _, ids, masks = p.add_new_points_or_box(
                    self.state, frame, int(obj_id),
                    points=prompt.points.astype(np.float32) if has_pts else None,
                    labels=prompt.labels.astype(np.int32) if has_pts else None,
                    box=None if prompt.box is None else prompt.box.astype(np.float32),
                )
            elif prompt.mask is not None:
                mask = np.asarray(prompt.mask)
                if mask.shape != (self.state["video_height"], self.state["video_width"]):
                    raise ValueError(
                        f"mask prompt of shape {mask.shape} does not match planes of "
                        f"{(self.state['video_height'], self.state['video_width'])}"
                    )
                _, ids, masks = p.add_new_mask(self.state, frame, int(obj_id), mask > 0)
            else:
                raise ValueError(f"empty prompt for object {obj_id} on plane {frame}")
        return (masks[list(ids).index(int(obj_id)), 0] > 0).cpu().numpy()

    # -- propagation --------------------------------------------------------------------------
    def propagate(
        self,
        *,
        start: int | None = None,
        direction: str = "both",
        stop: int | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """Track every prompted object; yields ``(frame, {obj_id: (H, W) bool mask})``.

        Parameters
        ----------
        start : int, optional
            Frame to start from (default: the first prompted frame).
        direction : {"both", "forward", "backward"}
            Forward runs from ``start`` to the end, backward from ``start`` to frame 0
            (``start`` itself is yielded once).
        stop : int, optional
            Last frame to reach (inclusive) in the forward direction; use ``start`` and the
            backward direction for the other end.
        cancel : callable, optional
            Checked before each frame; when it returns True the generator ends.
        """
        if direction not in ("both", "forward", "backward"):
            raise ValueError(
                f"direction must be 'both', 'forward' or 'backward', not {direction!r}")
        if not self.state["obj_ids"]:
            raise ValueError("add prompts for at least one object before propagating")
        if start is None:
            start = min(
                t for out in self.state["output_dict_per_obj"].values()
                for t in out["cond_frame_outputs"]
            ) if any(o["cond_frame_outputs"] for o in self.state["output_dict_per_obj"].values()) \
                else min(t for o in self.state["temp_output_dict_per_obj"].values()
                         for t in o["cond_frame_outputs"])
        passes = []
        self.last_batches = []
        if direction in ("both", "forward"):
            last = self.n_frames - 1 if stop is None else min(int(stop), self.n_frames - 1)
            passes.append((False, last - start))
        if direction in ("both", "backward"):
            passes.append((True, start))
        seen_start = False
        for reverse, count in passes:
            if count < 0:
                continue
            for frame, ids, masks in self._run(start, count, reverse):
                if frame == start and seen_start:
                    continue
                seen_start = seen_start or frame == start
                if is_cancelled(cancel):
                    return
                out = {int(i): (masks[n, 0] > 0).cpu().numpy() for n, i in enumerate(ids)}
                self._release(frame, reverse)
                yield frame, out

    def _run(self, start: int, count: int, reverse: bool) -> Iterator[Any]:
        """SAM2's ``propagate_in_video`` loop, objects batched per frame (:mod:`.sam2_track`)."""
        import torch

        if not self.batch_objects:
            yield from self._run_sam2(start, count, reverse)
            return
        with torch.inference_mode(), self.backend._autocast(), lean_tracking(self.model):
            self.model.propagate_in_video_preflight(self.state)
        if reverse:
            end = max(start - count, 0)
            order = range(start, end - 1, -1) if start > 0 else range(0)
        else:
            order = range(start, min(start + count, self.n_frames - 1) + 1)
        stepper = FrameStepper(self.model, self.state, batches=self.last_batches)
        for frame in order:
            with torch.inference_mode(), self.backend._autocast(), lean_tracking(self.model):
                item = stepper.step(frame, reverse)
            yield item

    def _run_sam2(self, start: int, count: int, reverse: bool) -> Iterator[Any]:
        """SAM2's own ``propagate_in_video``, one object after the other."""
        import torch

        with _quiet_tqdm():
            gen = self.model.propagate_in_video(
                self.state, start_frame_idx=start, max_frame_num_to_track=count, reverse=reverse
            )
            while True:
                with torch.inference_mode(), self.backend._autocast():
                    try:
                        item = next(gen)
                    except StopIteration:
                        return
                yield item

    def _release(self, frame: int, reverse: bool) -> None:
        """Drop non-conditioning outputs that SAM2's memory window no longer reaches."""
        for out in self.state["output_dict_per_obj"].values():
            non_cond = out["non_cond_frame_outputs"]
            stale = [t for t in non_cond
                     if (t > frame + self.window if reverse else t < frame - self.window)]
            for t in stale:
                del non_cond[t]

    def held_frames(self) -> int:
        """Number of per-frame outputs currently held (for memory checks)."""
        return sum(len(o["non_cond_frame_outputs"]) + len(o["cond_frame_outputs"])
                   for o in self.state["output_dict_per_obj"].values())
