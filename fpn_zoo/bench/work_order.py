"""Which zoo model does strictly more work than which: the pairs the benchmark's consistency check compares.

A model *contains* another when it computes every layer of the other at the same or a larger size, and more:
the same heads, a neck that is the other's neck plus extra stages, and a backbone that is the other's made deeper or
wider. Such a model cannot be faster on the same machine, so a run in which it is, beyond the confidence intervals,
measured noise, not the models.

A FLOP count alone does not order models this way: operations differ in how fast they run. On a 2-core CPU
(docs/results, 2026-12-07) BiFPN's depthwise-separable convolutions, 339 GFLOPs on r50 at 800x1216, ran slower than
FPN's 394 GFLOPs of dense ones, and AugFPN (421 GFLOPs) slower than PANet (441), because its Soft RoI Selection pools
every RoI from four levels, memory traffic that FLOPs do not count. Comparing every pair on a backbone by FLOPs
flagged these runs although nothing was wrong with them.

Examples:
    >>> contains("panet_r101_coco", "fpn_r50_coco")
    True
    >>> contains("bifpn_r50_coco", "fpn_r50_coco"), contains("fpn_r50_v2_coco", "fpn_r50_coco")
    (False, False)
"""

from __future__ import annotations

from fpn_zoo.registry import UnknownModelError, get_model_config

__all__ = ["BACKBONE_CONTAINS", "NECK_CONTAINS", "contains"]

# neck -> the necks whose whole graph it computes before its own extra stages.
NECK_CONTAINS: dict[str, frozenset[str]] = {
    "panet": frozenset({"fpn"}),  # FPN, then a bottom-up path (Liu et al. 2018, section 3.1)
    "augfpn": frozenset({"fpn"}),  # FPN plus residual feature augmentation; Soft RoI Selection pools every level
}

# backbone -> the backbones each of whose layers it computes at the same or a larger size.
BACKBONE_CONTAINS: dict[str, frozenset[str]] = {
    "r101": frozenset({"r50"}),  # same widths, stage 3 has 23 blocks instead of 6
    "convnext_s": frozenset({"convnext_t"}),  # same widths, stage 3 has 27 blocks instead of 9
    "convnext_b": frozenset({"convnext_s", "convnext_t"}),  # ConvNeXt-S's depths at 128 instead of 96 base channels
}


def contains(heavier: str, lighter: str) -> bool:
    """Whether model ``heavier`` computes all of model ``lighter`` and more (an unregistered name: ``False``).

    Both must have the same dataset and architecture options other than neck and backbone (the same heads); then
    the neck and the backbone must each be equal or contain the other's, and not both equal.
    """
    try:
        a, b = get_model_config(heavier), get_model_config(lighter)
    except UnknownModelError:  # a results file may name a model that is no longer registered
        return False
    same_heads = (a.dataset, a.variant) == (b.dataset, b.variant)
    neck = a.neck == b.neck or b.neck in NECK_CONTAINS.get(a.neck, ())
    backbone = a.backbone == b.backbone or b.backbone in BACKBONE_CONTAINS.get(a.backbone, ())
    return same_heads and neck and backbone and (a.neck, a.backbone) != (b.neck, b.backbone)
