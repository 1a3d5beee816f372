"""One tracking step of SAM2 over a frame for all objects, batching objects that can be.

``SAM2VideoPredictor.propagate_in_video`` (sam2 >= 1.1) runs every object on its own
through the memory attention, the mask decoder and the memory encoder, one after the
other, so its time grows with the number of objects. Each object's memory is its own, but
which memories it reads depends only on which frames it has outputs for: objects prompted
on the same planes (the usual case) read memories of the same frames. :class:`FrameStepper`
groups objects by that layout and runs each group through SAM2's ``track_step`` as one
batch, over the frame's image features computed once (expanded over the batch, not
copied). Each object's outputs are stored in its own per-object dictionary as a view of
the batch, as SAM2's per-object state expects; the batch itself is kept beside them, so the
next frame reads a group's memories without copying them together again.

Results equal SAM2's per-object run up to float rounding (tested against
``SAM2VideoPredictor``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FrameStepper"]

_COND, _NON_COND = "cond_frame_outputs", "non_cond_frame_outputs"


class FrameStepper:
    """Tracks every object of a SAM2 inference state through single frames.

    Parameters
    ----------
    model : SAM2VideoPredictor
        The model (its video-predictor methods are used for the bookkeeping).
    state : dict
        SAM2's inference state (``init_state`` layout), objects already prompted and
        ``propagate_in_video_preflight`` done.
    batches : list of int, optional
        A list to append the size of every batch run to (profiling, tests).
    """

    def __init__(self, model: Any, state: dict[str, Any], *,
                 batches: list[int] | None = None) -> None:
        self.model = model
        self.state = state
        stride = int(getattr(model, "memory_temporal_stride_for_eval", 1))
        #: How far (in frames) the memory of a frame can reach.
        self.reach = max(int(model.num_maskmem) * stride, int(model.max_obj_ptrs_in_encoder)) + 1
        self._merged: dict[tuple[str, int], tuple[list[Any], dict[str, Any]]] = {}
        #: Size of every batch run (appended to ``batches`` when given).
        self.batches: list[int] = [] if batches is None else batches

    # -- memory layout -------------------------------------------------------------------
    def _layout(self, obj_idx: int, frame: int) -> tuple:
        out = self.state["output_dict_per_obj"][obj_idx]
        near = tuple(sorted(t for t in out[_NON_COND] if abs(t - frame) <= self.reach))
        return tuple(sorted(out[_COND])), near

    def _merged_output(self, group: list[int], kind: str, t: int) -> dict[str, Any]:
        """The outputs of ``group`` on frame ``t`` as one batch (what memory selection reads)."""
        import torch

        outs = [self.state["output_dict_per_obj"][i][kind][t] for i in group]
        hit = self._merged.get((kind, t))
        if hit is not None and len(hit[0]) == len(outs) and all(
                a is b for a, b in zip(hit[0], outs, strict=True)):
            return hit[1]
        const = self.state["constants"].get("maskmem_pos_enc")
        pos = ([x.expand(len(group), *x.shape[1:]) for x in const] if const is not None else
               [torch.cat(parts) for parts in zip(*(o["maskmem_pos_enc"] for o in outs),
                                                  strict=True)])
        merged = {"maskmem_features": torch.cat([o["maskmem_features"] for o in outs]),
                  "maskmem_pos_enc": pos,
                  "obj_ptr": torch.cat([o["obj_ptr"] for o in outs]),
                  "object_score_logits": torch.cat([o["object_score_logits"] for o in outs]),
                  "pred_masks": None}
        self._merged[(kind, t)] = (outs, merged)
        return merged

    def _group_dict(self, group: list[int], frame: int) -> dict[str, dict[int, Any]]:
        cond_frames, near = self._layout(group[0], frame)
        return {_COND: {t: self._merged_output(group, _COND, t) for t in cond_frames},
                _NON_COND: {t: self._merged_output(group, _NON_COND, t) for t in near}}

    def _forget(self, frame: int) -> None:
        for key in [k for k in self._merged if k[0] == _NON_COND and abs(k[1] - frame)
                    > self.reach]:
            del self._merged[key]

    def _clear_around(self, obj_idx: int, frame: int) -> None:
        """Drop the object's non-conditioning memories around a prompted frame (SAM2's
        ``clear_non_cond_mem_around_input``, for one object)."""
        r = int(getattr(self.model, "memory_temporal_stride_for_eval", 1))
        non_cond = self.state["output_dict_per_obj"][obj_idx][_NON_COND]
        for t in range(frame - r * self.model.num_maskmem, frame + r * self.model.num_maskmem + 1):
            non_cond.pop(t, None)

    # -- one frame -----------------------------------------------------------------------
    def step(self, frame: int, reverse: bool) -> tuple[int, list[int], Any]:
        """Track every object through ``frame``: ``(frame, obj_ids, video-size mask logits)``.

        Objects with a conditioning output on ``frame`` (prompted there) keep it, as in
        SAM2; the others are tracked, grouped by memory layout, one batch per group.
        """
        import torch

        model, state = self.model, self.state
        n = len(state["obj_ids"])
        masks: list[Any] = [None] * n
        groups: dict[tuple, list[int]] = {}
        for i in range(n):
            out = state["output_dict_per_obj"][i]
            if frame in out[_COND]:
                masks[i] = out[_COND][frame]["pred_masks"].to(state["device"],
                                                              non_blocking=True)
                if model.clear_non_cond_mem_around_input:
                    self._clear_around(i, frame)
            else:
                groups.setdefault(self._layout(i, frame), []).append(i)
            state["frames_tracked_per_obj"][i][frame] = {"reverse": reverse}
        if groups:
            _, _, feats, pos, sizes = model._get_image_feature(state, frame, 1)
            for group in groups.values():
                for i, m in zip(group, self._track(group, frame, reverse, feats, pos, sizes),
                                strict=True):
                    masks[i] = m
        self._forget(frame)
        all_masks = torch.cat(masks, dim=0) if n > 1 else masks[0]
        _, video_res = model._get_orig_video_res_output(state, all_masks)
        return frame, state["obj_ids"], video_res

    def _track(self, group: list[int], frame: int, reverse: bool, feats: list[Any],
               pos: list[Any], sizes: list[Any]) -> list[Any]:
        """Run ``group`` through ``track_step`` as one batch; store each object's output."""
        import torch

        model, state = self.model, self.state
        b = len(group)
        current = model.track_step(
            frame_idx=frame, is_init_cond_frame=False,
            current_vision_feats=[x.expand(-1, b, -1) for x in feats],
            current_vision_pos_embeds=[x.expand(-1, b, -1) for x in pos],
            feat_sizes=sizes, point_inputs=None, mask_inputs=None,
            output_dict=self._group_dict(group, frame), num_frames=state["num_frames"],
            track_in_reverse=reverse, run_mem_encoder=True)
        self.batches.append(b)
        storage = state["storage_device"]
        mem = current["maskmem_features"]
        if mem is not None:
            mem = mem.to(torch.bfloat16).to(storage, non_blocking=True)
        pred = current["pred_masks"]
        if model.fill_hole_area > 0:
            from sam2.utils.misc import fill_holes_in_mask_scores

            pred = fill_holes_in_mask_scores(pred, model.fill_hole_area)
        compact = {"maskmem_features": mem,
                   "maskmem_pos_enc": model._get_maskmem_pos_enc(state, current),
                   "pred_masks": pred.to(storage, non_blocking=True),
                   "obj_ptr": current["obj_ptr"],
                   "object_score_logits": current["object_score_logits"]}
        outs = []
        for j, i in enumerate(group):
            own = {k: (None if v is None else [x[j:j + 1] for x in v] if isinstance(v, list)
                       else v[j:j + 1]) for k, v in compact.items()}
            state["output_dict_per_obj"][i][_NON_COND][frame] = own
            outs.append(own)
        self._merged[(_NON_COND, frame)] = (outs, compact)
        return [pred[j:j + 1] for j in range(b)]
