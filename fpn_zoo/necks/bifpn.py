"""BiFPN (Tan et al., EfficientDet, CVPR 2020) as a graph of fusion nodes executed by one generic cell.

The topology is data ([`bifpn_graph`][fpn_zoo.necks.bifpn.bifpn_graph], effdet's ``bifpn_config``);
[`BiFPN`][fpn_zoo.necks.bifpn.BiFPN] runs it. Each node resamples its inputs to its level's size *at run time*, fuses
them with one learnable weight per edge, then applies swish -> depthwise-separable 3x3 conv -> BatchNorm(eps 1e-3,
momentum 0.01). Module names mirror effdet's ``BiFpn`` so its weights map with a single rename (see
``effdet_state_dict_to_zoo``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from fpn_zoo.config import FusionMethod, ModelConfig
from fpn_zoo.necks.base import Neck
from fpn_zoo.necks.fusion import PyramidFeatures, WeightedFusion, resize_to

# TF BatchNorm decay 0.99 / eps 1e-3, expressed in PyTorch's convention (effdet `norm_kwargs`).
_BatchNorm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)


@dataclass(frozen=True)
class FusionNode:
    """One BiFPN node: the pyramid level it produces and the ids of the nodes it fuses.

    Ids ``0..L-1`` are the cell's inputs (finest first); node ``k`` of the graph gets id ``L + k``.
    """

    level: int
    inputs: tuple[int, ...]


def bifpn_graph(num_levels: int) -> tuple[FusionNode, ...]:
    """The BiFPN cell topology for ``num_levels`` levels (effdet ``bifpn_config``).

    Top-down nodes for levels ``L-2 .. 0`` fuse the level's latest node with the next coarser one; bottom-up nodes
    for levels ``1 .. L-1`` fuse every node of the level (input, top-down) with the finer level's latest node.

    Examples:
        >>> [n.inputs for n in bifpn_graph(3)]
        [(1, 2), (0, 3), (1, 3, 4), (2, 5)]
    """
    latest = {lvl: [lvl] for lvl in range(num_levels)}
    nodes: list[FusionNode] = []

    def add(level: int, inputs: list[int]) -> None:
        nodes.append(FusionNode(level, tuple(inputs)))
        latest[level].append(num_levels + len(nodes) - 1)

    for lvl in range(num_levels - 2, -1, -1):
        add(lvl, [latest[lvl][-1], latest[lvl + 1][-1]])
    for lvl in range(1, num_levels):
        add(lvl, [*latest[lvl], latest[lvl - 1][-1]])
    return tuple(nodes)


class _ConvBn(nn.Module):
    """1x1 projection with bias then BatchNorm (effdet ``ConvBnAct2d`` with ``redundant_bias=True``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.bn = _BatchNorm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class _Resample(nn.Module):
    """Edge input: project channels if they differ, then resize to the node's run-time size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _ConvBn(in_channels, out_channels) if in_channels != out_channels else None

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        if self.conv is not None:
            x = self.conv(x)
        return resize_to(x, size)


class _SeparableConv(nn.Module):
    """Depthwise 3x3 (no bias) -> pointwise 1x1 (bias) -> BatchNorm, no activation after."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.conv_pw = nn.Conv2d(channels, channels, 1)
        self.bn = _BatchNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv_pw(self.conv_dw(x)))


class _Combine(nn.Module):
    def __init__(self, node: FusionNode, in_channels: list[int], channels: int, method: FusionMethod) -> None:
        super().__init__()
        self.inputs = node.inputs
        self.resample = nn.ModuleDict({str(i): _Resample(in_channels[i], channels) for i in node.inputs})
        self.fusion = WeightedFusion(len(node.inputs), method)

    def forward(self, nodes: list[Tensor], size: Sequence[int]) -> Tensor:
        return self.fusion([self.resample[str(i)](nodes[i], size) for i in self.inputs])


class _FusionNodeModule(nn.Module):
    def __init__(self, node: FusionNode, in_channels: list[int], channels: int, method: FusionMethod) -> None:
        super().__init__()
        self.level = node.level
        self.combine = _Combine(node, in_channels, channels, method)
        self.after_combine = nn.Sequential()
        self.after_combine.add_module("act", nn.SiLU(inplace=True))
        self.after_combine.add_module("conv", _SeparableConv(channels))

    def forward(self, nodes: list[Tensor], size: Sequence[int]) -> Tensor:
        return self.after_combine(self.combine(nodes, size))


