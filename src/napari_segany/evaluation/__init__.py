"""Evaluation: segmentation quality against ground truth, with simulated prompts.

Four protocols, run through the same engine users run, for every registered backend:

* ``"interactive"`` (:mod:`.interactive`): micro-sam's iterative prompting on 2D planes,
  IoU per object after the first prompt and after each correction;
* ``"automatic"`` (:mod:`.automatic`): segment everything, mSA / SA50 / SA75 / precision /
  recall / F1 against instance labels;
* ``"volume"`` (:mod:`.volumes`): one prompt per object on one plane, slice-wise and SAM2
  propagation, Dice and normalised surface Dice in mm;
* ``"video"`` (:mod:`.video`): semi-supervised tracking from the first frame, DAVIS J & F.

:func:`evaluate` runs one protocol on samples (:mod:`.datasets`: arrays, file pairs,
folders, CTC and DAVIS layouts, a labels store as the prediction) for several models with
the same simulated prompts (:mod:`.simulate`), and writes a tidy CSV, a JSON summary, PNG
plots and a Markdown report (:mod:`.table`, :mod:`.summary`, :mod:`.plots`,
:mod:`.report`). The metrics are in :mod:`.metrics`.

Examples
--------
>>> from napari_segany.evaluation import evaluate, Sample      # doctest: +SKIP
>>> res = evaluate(Sample("nuclei", image, labels), ["sam_vit_b", "sam2.1_hiera_tiny"],
...                protocol="interactive", out="eval-out")    # doctest: +SKIP
>>> print(res.table())                                         # doctest: +SKIP
"""

from .automatic import AutomaticSettings, run_automatic
from .datasets import (
    FilePair,
    Sample,
    as_samples,
    check_truth,
    ctc_pairs,
    davis_pairs,
    find_samples,
    folder_pairs,
    read_labels,
)
from .interactive import InteractiveSettings, interactive_prompts, run_interactive
from .metrics import (
    IOU_THRESHOLDS,
    boundary_map,
    davis_f,
    davis_j,
    dice,
    instance_scores,
    iou,
    match_instances,
    overlap_matrix,
    segmentation_accuracy,
    surface_dice,
)
from .plots import plot_results
from .report import write_report
from .run import PROTOCOLS, EvaluationResult, ModelEntry, default_settings, evaluate, model_entries
from .simulate import correction_points, first_prompt, interior_point, object_box
from .summary import summarize, summary_table
from .table import COLUMNS, ResultTable, read_rows
from .video import VideoSettings, run_video, video_prompts
from .volumes import VolumeSettings, run_volume, volume_prompts

__all__ = [
    "evaluate", "EvaluationResult", "ModelEntry", "model_entries", "PROTOCOLS",
    "default_settings",
    "InteractiveSettings", "AutomaticSettings", "VolumeSettings", "VideoSettings",
    "Sample", "FilePair", "as_samples", "find_samples", "folder_pairs", "ctc_pairs",
    "davis_pairs", "read_labels", "check_truth",
    "interactive_prompts", "volume_prompts", "video_prompts",
    "run_interactive", "run_automatic", "run_volume", "run_video",
    "iou", "dice", "overlap_matrix", "match_instances", "segmentation_accuracy",
    "instance_scores", "surface_dice", "boundary_map", "davis_j", "davis_f",
    "IOU_THRESHOLDS",
    "interior_point", "object_box", "first_prompt", "correction_points",
    "COLUMNS", "ResultTable", "read_rows", "summarize", "summary_table", "plot_results",
    "write_report",
]
