"""AugFPN's neck (Guo et al., CVPR 2020): FPN plus Residual Feature Augmentation.

Follows the reference ``HighFPN`` (Gus-Guo/AugFPN ``mmdet/models/necks/high_fpn.py``): C5 is pooled adaptively to
0.1/0.2/0.3 of its size (ratio-invariant), each pooled map is projected by a 1x1 conv and upsampled back
(bilinear, ``align_corners=True``); Adaptive Spatial Fusion weighs the three maps with a learned per-pixel
sigmoid attention, and the fused map is added to the top lateral before the FPN top-down pathway. In training mode
the raw laterals (before the RFA sum and the top-down merge) are returned alongside (``features.raw_laterals``) for
consistent supervision, whose auxiliary head and losses live in
[`fpn_zoo.heads.consistent_supervision`][fpn_zoo.heads.consistent_supervision]. Soft RoI Selection, the other part of
AugFPN's heads, lives in [`fpn_zoo.heads.soft_roi_selection`][fpn_zoo.heads.soft_roi_selection].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fpn_zoo.necks.base import Neck, conv_layer, init_convs
from fpn_zoo.necks.fusion import PyramidFeatures, p6_from_p5, top_down_pathway

POOL_RATIOS: tuple[float, ...] = (0.1, 0.2, 0.3)


class AugFPN(Neck):
    """FPN with Residual Feature Augmentation on the top level.

    The reference upsamples top-down with a fixed ``scale_factor=2`` (relying on inputs padded to a multiple of 32);
    this neck upsamples to each lateral's exact size like [`FPN`][fpn_zoo.necks.fpn.FPN], which is identical on
    padded inputs and also works on any other size. Convolutions use Xavier-uniform initialisation, as the
    reference does.

    Args:
        in_channels: Channels of C2-C5.
        out_channels: Channels of every output level.
        pool_ratios: Adaptive pooling ratios of the residual feature augmentation.
        norm: Follow every lateral and output conv by BatchNorm (and drop its bias), as ``FPN`` does with the same
            flag; the residual feature augmentation stays as the reference builds it.

    Examples:
        >>> import torch
        >>> neck = AugFPN([8, 16, 32, 64], 16).train()
        >>> feats = [torch.rand(1, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate([8, 16, 32, 64])]
        >>> out = neck(feats)
        >>> len(out), len(out.raw_laterals)
        (5, 4)
    """

    soft_roi_selection = True

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        *,
        pool_ratios: Sequence[float] = POOL_RATIOS,
        norm: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels)
        self.pool_ratios = tuple(pool_ratios)
        self.lateral_convs = nn.ModuleList(conv_layer(c, out_channels, 1, norm=norm) for c in in_channels)
        self.fpn_convs = nn.ModuleList(conv_layer(out_channels, out_channels, 3, norm=norm) for _ in in_channels)
        k = len(self.pool_ratios)
        self.high_lateral_conv = nn.ModuleList(nn.Conv2d(in_channels[-1], out_channels, 1) for _ in range(k))
        self.high_lateral_conv_attention = nn.Sequential(
            nn.Conv2d(out_channels * k, out_channels, 1), nn.ReLU(), nn.Conv2d(out_channels, k, 3, padding=1)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference's ``xavier_init(m, distribution='uniform')`` on every convolution."""
        init_convs(self, "xavier_uniform")

    def residual_feature_augmentation(self, c5: Tensor) -> Tensor:
        """Ratio-invariant context from C5, fused by adaptive spatial attention (the map added to M5)."""
        h, w = c5.shape[-2:]
        contexts = []
        for ratio, conv in zip(self.pool_ratios, self.high_lateral_conv, strict=True):
            pooled = F.adaptive_avg_pool2d(c5, (max(1, int(h * ratio)), max(1, int(w * ratio))))
            contexts.append(F.interpolate(conv(pooled), size=(h, w), mode="bilinear", align_corners=True))
        weights = torch.sigmoid(self.high_lateral_conv_attention(torch.cat(contexts, dim=1)))
        fused = weights[:, 0:1] * contexts[0]
        for j in range(1, len(contexts)):
            fused = fused + weights[:, j : j + 1] * contexts[j]
        return fused

    def forward(self, features: list[Tensor]) -> PyramidFeatures:
        self._check_inputs(features)
        top = len(features) - 1
        raw_laterals: list[Tensor] = []

        def augment(idx: int, lateral: Tensor) -> Tensor:
            raw_laterals.insert(0, lateral)  # before RFA and the top-down sum: consistent supervision's input
            return lateral + self.residual_feature_augmentation(features[-1]) if idx == top else lateral

        outs = top_down_pathway(features, self.lateral_convs, self.fpn_convs, lateral_hook=augment)
        return PyramidFeatures.from_levels(
            [*outs, p6_from_p5(outs[-1])], raw_laterals=raw_laterals if self.training else None
        )
