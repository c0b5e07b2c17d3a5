"""The neck contract shared by FPN, PANet, BiFPN and AugFPN."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from torch import Tensor, nn
from torchvision.ops.misc import Conv2dNormActivation

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
        return cls(in_channels, config.neck_channels, norm=config.neck_norm == "batch_norm")

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


def conv_layer(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *, norm: bool) -> nn.Module:
    """An FPN-style convolution: with a bias and nothing after it, or without bias and followed by BatchNorm.

    The normalised form is torchvision's ``Conv2dNormActivation(..., norm_layer=BatchNorm2d, activation_layer=None)``,
    what ``FeaturePyramidNetwork(norm_layer=nn.BatchNorm2d)`` builds for the v2 detectors (parameter names ``.0``
    for the conv and ``.1`` for the norm); the plain form keeps the plain ``Conv2d`` of the v1 checkpoints.

    Examples:
        >>> import torch
        >>> [type(m).__name__ for m in conv_layer(8, 16, 3, norm=True)], conv_layer(8, 16, 1, norm=False).bias.shape
        (['Conv2d', 'BatchNorm2d'], torch.Size([16]))
    """
    padding = (kernel_size - 1) // 2
    if not norm:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
    return Conv2dNormActivation(
        in_channels, out_channels, kernel_size, stride, padding, norm_layer=nn.BatchNorm2d, activation_layer=None
    )


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
