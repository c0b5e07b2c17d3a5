"""fpn_zoo: feature-pyramid detectors (FPN, PANet, BiFPN, AugFPN) on timm backbones with torchvision heads.

Examples:
    >>> import fpn_zoo
    >>> fpn_zoo.list_models("fpn_*")[:2]
    ['fpn_convnext_b_coco', 'fpn_convnext_s_coco']
    >>> model = fpn_zoo.create_model("fpn_r50_coco", device="cpu")  # doctest: +SKIP

``import fpn_zoo`` is light: it does no I/O and imports neither torch nor timm until a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fpn_zoo.config import BACKBONES, ModelConfig
from fpn_zoo.hub import entrypoints as hub_entrypoints
from fpn_zoo.registry import get_model_config, list_models

if TYPE_CHECKING:
    from fpn_zoo.factory import WeightsNotAvailableError, create_model
    from fpn_zoo.images import ImageError, load_image, to_model_input
    from fpn_zoo.weights.hub_download import WeightsDownloadError
    from fpn_zoo.weights.hub_mixin import ZooDetector
    from fpn_zoo.weights.integrity import WeightsIntegrityError

__version__ = "0.1.0"

# Public names served lazily (PEP 562) so that listing models never pays for importing torch and torchvision.
_LAZY = {
    "create_model": "fpn_zoo.factory",
    "WeightsNotAvailableError": "fpn_zoo.factory",
    "WeightsDownloadError": "fpn_zoo.weights.hub_download",
    "WeightsIntegrityError": "fpn_zoo.weights.integrity",
    "ZooDetector": "fpn_zoo.weights.hub_mixin",  # the model of fpn_zoo.detector with the Hub methods
    "ImageError": "fpn_zoo.images",
    "load_image": "fpn_zoo.images",
    "to_model_input": "fpn_zoo.images",
}

__all__ = [
    "BACKBONES",
    "ImageError",
    "ModelConfig",
    "WeightsDownloadError",
    "WeightsIntegrityError",
    "WeightsNotAvailableError",
    "ZooDetector",
    "__version__",
    "create_model",
    "get_model_config",
    "hub_entrypoints",
    "list_models",
    "load_image",
    "to_model_input",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fpn_zoo' has no attribute {name!r}")
