"""What ``fpn-zoo train`` prints: the plan of a run, the cost of an evaluation before it starts, and one table line
per epoch (or per evaluation of an ``--iters`` run). Text only; the trainer decides when, and only rank 0 prints.

Examples:
    >>> duration(42.0), duration(600.0)
    ('42.0 s', '10.0 min')
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from fpn_zoo.voice import option, say

if TYPE_CHECKING:
    from fpn_zoo.engine.trainer import Position

__all__ = ["duration", "eval_estimate", "plan_line", "table_line"]

# A forward pass without the backward costs about half a training step per image (0.4 measured for fpn_r50 on CPU):
# the first evaluation's estimate; later ones use the evaluation measured before.
EVAL_COST_PER_TRAIN_COST = 0.5


def duration(seconds: float) -> str:
    """Seconds in the unit a reader takes in at a glance."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def plan_line(
    model: str,
    out: str | os.PathLike[str],
    total_steps: int,
    batches_per_epoch: int,
    val_images: int | None,
    eval_every: int | None,
) -> str:
    """The run announced before its first step: its length and when it evaluates (``eval_every=None``: at the end)."""
    epochs = round(total_steps / batches_per_epoch, 2)
    text = f"Training {model} in {out}: {total_steps} steps ({epochs:g} epochs of {batches_per_epoch} steps); "
    if val_images is None:
        return text + "no validation set, no evaluation."
    when = "at the end" if eval_every is None else "every epoch" if eval_every == 1 else f"every {eval_every} epochs"
    when += " and at the end" if eval_every not in (None, 1) else ""
    return text + f"evaluating {val_images} validation images {when}."


def eval_estimate(
    val_images: int,
    world_size: int,
    images_per_process: int,
    train_time: tuple[float, int],
    eval_s_per_image: float | None,
    *,
    last: bool,
) -> str:
    """The line before an evaluation: how long it should take, and how to have fewer when it dwarfs the training.

    Args:
        val_images: Validation images in all.
        world_size: Processes sharing them.
        images_per_process: The share of the slowest process.
        train_time: Seconds of training so far and the images they took.
        eval_s_per_image: Measured by the previous evaluation; ``None`` before the first.
        last: Whether this is the run's final evaluation.
    """
    text = f"Evaluating {val_images} validation images"
    text += f" on {world_size} processes" if world_size > 1 else ""
    seconds, images = train_time
    if eval_s_per_image is not None:
        per_image, source = eval_s_per_image, "as long as the last evaluation"
    elif images:
        per_image = EVAL_COST_PER_TRAIN_COST * seconds / images
        source = f"estimated from the training steps' {seconds / images:.2f} s/image"
    else:
        return text + "."
    estimate = per_image * images_per_process
    text += f": about {duration(estimate)} ({source})"
    if estimate > 2 * seconds:  # an evaluation out of proportion to the training: say how to have fewer
        text += f"; more than the {duration(seconds)} of training so far: " + (
            say(
                "a run without val_ann skips it, and evaluate_model() scores final/ any time later",
                "a run without --val-ann skips it, and the eval command printed at the end scores final/ later",
            )
            if last
            else f"{option('eval_every', placeholder='N')} evaluates every N epochs"
        )
    return text + "."


def table_line(
    position: Position,
    total_steps: int,
    batches_per_epoch: int,
    mean_loss: float | None,
    metrics: dict[str, Any] | None,
    eval_seconds: float | None,
) -> str:
    """``epoch 2/12  step 8/48  loss  0.8123  AP  41.2  AP50  70.3  eval 4.5 s`` (metrics ``None``: no validation
    set; empty: not evaluated at this line)."""
    epochs = round(total_steps / batches_per_epoch, 2)
    epoch = round(position.epoch + position.step_in_epoch / batches_per_epoch, 2)
    step = f"{position.global_step:>{len(str(total_steps))}}/{total_steps}"
    loss = f"{mean_loss:7.4f}" if mean_loss is not None else "      -"
    line = f"epoch {epoch:>{len(f'{epochs:g}')}g}/{epochs:g}  step {step}  loss {loss}"
    if metrics is not None:
        ap, ap50 = (f"{v:5.1f}" if v is not None else "    -" for v in (metrics.get("AP"), metrics.get("AP50")))
        line += f"  AP {ap}  AP50 {ap50}" + (f"  eval {duration(eval_seconds)}" if eval_seconds is not None else "")
    return line
