"""Feature-pyramid necks: C2-C5 in, P2-P6 out, one channel count, torchvision's backbone contract."""

from __future__ import annotations

from collections.abc import Sequence

from fpn_zoo.config import ModelConfig
from fpn_zoo.necks.augfpn import AugFPN
from fpn_zoo.necks.base import Neck
from fpn_zoo.necks.bifpn import BiFPN, bifpn_graph
from fpn_zoo.necks.fpn import FPN
from fpn_zoo.necks.fusion import LEVEL_NAMES, PyramidFeatures, WeightedFusion
from fpn_zoo.necks.panet import PANet

__all__ = [
    "FPN",
    "LEVEL_NAMES",
    "AugFPN",
    "BiFPN",
    "Neck",
    "PANet",
    "PyramidFeatures",
    "WeightedFusion",
    "bifpn_graph",
    "build_neck",
]


def build_neck(config: ModelConfig, in_channels: Sequence[int]) -> Neck:
    """The neck named by ``config.neck`` for backbone channels ``in_channels``."""
    if config.neck == "fpn":
        return FPN(in_channels, config.neck_channels)
    if config.neck == "panet":
        return PANet(in_channels, config.neck_channels)
    if config.neck == "bifpn":
        return BiFPN(in_channels, config.neck_channels, repeats=config.bifpn_repeats, fusion=config.bifpn_fusion)
    if config.neck == "augfpn":
        return AugFPN(in_channels, config.neck_channels)
    raise ValueError(f"Unknown neck {config.neck!r}; choose from fpn, panet, bifpn, augfpn.")
