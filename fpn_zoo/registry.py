"""The model registry: one [`ModelConfig`][fpn_zoo.config.ModelConfig] per public model name.

Every pair of backbone and neck is registered under ``{neck}_{backbone}_{dataset}``; a named set of architecture
options ([`VARIANTS`][fpn_zoo.config.VARIANTS], e.g. torchvision's v2 heads) is registered for the pairs that have
weights under ``{neck}_{backbone}_{variant}_{dataset}`` (``fpn_r50_v2_coco``). ``fpn_zoo.config.model_name`` is the
one place that spells the rule. Registering a name twice is an error (torchvision's rule, not timm's warning), so a
typo can never silently replace a model.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
from typing import get_args

from fpn_zoo.config import BACKBONES, VARIANTS, ModelConfig, NeckName, model_name
from fpn_zoo.voice import say

_MODELS: dict[str, ModelConfig] = {}  # model name -> its default configuration, in registration order


class UnknownModelError(KeyError):
    """A model name that is not registered; the message lists the closest registered names."""


def register_model(config: ModelConfig) -> ModelConfig:
    """Add ``config`` to the registry under ``config.name``.

    Raises:
        ValueError: If the name is already registered or does not follow ``{neck}_{backbone}[_{variant}]_{dataset}``.
    """
    expected = model_name(config.neck, config.backbone, config.dataset, config.variant)
    if config.name != expected:
        raise ValueError(
            f"Model name {config.name!r} must be {expected!r} ({{neck}}_{{backbone}}[_{{variant}}]_{{dataset}})."
        )
    if config.name in _MODELS:
        raise ValueError(f"An entry is already registered under the name {config.name!r}.")
    _MODELS[config.name] = config
    return config


def list_models(pattern: str | None = None, *, pretrained: bool = False) -> list[str]:
    """Names of the registered models, optionally filtered by a shell-style pattern.

    Args:
        pattern: ``fnmatch`` pattern such as ``"bifpn_*"`` or ``"*_r50_*"``; ``None`` lists everything.
        pretrained: Only the models with weights to load (``pretrained=True`` works): published on the Hub or
            convertible from an upstream checkpoint, as ``weights_manifest.json`` records (timm's
            ``list_models(pretrained=True)``).

    Returns:
        Sorted model names.

    Examples:
        >>> import fpn_zoo
        >>> fpn_zoo.list_models("*_r50_*")
        ['augfpn_r50_coco', 'bifpn_r50_coco', 'fpn_r50_coco', 'fpn_r50_v2_coco', 'panet_r50_coco']
        >>> fpn_zoo.list_models(pretrained=True)
        ['fpn_convnext_t_coco', 'fpn_r101_coco', 'fpn_r50_coco', 'fpn_r50_v2_coco', 'panet_r50_coco']
    """
    names = sorted(_MODELS)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if pretrained:
        from fpn_zoo.weights.manifest import load_manifest  # a JSON read, on first use only

        with_weights = set(load_manifest().pretrained_models())
        names = [n for n in names if n in with_weights]
    return names


def get_model_config(name: str) -> ModelConfig:
    """The default configuration of a registered model.

    Raises:
        UnknownModelError: For an unknown name (a ``KeyError``); the message lists the closest registered names.

    Examples:
        >>> get_model_config("fpn_r50_coco").backbone_spec.timm_name
        'resnet50'
    """
    if not isinstance(name, str) or name not in _MODELS:
        close = difflib.get_close_matches(str(name), list(_MODELS), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"Unknown model {name!r}.{hint} {say('fpn_zoo.list_models()', '`fpn-zoo list`')} lists all {len(_MODELS)} "
            "models."
        )
    return _MODELS[name]


def _register_zoo() -> None:
    for neck, backbone in itertools.product(get_args(NeckName), BACKBONES):
        register_model(ModelConfig(name=model_name(neck, backbone, "coco"), backbone=backbone, neck=neck))
    for variant_name, variant in VARIANTS.items():
        for neck, backbone in variant.pairs:
            name = model_name(neck, backbone, "coco", variant_name)
            register_model(
                ModelConfig(name=name, backbone=backbone, neck=neck, variant=variant_name, **variant.options)
            )


_register_zoo()