class BiFPNCell(nn.Module):
    """One BiFPN cell: runs [`bifpn_graph`][fpn_zoo.necks.bifpn.bifpn_graph] over ``len(in_channels)`` levels."""

    def __init__(self, in_channels: Sequence[int], channels: int, method: FusionMethod) -> None:
        super().__init__()
        num_levels = len(in_channels)
        graph = bifpn_graph(num_levels)
        node_channels = [*in_channels, *(channels for _ in graph)]
        self.num_levels = num_levels
        self.fnode = nn.ModuleList(_FusionNodeModule(n, node_channels, channels, method) for n in graph)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        sizes = [t.shape[-2:] for t in x]
        nodes = list(x)
        for fnode in self.fnode:
            nodes.append(fnode(nodes, sizes[fnode.level]))
        return nodes[-self.num_levels :]


class BiFPN(Neck):
    """Bidirectional FPN on C2-C5 producing P2-P6.

    P6 comes from C5 by a 1x1 conv + BN and a 3x3 stride-2 max-pool (effdet's extra-level resample). Then
    ``repeats`` cells, the first projecting each backbone input per edge with its own 1x1 conv + BN.

    Args:
        in_channels: Channels of C2-C5.
        out_channels: BiFPN width (channels of every node).
        repeats: Number of stacked cells.
        fusion: Edge weighting: ``"fast_normalized"`` (paper default), ``"softmax"`` or ``"sum"``.

    Examples:
        >>> import torch
        >>> neck = BiFPN([8, 16, 32, 64], 16, repeats=2)
        >>> feats = [torch.rand(1, c, 40 // 2**i, 24 // 2**i) for i, c in enumerate([8, 16, 32, 64])]
        >>> [tuple(p.shape[-2:]) for p in neck(feats).values()]
        [(40, 24), (20, 12), (10, 6), (5, 3), (3, 2)]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        *,
        repeats: int = 3,
        fusion: FusionMethod = "fast_normalized",
    ) -> None:
        super().__init__(in_channels, out_channels)
        if repeats < 1:
            raise ValueError(f"BiFPN needs at least one cell, got repeats={repeats}.")
        self.resample = nn.ModuleDict({str(len(in_channels)): _Resample(in_channels[-1], out_channels)})
        levels = [*in_channels, out_channels]
        self.cell = nn.Sequential()
        for i in range(repeats):
            self.cell.add_module(
                str(i), BiFPNCell(levels if i == 0 else [out_channels] * len(levels), out_channels, fusion)
            )
        self.reset_parameters()

    @classmethod
    def from_config(cls, config: ModelConfig, in_channels: Sequence[int]) -> BiFPN:
        return cls(in_channels, config.neck_channels, repeats=config.bifpn_repeats, fusion=config.bifpn_fusion)

    def reset_parameters(self) -> None:
        """effdet's TF-style initialisation: Glorot-uniform (fan average) convs, zero bias, BN (1, 0), edges 1."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight.size(1) * m.weight[0][0].numel()
                fan_out = m.weight.size(0) * m.weight[0][0].numel() // m.groups
                limit = math.sqrt(3.0 / max(1.0, (fan_in + fan_out) / 2.0))
                nn.init.uniform_(m.weight, -limit, limit)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, WeightedFusion) and m.edge_weights is not None:
                nn.init.ones_(m.edge_weights)

    def forward(self, features: list[Tensor]) -> PyramidFeatures:
        self._check_inputs(features)
        c5 = features[-1]
        p6_size = ((c5.shape[-2] - 1) // 2 + 1, (c5.shape[-1] - 1) // 2 + 1)
        x = [*features, self.resample[str(len(features))](c5, p6_size)]
        for cell in self.cell:
            x = cell(x)
        return PyramidFeatures.from_levels(x)


def effdet_state_dict_to_zoo(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename an effdet ``BiFpn`` state dict (keys relative to the ``BiFpn`` module) to `BiFPN` keys.

    effdet keeps the edge weights on ``FpnCombine``; here they live on the shared ``WeightedFusion``.
    """
    return {k.replace("combine.edge_weights", "combine.fusion.edge_weights"): v for k, v in state_dict.items()}
