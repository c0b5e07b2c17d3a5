"""PANet's bottom-up path augmentation (Liu et al., CVPR 2018) in mmdetection's PAFPN order."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from fpn_zoo.necks.base import conv_layer, init_convs
from fpn_zoo.necks.fpn import FPN
from fpn_zoo.necks.fusion import PyramidFeatures, p6_from_p5, resize_to, top_down_pathway


class PANet(FPN):
    """FPN followed by a bottom-up path: ``N2 = P2``, ``N(i+1) = conv3x3(P(i+1) + conv3x3_s2(pre-conv N(i)))``.

    Follows mmdetection's ``PAFPN`` exactly so its checkpoints can load: the stride-2 convolution reads the
    *pre-output-conv* sum of the previous level (the paper reads the post-conv ``N_i``), there is no norm or
    activation (the COCO config), P6 is max-pool subsampling of the final P5, and convolutions use mmdetection's
    Xavier-uniform initialisation. Module names match mmdetection's minus its ``.conv`` infix.

    Args:
        in_channels: Channels of C2-C5.
        out_channels: Channels of every output level.
        norm: Follow every conv by BatchNorm (and drop its bias), as ``FPN`` does with the same flag.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, *, norm: bool = False) -> None:
        super().__init__(in_channels, out_channels, norm=norm)
        n = len(in_channels) - 1
        self.downsample_convs = nn.ModuleList(conv_layer(out_channels, out_channels, 3, 2, norm=norm) for _ in range(n))
        self.pafpn_convs = nn.ModuleList(conv_layer(out_channels, out_channels, 3, norm=norm) for _ in range(n))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmdetection's ``init_cfg=dict(type='Xavier', layer='Conv2d', distribution='uniform')``."""
        init_convs(self, "xavier_uniform")

    def forward(self, features: list[Tensor]) -> PyramidFeatures:
        self._check_inputs(features)
        inter = top_down_pathway(features, self.lateral_convs, self.fpn_convs)
        for i, down in enumerate(self.downsample_convs):
            # On pyramids halved with rounding down (ConvNeXt on unpadded input) the stride-2 conv rounds up; resize
            # then. On torchvision's padded inputs sizes already agree and this is mmdetection's arithmetic.
            inter[i + 1] = inter[i + 1] + resize_to(down(inter[i]), inter[i + 1].shape[-2:])
        outs = [inter[0]] + [conv(x) for conv, x in zip(self.pafpn_convs, inter[1:], strict=True)]
        return PyramidFeatures.from_levels([*outs, p6_from_p5(outs[-1])])
