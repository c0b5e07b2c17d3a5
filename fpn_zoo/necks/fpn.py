"""FPN (Lin et al., CVPR 2017) with torchvision's arithmetic and initialisation."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from fpn_zoo.necks.base import Neck, conv_layer, init_convs
from fpn_zoo.necks.fusion import PyramidFeatures, p6_from_p5, top_down_pathway


class FPN(Neck):
    """Feature Pyramid Network: 1x1 laterals, nearest top-down sum, 3x3 outputs, P6 by subsampling P5.

    Same computation and initialisation (``kaiming_uniform_(a=1)``, zero bias) as
    ``torchvision.ops.FeaturePyramidNetwork`` with ``LastLevelMaxPool``; module names follow mmdetection
    (``lateral_convs``, ``fpn_convs``) so mmdetection FPN checkpoints map by dropping their ``.conv`` infix.

    Args:
        in_channels: Channels of C2-C5.
        out_channels: Channels of every output level.
        norm: Follow every conv by BatchNorm (and drop its bias), as torchvision's v2 FPN
            (``FeaturePyramidNetwork(norm_layer=nn.BatchNorm2d)``).

    Examples:
        >>> import torch
        >>> neck = FPN([8, 16, 32, 64], 16)
        >>> feats = [torch.rand(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([8, 16, 32, 64])]
        >>> [tuple(p.shape[-2:]) for p in neck(feats).values()]
        [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, *, norm: bool = False) -> None:
        super().__init__(in_channels, out_channels)
        self.lateral_convs = nn.ModuleList(conv_layer(c, out_channels, 1, norm=norm) for c in in_channels)
        self.fpn_convs = nn.ModuleList(conv_layer(out_channels, out_channels, 3, norm=norm) for _ in in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's FPN initialisation."""
        init_convs(self, "kaiming_uniform_a1")

    def forward(self, features: list[Tensor]) -> PyramidFeatures:
        self._check_inputs(features)
        outs = top_down_pathway(features, self.lateral_convs, self.fpn_convs)
        return PyramidFeatures.from_levels([*outs, p6_from_p5(outs[-1])])
