"""torch.hub entrypoints, one per registered model, generated from the registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fpn_zoo.config import NECK_TITLES, ModelConfig
from fpn_zoo.project import GITHUB_REPO
from fpn_zoo.registry import get_model_config, list_models


def _docstring(config: ModelConfig) -> str:
    spec = config.backbone_spec
    return f"""{config.name}: Faster R-CNN with a {NECK_TITLES[config.neck]} neck on timm {spec.timm_name}.

    Label space: {config.dataset.upper()} ({config.num_classes} slots, label == COCO category id).
    Weights: see `fpn-zoo info {config.name}` or weights_manifest.json; without weights the model is randomly
    initialised.

    Args:
        weights: Local .safetensors file, exported folder, or "hf-hub:ORG/NAME[@REVISION]".
        pretrained: True loads the default weights of weights_manifest.json (sha256-verified, cached), a string
            the weights with that tag; a model without weights raises with the options.
        num_classes: Class slots incl. background; another count re-initialises only the class predictor.
        device: None = CUDA when available, else CPU.
        **overrides: Other ModelConfig fields (e.g. box_score_thresh=0.3, pretrained_backbone=True).

    Examples:
        >>> model = torch.hub.load("{GITHUB_REPO}", "{config.name}", {_example_weights(config.name)}
    """


def _example_weights(name: str) -> str:
    """The weights argument of the docstring's example: the default weights where they exist."""
    from fpn_zoo.weights.manifest import load_manifest

    default = load_manifest().default_entry(name)
    if default is None:
        return "pretrained_backbone=True)  # no trained weights yet: an ImageNet backbone to train from"
    ap = "" if default.coco_box_ap is None else f", COCO box AP {default.coco_box_ap:g}"
    return f"pretrained=True)  # default weights: {default.tag}{ap}"


def _make_entrypoint(name: str) -> Callable[..., Any]:
    def entrypoint(
        *,
        weights: Any = None,
        pretrained: bool | str = False,
        num_classes: int | None = None,
        device: Any = None,
        **overrides: Any,
    ) -> Any:
        from fpn_zoo.factory import create_model  # deferred: keeps `torch.hub.list` free of model imports

        return create_model(
            name, weights=weights, pretrained=pretrained, num_classes=num_classes, device=device, **overrides
        )

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = _docstring(get_model_config(name))
    return entrypoint


def entrypoints() -> dict[str, Callable[..., Any]]:
    """One documented callable per registered model name, for ``hubconf.py``.

    Examples:
        >>> "fpn_r50_coco" in entrypoints()
        True
    """
    return {name: _make_entrypoint(name) for name in list_models()}
