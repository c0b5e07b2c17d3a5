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
    "NECKS",
    "AugFPN",
    "BiFPN",
    "Neck",
    "PANet",
    "PyramidFeatures",
    "WeightedFusion",
    "bifpn_graph",
    "build_neck",
]


# Neck short name -> class; each class builds itself from a ModelConfig (`Neck.from_config`).
NECKS: dict[str, type[Neck]] = {"fpn": FPN, "panet": PANet, "bifpn": BiFPN, "augfpn": AugFPN}


def build_neck(config: ModelConfig, in_channels: Sequence[int]) -> Neck:
    """The neck named by ``config.neck`` for backbone channels ``in_channels``.

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> build_neck(get_model_config("panet_r50_coco"), [256, 512, 1024, 2048]).out_channels
        256
    """
    if config.neck not in NECKS:
        raise ValueError(f"Unknown neck {config.neck!r}; choose from {sorted(NECKS)}.")
    return NECKS[config.neck].from_config(config, in_channels)
