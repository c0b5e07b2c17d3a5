"""timm backbones as C2-C5 feature extractors for detection.

Channels and strides come from timm's ``feature_info``, never from the model name. The BatchNorm policy follows
torchvision's detection builders: when any pretrained weights are involved the backbone's BatchNorm layers are
frozen and only the top ``trainable_layers`` stages train; a backbone trained from scratch keeps ordinary BatchNorm.
"""

from __future__ import annotations

import os

from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from fpn_zoo.config import BackboneSpec

_NUM_STAGE_GROUPS = 5  # stem + 4 stages, as torchvision counts `trainable_backbone_layers`


def freeze_batch_norm(module: nn.Module, eps: float | None = None) -> nn.Module:
    """Replace every ``BatchNorm2d`` below ``module`` by torchvision's ``FrozenBatchNorm2d``, keeping its statistics.

    Args:
        module: Module to convert in place (a bare BatchNorm is returned converted).
        eps: Epsilon of the frozen layers; ``None`` keeps each layer's own.

    Returns:
        The converted module.
    """
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps if eps is None else eps)
        if module.affine:
            frozen.weight.copy_(module.weight.detach())
            frozen.bias.copy_(module.bias.detach())
        if module.track_running_stats:
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        converted = freeze_batch_norm(child, eps)
        if converted is not child:
            setattr(module, name, converted)
    return module


class TimmBackbone(nn.Module):
    """A timm model in ``features_only`` mode returning C2-C5, with optional per-level LayerNorm.

    Args:
        spec: timm name, feature indices and whether outputs are normalised (ConvNeXt).
        pretrained: Load timm's ImageNet weights.
        weights_file: Read them from this local file (the factory fetches it through fpn_zoo's Hub download, whose
            failures say what to do); ``None`` lets timm download them itself.
        frozen_bn: Replace BatchNorm by ``FrozenBatchNorm2d`` (used whenever pretrained weights are loaded).
        frozen_bn_eps: Epsilon of the frozen BatchNorm layers.
        trainable_layers: Number of stage groups, counted from the top (stage 4, 3, 2, 1, stem), whose parameters
            train; the rest have ``requires_grad=False``.

    Examples:
        >>> from fpn_zoo.config import BACKBONES
        >>> body = TimmBackbone(BACKBONES["r50"], pretrained=False, frozen_bn=False, trainable_layers=5)
        >>> body.channels, body.strides
        ([256, 512, 1024, 2048], [4, 8, 16, 32])
    """

    def __init__(
        self,
        spec: BackboneSpec,
        *,
        pretrained: bool,
        weights_file: str | os.PathLike[str] | None = None,
        frozen_bn: bool,
        frozen_bn_eps: float = 1e-5,
        trainable_layers: int = 5,
    ) -> None:
        super().__init__()
        import timm  # deferred: importing timm costs a second and `import fpn_zoo` must stay light

        overlay = {"file": str(weights_file)} if pretrained and weights_file is not None else None
        self.model = timm.create_model(
            spec.timm_name,
            pretrained=pretrained,
            pretrained_cfg_overlay=overlay,
            features_only=True,
            out_indices=spec.out_indices,
        )
        info = self.model.feature_info
        self.channels: list[int] = list(info.channels())
        self.strides: list[int] = list(info.reduction())
        # NOTE: mmdetection/official detection ConvNeXt normalise each output stage (LN, eps 1e-6); timm's
        # features_only ConvNeXt returns raw stage outputs, so the norms live here.
        if spec.output_norm:
            from timm.layers import LayerNorm2d

            self.norms = nn.ModuleList(LayerNorm2d(c, eps=1e-6) for c in self.channels)
        else:
            self.norms = None
        if frozen_bn:
            freeze_batch_norm(self.model, eps=frozen_bn_eps)
        self._freeze_stages(trainable_layers, [m.replace(".", "_") for m in info.module_name()])

    def _freeze_stages(self, trainable_layers: int, stage_names: list[str]) -> None:
        if not 0 <= trainable_layers <= _NUM_STAGE_GROUPS:
            raise ValueError(f"trainable_layers must be in [0, {_NUM_STAGE_GROUPS}], got {trainable_layers}.")
        top_down = [*reversed(stage_names), "__stem__"]
        trainable = set(top_down[:trainable_layers])
        for child_name, child in self.model.named_children():
            group = child_name if child_name in stage_names else "__stem__"
            if group not in trainable:
                child.requires_grad_(False)
        if self.norms is not None:  # a stage's output norm trains exactly when the stage does
            for stage, norm in zip(stage_names, self.norms, strict=True):
                norm.requires_grad_(stage in trainable)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = self.model(x)
        if self.norms is not None:
            features = [norm(f) for norm, f in zip(self.norms, features, strict=True)]
        return features
