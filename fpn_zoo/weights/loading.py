"""Strict loading of a state dict into a zoo model, with the fine-tuning exception for the class predictor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

# The only tensors whose shape depends on the number of classes (torchvision's FastRCNNPredictor), and AugFPN's
# training-only auxiliary head's predictor (consistent supervision).
PREDICTOR_PREFIX = "roi_heads.box_predictor."
CLASS_SPECIFIC_PREFIXES = (PREDICTOR_PREFIX, "roi_heads.aux_head.box_predictor.")
_IGNORED_SUFFIX = ".num_batches_tracked"  # absent from FrozenBatchNorm2d, present in BatchNorm2d checkpoints


class WeightsMismatchError(ValueError):
    """Weights that do not fit the model; the message names the mismatched tensors."""


@dataclass(frozen=True)
class LoadReport:
    """What a load did besides copying tensors one to one.

    Attributes:
        dropped: Checkpoint tensors not loaded because the class count changed (the class-specific predictor).
    """

    dropped: tuple[str, ...] = ()


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_state_dict(
    expected: Mapping[str, tuple[int, ...]],
    provided: Mapping[str, tuple[int, ...]],
    *,
    drop_predictor: bool,
    source: str,
    model_name: str,
) -> LoadReport:
    """Compare tensor names and shapes; raise unless they match exactly (predictor aside when re-initialising).

    Args:
        expected: Model tensor names -> shapes.
        provided: Checkpoint tensor names -> shapes.
        drop_predictor: The class count differs, so predictor tensors are dropped (and must not be required).
        source: Where the weights come from, for messages.
        model_name: The model being built, for messages.

    Raises:
        WeightsMismatchError: Naming missing, unexpected and wrongly shaped tensors.
    """
    exp = {k: v for k, v in expected.items() if not k.endswith(_IGNORED_SUFFIX)}
    got = {k: v for k, v in provided.items() if not k.endswith(_IGNORED_SUFFIX)}
    dropped = sorted(k for k in got if drop_predictor and k.startswith(CLASS_SPECIFIC_PREFIXES))
    for k in dropped:
        del got[k]
    if drop_predictor:
        exp = {k: v for k, v in exp.items() if not k.startswith(CLASS_SPECIFIC_PREFIXES)}
    missing = sorted(set(exp) - set(got))
    unexpected = sorted(set(got) - set(exp))
    wrong = sorted(k for k in set(exp) & set(got) if tuple(exp[k]) != tuple(got[k]))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_listing(unexpected)})")
        if wrong:
            shapes = [f"{k}: checkpoint {tuple(got[k])} vs model {tuple(exp[k])}" for k in wrong]
            parts.append(f"{len(wrong)} with another shape ({_listing(shapes, 4)})")
        raise WeightsMismatchError(
            f"Weights {source} do not fit {model_name}: " + "; ".join(parts) + ". Nothing was loaded. "
            "Check that the weights were exported for this model name and options."
        )
    return LoadReport(dropped=tuple(dropped))


def assign_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], report: LoadReport) -> None:
    """Move checked tensors into ``model`` (built on the meta device) without copying them again.

    Floating tensors are cast to the model's dtype so a half-precision file cannot silently change the model.
    """
    reference = model.state_dict()
    tensors = {}
    for k, v in state_dict.items():
        if k in report.dropped or k not in reference:
            continue
        want = reference[k].dtype
        tensors[k] = v.to(want) if v.is_floating_point() and v.dtype != want else v
    model.load_state_dict(tensors, strict=False, assign=True)
