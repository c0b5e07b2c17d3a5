"""Box deltas decoded as torchvision or as mmdetection decodes them.

torchvision's ``BoxCoder.decode_single`` clamps the log-size deltas ``dw, dh`` from above only
(``torch.clamp(dw, max=log(1000 / 16))``); mmdetection's ``DeltaXYWHBBoxCoder`` (``delta2bbox``) clamps them on both
sides (``dwh.clamp(min=-max_ratio, max=max_ratio)`` with the same ``max_ratio``). The rest of the arithmetic is the
same: mmdetection's ``stds`` (0.1, 0.1, 0.2, 0.2) are torchvision's ``weights`` (10, 10, 5, 5) inverted.
"""

from __future__ import annotations

import math

from torch import Tensor
from torchvision.models.detection._utils import BoxCoder

# torchvision's and mmdetection's clip of exp(dw): boxes may grow at most 1000/16 = 62.5 times per decode.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


class SymmetricClampBoxCoder(BoxCoder):
    """torchvision's ``BoxCoder`` whose log-size deltas are also clamped from below, as mmdetection's are.

    Examples:
        >>> import torch
        >>> coder = SymmetricClampBoxCoder((1.0, 1.0, 1.0, 1.0))
        >>> coder.decode_single(torch.tensor([[0.0, 0.0, -50.0, 0.0]]), torch.tensor([[0.0, 0.0, 1000.0, 10.0]]))
        tensor([[492.,   0., 508.,  10.]])
    """

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        # Clamp the raw codes at -clip * weight, so that after torchvision divides by the weight the delta is
        # -clip (to within one rounding step); the upper clamp is torchvision's own.
        _, _, ww, wh = self.weights
        rel_codes = rel_codes.clone()
        rel_codes[:, 2::4] = rel_codes[:, 2::4].clamp(min=-self.bbox_xform_clip * ww)
        rel_codes[:, 3::4] = rel_codes[:, 3::4].clamp(min=-self.bbox_xform_clip * wh)
        return super().decode_single(rel_codes, boxes)


def make_box_coder(weights: tuple[float, float, float, float], clamp: str) -> BoxCoder:
    """torchvision's coder for ``clamp="upper"``, the symmetric one for ``clamp="both"``."""
    if clamp == "upper":
        return BoxCoder(weights)
    if clamp == "both":
        return SymmetricClampBoxCoder(weights)
    raise ValueError(f"box_delta_clamp must be 'upper' or 'both', got {clamp!r}.")
