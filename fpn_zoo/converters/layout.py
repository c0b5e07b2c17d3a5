"""What every converter shares: its result type, its error, and key renaming by ordered rules.

A converter is data (house style rule 13, after torchvision's ``_load_from_state_dict`` upgrades and timm's
``checkpoint_filter_fn``): a function that recognises an upstream layout from tensor names and shapes alone, and a
pure mapping from the upstream state dict to the zoo's, each rule citing the upstream code it follows. Reading files
lives elsewhere ([`fpn_zoo.weights.convert`][fpn_zoo.weights.convert]); nothing here touches the disk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


class LayoutError(ValueError):
    """A state dict whose layout a converter does not know; the message says what was recognised."""


@dataclass(frozen=True)
class Recognised:
    """What a converter read off an upstream state dict.

    Attributes:
        model: The zoo model the tensors fit, e.g. ``"fpn_r101_coco"``.
        description: The upstream architecture in words, for messages (``"mmdetection Faster R-CNN, ResNet-101,
            FPN"``).
        dropped_prefixes: Upstream branches the zoo model has no place for and drops (a Mask R-CNN's mask head).
    """

    model: str
    description: str
    dropped_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversion:
    """A converted state dict and everything needed to run it as it was trained.

    Attributes:
        state_dict: Tensors under the zoo model's names.
        options: [`ModelConfig`][fpn_zoo.config.ModelConfig] fields the weights need (inference settings,
            BatchNorm epsilon); they go into the export's ``config.json``.
        dropped: Upstream tensors deliberately left out (mask branch, BatchNorm step counters), named.
        recognised: The layout the converter recognised.
    """

    state_dict: dict[str, Tensor]
    options: dict[str, Any]
    dropped: tuple[str, ...]
    recognised: Recognised
    notes: tuple[str, ...] = field(default=())


Rule = tuple[re.Pattern[str], str]


def rules(*pairs: tuple[str, str]) -> tuple[Rule, ...]:
    """Compile ``(regex, replacement)`` pairs; the first matching rule renames a key."""
    return tuple((re.compile(pattern), repl) for pattern, repl in pairs)


def rename(state_dict: Mapping[str, Tensor], renames: Iterable[Rule]) -> tuple[dict[str, Tensor], list[str]]:
    """Apply the first matching rule to every key; keys no rule matches are returned by name, not kept.

    Returns:
        The renamed tensors and the names of the keys no rule matched (the caller decides whether that is an error).

    Examples:
        >>> import torch
        >>> state = {"a.conv.weight": torch.zeros(1), "x": torch.zeros(1)}
        >>> out, unmatched = rename(state, rules((r"^a\\.conv\\.", "a.")))
        >>> list(out), unmatched
        (['a.weight'], ['x'])
    """
    renames = tuple(renames)
    out: dict[str, Tensor] = {}
    unmatched: list[str] = []
    for key, value in state_dict.items():
        for pattern, repl in renames:
            new, count = pattern.subn(repl, key)
            if count:
                out[new] = value
                break
        else:
            unmatched.append(key)
    return out, unmatched


def count_blocks(keys: Iterable[str], prefix: str) -> int:
    """How many numbered children ``prefix.<i>.`` the keys mention (blocks of a stage, layers of a head).

    Examples:
        >>> count_blocks(["b.layer3.0.conv1.weight", "b.layer3.5.conv1.weight"], "b.layer3")
        6
    """
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


# ResNet depth by the number of blocks in stage 3 (He et al. 2016, table 1): the other stages are equal (3, 4, -, 3).
RESNET_BY_STAGE3_BLOCKS: dict[int, str] = {6: "r50", 23: "r101"}

# ConvNeXt variant by (blocks per stage, stem width) (Liu et al. 2022, section 2.6).
CONVNEXT_BY_DEPTHS_WIDTH: dict[tuple[tuple[int, ...], int], str] = {
    ((3, 3, 9, 3), 96): "convnext_t",
    ((3, 3, 27, 3), 96): "convnext_s",
    ((3, 3, 27, 3), 128): "convnext_b",
}


def describe_keys(keys: Iterable[str], limit: int = 6) -> str:
    """The distinct top-level groups of ``keys`` (``backbone.layer1``, ``neck.fpn_convs``, ...), for messages."""
    groups: list[str] = []
    for key in keys:
        group = ".".join(p for p in key.split(".")[:2] if not p.isdigit())
        if group not in groups:
            groups.append(group)
    shown = ", ".join(groups[:limit])
    return shown + (f", ... ({len(groups) - limit} more)" if len(groups) > limit else "")
