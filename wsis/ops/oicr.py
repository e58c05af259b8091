"""oicr_assign: the targets of an OICR refinement branch (paper A.2.3, docs/DESIGN.md §2)."""
from typing import Tuple

import torch

from . import _checks
from ._backend import use_triton_for
from ._library import ops


def oicr_assign(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_labels: torch.Tensor,
    fg_thresh: float = 0.5,
    bg_thresh: float = 0.1,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pseudo-labels of one image from the previous stage's scores.

    boxes `[R,4]`; scores `[R,C]` foreground scores (no background column); image_labels `[C]`
    with 1 for the classes present. For each present class in increasing order the seed is the
    highest-scoring proposal not already a seed (ties: lowest row). Each proposal takes the seed
    it overlaps most (ties: the earlier class). Returns `labels` (int64, seed class + 1 where that
    IoU >= fg_thresh, else 0), `weights` (the seed's score; 0 where IoU < bg_thresh),
    `seed_index` (int64 row of the seed) and `max_iou`. Two empty boxes count as IoU 0.
    """
    _checks.tensor(boxes, "boxes", (2,), last=4)
    _checks.tensor(scores, "scores", (2,))
    _checks.tensor(image_labels, "image_labels", (1,), floating=False)
    _checks.length(scores, "scores", boxes.shape[0], "box")
    if image_labels.shape[0] != scores.shape[1]:
        raise ValueError(
            f"image_labels must have {scores.shape[1]} entries (one per column of scores), "
            f"got shape {tuple(image_labels.shape)}"
        )
    _checks.same_device(("boxes", boxes), ("scores", scores), ("image_labels", image_labels))
    _checks.same_dtype(("boxes", boxes), ("scores", scores))
    if not 0.0 <= bg_thresh <= fg_thresh:
        raise ValueError(f"need 0 <= bg_thresh <= fg_thresh, got bg_thresh={bg_thresh}, fg_thresh={fg_thresh}")
    if use_triton_for(boxes):
        return torch.ops.wsis_triton.oicr_assign(boxes, scores, image_labels, float(fg_thresh), float(bg_thresh))
    return ops.oicr_assign(boxes, scores, image_labels, float(fg_thresh), float(bg_thresh))


@torch.library.register_fake("wsis::oicr_assign")
def _(boxes, scores, image_labels, fg_thresh, bg_thresh):
    r = boxes.shape[0]
    return (
        boxes.new_empty((r,), dtype=torch.int64),
        scores.new_empty((r,)),
        boxes.new_empty((r,), dtype=torch.int64),
        boxes.new_empty((r,)),
    )
