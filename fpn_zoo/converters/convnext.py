"""The official ConvNeXt detection checkpoints (facebookresearch/ConvNeXt, ``object_detection/``) -> zoo models.

Those files are mmdetection 2.x Mask / Cascade R-CNN checkpoints whose backbone is the repository's own
``object_detection/mmdet/models/backbones/convnext.py``: the same tensors as mmpretrain's ``ConvNeXt`` under the
names of the classification model (``stages.{i}.{j}.dwconv``, ``pwconv1``, ``pwconv2``; ``downsample_layers`` and
the output norms ``norm{0-3}`` are named alike). Renaming those three is the whole difference; the rest of the file
converts as any mmdetection checkpoint ([`fpn_zoo.converters.mmdet`][fpn_zoo.converters.mmdet]). timm's
``convnext.checkpoint_filter_fn`` reads the same official block names (``dwconv`` -> ``conv_dw``, ``pwconv`` ->
``mlp.fc``), which the tests use as an independent check.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from fpn_zoo.converters import mmdet
from fpn_zoo.converters.layout import Conversion, LayoutError, Recognised, rename, rules

# Official block names -> mmpretrain's (mmpretrain ConvNeXtBlock: depthwise_conv, pointwise_conv1/2).
_OFFICIAL_TO_MMPRETRAIN = rules(
    (r"^(backbone\.stages\.\d\.\d+)\.dwconv\.", r"\1.depthwise_conv."),
    (r"^(backbone\.stages\.\d\.\d+)\.pwconv1\.", r"\1.pointwise_conv1."),
    (r"^(backbone\.stages\.\d\.\d+)\.pwconv2\.", r"\1.pointwise_conv2."),
    (r"^(.*)$", r"\1"),  # everything else keeps its name
)


def to_mmpretrain_names(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the official ConvNeXt block tensors to mmpretrain's names; nothing else changes.

    Raises:
        LayoutError: The file has no official ConvNeXt backbone (no ``backbone.stages.*.dwconv``).

    Examples:
        >>> import torch
        >>> sorted(to_mmpretrain_names({"backbone.stages.0.0.dwconv.weight": torch.zeros(1)}))
        ['backbone.stages.0.0.depthwise_conv.weight']
    """
    if not any(".dwconv." in k and k.startswith("backbone.stages.") for k in state_dict):
        raise LayoutError(
            "Not an official ConvNeXt detection checkpoint: no backbone.stages.*.dwconv tensors. mmdetection files "
            "with an mmpretrain ConvNeXt (depthwise_conv) convert with --from mmdet."
        )
    renamed, _ = rename(state_dict, _OFFICIAL_TO_MMPRETRAIN)
    return renamed


def recognise(state_dict: Mapping[str, Tensor]) -> Recognised:
    """The zoo model an official ConvNeXt detection state dict fits (as `mmdet.recognise` after renaming)."""
    found = mmdet.recognise(to_mmpretrain_names(state_dict))
    return Recognised(
        found.model, found.description.replace("mmpretrain names", "official names"), found.dropped_prefixes
    )


def convert(state_dict: Mapping[str, Tensor]) -> Conversion:
    """Map an official ConvNeXt Mask R-CNN state dict onto the zoo model (mask branch dropped)."""
    conversion = mmdet.convert(to_mmpretrain_names(state_dict))
    return Conversion(
        conversion.state_dict, conversion.options, conversion.dropped, recognise(state_dict), conversion.notes
    )
