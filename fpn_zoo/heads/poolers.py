"""Multi-scale RoIAlign with the ``aligned`` and ``sampling_ratio`` of the codebase that trained the weights.

torchvision's ``MultiScaleRoIAlign`` fixes ``aligned=False`` (its ``roi_align`` call passes no ``aligned``) and
defaults to ``sampling_ratio=2``; mmdetection's ``SingleRoIExtractor`` uses mmcv's ``RoIAlign(aligned=True,
sampling_ratio=0)`` and detectron2's ``ROIAlignV2`` does the same. This pooler is ``MultiScaleRoIAlign`` with both
as arguments. Level assignment stays torchvision's ``LevelMapper`` (FPN paper eq. 1, k0 = 4, canonical size 224,
levels 2-5), which equals mmdetection's ``map_roi_levels`` with ``finest_scale=56`` up to where the 1e-6 epsilon
sits (inside the log in mmdetection, outside in torchvision), i.e. except for boxes within 1e-6 of a level boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.boxes import box_area

from fpn_zoo.heads.threaded_roi_align import roi_align_on_threads, rois_of

_CANONICAL_SCALE = 224  # torchvision LevelMapper defaults (ops/poolers.py)
_CANONICAL_LEVEL = 4
_EPS = 1e-6


class PyramidRoIAlign(MultiScaleRoIAlign):
    """``MultiScaleRoIAlign`` with RoIAlign's ``aligned`` flag exposed.

    With ``aligned=False`` and ``sampling_ratio=2`` it computes exactly what torchvision's pooler computes (the
    tests compare them bit for bit). It stays a ``MultiScaleRoIAlign`` so torchvision's ``FasterRCNN`` accepts it.

    Args:
        featmap_names: Pyramid levels to pool from, fine to coarse.
        output_size: Pooled size.
        sampling_ratio: Sampling points per bin side; 0 = adaptive.
        aligned: Shift box coordinates by -0.5 pixel before sampling (pixel-centre model).

    Attributes:
        cpu_threads: Split each level's RoIs over this many threads on the CPU
            ([`roi_align_on_threads`][fpn_zoo.heads.threaded_roi_align.roi_align_on_threads]); the output is the
            same bit for bit. 1 (the default) keeps torchvision's single call; ``None`` (what the fast inference
            path sets) follows ``torch.get_num_threads()``.

    Examples:
        >>> from collections import OrderedDict
        >>> pool = PyramidRoIAlign(["0", "1"], 7, sampling_ratio=0, aligned=True)
        >>> feats = OrderedDict((str(i), torch.rand(1, 8, 64 // 2**i, 64 // 2**i)) for i in range(2))
        >>> pool(feats, [torch.tensor([[0.0, 0.0, 100.0, 120.0]])], [(256, 256)]).shape
        torch.Size([1, 8, 7, 7])
    """

    def __init__(
        self, featmap_names: Sequence[str], output_size: int, sampling_ratio: int, *, aligned: bool = False
    ) -> None:
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        self.aligned = aligned
        self.cpu_threads: int | None = 1

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = [x[name] for name in self.featmap_names]
        scales = _level_scales(features, image_shapes)
        levels = _map_levels(boxes, scales)
        rois = rois_of(boxes)
        out = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, scales, strict=True)):
            idx = torch.where(levels == level)[0]
            pooled = self._pool(feature, rois[idx], scale)
            out[idx] = pooled.to(out.dtype)  # under autocast levels may come in different dtypes
        return out

    def _pool(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        return roi_align_on_threads(
            feature, rois, self.output_size, scale, self.sampling_ratio, self.aligned, threads=self.cpu_threads
        )


def _level_scales(features: Sequence[Tensor], image_shapes: list[tuple[int, int]]) -> list[float]:
    """torchvision's ``_setup_scales``: each level's scale is the power of two nearest to its height over the
    largest image height of the batch."""
    max_h = max(s[0] for s in image_shapes)
    return [2.0 ** float(torch.tensor(f.shape[-2] / max_h).log2().round()) for f in features]


def _map_levels(boxes: list[Tensor], scales: list[float]) -> Tensor:
    """torchvision's ``LevelMapper``: ``floor(4 + log2(sqrt(area) / 224) + 1e-6)`` clamped to the pooled levels."""
    k_min = int(-math.log2(scales[0]))
    k_max = int(-math.log2(scales[-1]))
    s = torch.sqrt(torch.cat([box_area(b) for b in boxes]))
    levels = torch.floor(_CANONICAL_LEVEL + torch.log2(s / _CANONICAL_SCALE) + torch.tensor(_EPS, dtype=s.dtype))
    return (torch.clamp(levels, min=k_min, max=k_max).to(torch.int64) - k_min).to(torch.int64)
