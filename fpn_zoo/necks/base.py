"""The neck contract shared by FPN, PANet, BiFPN and AugFPN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from torch import Tensor, nn

from fpn_zoo.necks.fusion import PyramidFeatures

if TYPE_CHECKING:
    from fpn_zoo.config import ModelConfig


class Neck(nn.Module):
    """Maps backbone features C2-C5 (fine to coarse) to pyramid levels P2-P6 with one channel count.

    Subclasses set up their layers in ``__init__`` and implement `forward`. ``out_channels`` is the attribute
    torchvision's ``FasterRCNN`` reads from its backbone.
    """

    # The box head pools RoIs with AugFPN's Soft RoI Selection instead of torchvision's level assignment.
    soft_roi_selection: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: ModelConfig, in_channels: Sequence[int]) -> Neck:
        """Build this neck for backbone channels ``in_channels`` with the options of ``config``."""
        return cls(in_channels, config.neck_channels)

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        if len(in_channels) != 4 or any(c < 1 for c in in_channels):
            raise ValueError(f"A neck takes 4 backbone levels (C2-C5) with positive channels, got {list(in_channels)}.")
        if out_channels < 1:
            raise ValueError(f"out_channels must be positive, got {out_channels}.")
        self.in_channels = list(in_channels)
        self.out_channels = out_channels

    def _check_inputs(self, features: Sequence[Tensor]) -> None:
        got = [f.shape[1] for f in features]
        if got != self.in_channels:
            raise ValueError(f"{type(self).__name__} was built for input channels {self.in_channels}, got {got}.")

    def forward(self, features: list[Tensor]) -> PyramidFeatures:  # pragma: no cover - abstract
        raise NotImplementedError


def init_convs(module: nn.Module, scheme: Literal["kaiming_uniform_a1", "xavier_uniform"]) -> None:
    """Initialise every ``Conv2d`` below ``module`` (weights by ``scheme``, biases zero).

    ``kaiming_uniform_a1`` is torchvision's and detectron2's FPN initialisation; ``xavier_uniform`` is
    mmdetection's (PAFPN) and the AugFPN reference's.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if scheme == "kaiming_uniform_a1":
                nn.init.kaiming_uniform_(m.weight, a=1)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
