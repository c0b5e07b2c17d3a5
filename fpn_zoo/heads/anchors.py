"""Anchors as torchvision or as mmdetection / detectron2 make them.

torchvision's ``AnchorGenerator`` differs from mmdetection's ``AnchorGenerator`` (and detectron2's
``DefaultAnchorGenerator``) in two ways that move every proposal of a converted checkpoint:

* it rounds the zero-centred base anchors to whole pixels (``generate_anchors`` ends in ``.round()``), so a 32 px
  anchor at ratio 0.5 spans +-23 x +-11 instead of +-22.63 x +-11.31 (mmdet ``gen_single_level_base_anchors``);
* it derives each level's stride from the padded batch as ``image_size // grid_size``, so on an 800 px side P6
  (13 cells) gets stride 61; mmdetection uses the fixed strides 4, 8, 16, 32, 64 (``AnchorGenerator(strides=...)``).

Sizes, ratios and their order inside the RPN's channels are the same in all three, so the same RPN weights fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

# torchvision's Faster R-CNN anchors (faster_rcnn.py `_default_anchorgen`), identical to mmdetection's
# `scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]` (8 x stride = 32 ... 512 px).
ANCHOR_SIZES: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
ASPECT_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0)


class PyramidAnchorGenerator(AnchorGenerator):
    """torchvision's ``AnchorGenerator`` with optional exact base anchors and fixed level strides.

    Args:
        sizes: Anchor sizes per level.
        aspect_ratios: Height / width ratios per level.
        round_anchors: Round base anchors to whole pixels (torchvision) or keep them exact (mmdetection).
        strides: Fixed stride per level (mmdetection); ``None`` derives them from the padded image (torchvision).

    Examples:
        >>> exact = PyramidAnchorGenerator(((32,),), ((0.5,),), round_anchors=False, strides=(4,))
        >>> [round(v, 2) for v in exact.cell_anchors[0][0].tolist()]
        [-22.63, -11.31, 22.63, 11.31]
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[int]] = ANCHOR_SIZES,
        aspect_ratios: Sequence[Sequence[float]] = (ASPECT_RATIOS,) * len(ANCHOR_SIZES),
        *,
        round_anchors: bool = True,
        strides: Sequence[int] | None = None,
    ) -> None:
        # Set before the parent constructor, which calls `generate_anchors` for every level.
        self.round_anchors = round_anchors
        super().__init__(tuple(tuple(s) for s in sizes), tuple(tuple(r) for r in aspect_ratios))
        if strides is not None and len(strides) != len(self.sizes):
            raise ValueError(f"Give one stride per anchor level ({len(self.sizes)}), got {list(strides)}.")
        self.strides = None if strides is None else tuple(int(s) for s in strides)

    def generate_anchors(
        self,
        scales: list[int],
        aspect_ratios: list[float],
        dtype: torch.dtype = torch.float32,
        device: torch.device = torch.device("cpu"),  # noqa: B008 - torchvision's signature
    ) -> Tensor:
        if self.round_anchors:
            return super().generate_anchors(scales, aspect_ratios, dtype, device)
        # torchvision's arithmetic minus its final `.round()` (anchor_utils.py, generate_anchors); mmdetection's
        # `x_center - 0.5 * ws` with a zero centre gives the same values, since halving is exact in floating point.
        scales_t = torch.as_tensor(scales, dtype=dtype, device=device)
        h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales_t[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales_t[None, :]).view(-1)
        return torch.stack([-ws, -hs, ws, hs], dim=1) / 2

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        if self.strides is None:
            return super().forward(image_list, feature_maps)
        grid_sizes = [list(f.shape[-2:]) for f in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        strides = [[torch.tensor(s, dtype=torch.int64, device=device)] * 2 for s in self.strides]
        self.set_cell_anchors(dtype, device)
        per_level = self.grid_anchors(grid_sizes, strides)
        anchors = torch.cat(per_level)
        return [anchors for _ in image_list.image_sizes]
