"""Converters from upstream detection checkpoints to zoo models: one module per upstream, pure mappings.

| ``--from`` | upstream | zoo models |
| --- | --- | --- |
| ``torchvision`` | Faster / Mask R-CNN ResNet-50 FPN, v1 and v2 | ``fpn_r50_coco``, ``fpn_r50_v2_coco`` |
| ``mmdet`` | Faster / Mask R-CNN, ResNet-50/101 or ConvNeXt, FPN or PAFPN | ``fpn_*``, ``panet_*`` |
| ``convnext`` | facebookresearch/ConvNeXt Mask R-CNN (official names) | ``fpn_convnext_*`` |

Each module has ``recognise(state_dict) -> Recognised`` (which zoo model the tensors fit, from names and shapes
alone) and ``convert(state_dict) -> Conversion`` (the renamed tensors, the inference options the weights were
trained with, the dropped tensors by name). [`fpn_zoo.weights.convert`][fpn_zoo.weights.convert] reads files and
writes the exported folder around them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from fpn_zoo.converters import convnext, mmdet, torchvision
from fpn_zoo.converters.layout import Conversion, LayoutError, Recognised
from fpn_zoo.weights.manifest import CONVERTERS as CONVERTER_NAMES

__all__ = ["CONVERTERS", "Conversion", "Converter", "LayoutError", "Recognised"]


@dataclass(frozen=True)
class Converter:
    """One upstream: its name on the command line, a title for messages and its two functions."""

    name: str
    title: str
    recognise: Callable[[Mapping[str, Tensor]], Recognised]
    convert: Callable[..., Conversion]
    # The options a converted model runs with, from the target model and the file's sha256 (or its prefix).
    options: Callable[[str, str | None], dict[str, Any]]
    # The zoo models its layouts can convert to: a --model outside them is refused before the file is read.
    models: tuple[str, ...] = ()
    # Whether `convert` takes the file's sha256 (torchvision recognises its COCO_V1 files by it).
    takes_sha256: bool = False


CONVERTERS: dict[str, Converter] = {
    "torchvision": Converter(
        "torchvision",
        "torchvision",
        torchvision.recognise,
        torchvision.convert,
        torchvision.options,
        models=torchvision.MODELS,
        takes_sha256=True,
    ),
    "mmdet": Converter("mmdet", "mmdetection", mmdet.recognise, mmdet.convert, mmdet.options, models=mmdet.MODELS),
    "convnext": Converter(
        "convnext",
        "official ConvNeXt (facebookresearch/ConvNeXt)",
        convnext.recognise,
        convnext.convert,
        mmdet.options,
        models=tuple(m for m in mmdet.MODELS if "_convnext_" in m),
    ),
}
if set(CONVERTERS) != set(CONVERTER_NAMES):  # the manifest and the CLI list the names without importing torch
    raise RuntimeError(f"fpn_zoo.weights.manifest.CONVERTERS {CONVERTER_NAMES} != {sorted(CONVERTERS)}")
