"""Where a model's weights come from: a local path, the Hub, or a converted upstream checkpoint.

``create_model(name, pretrained=True)`` takes the manifest's default entry for ``name`` and resolves it to a local,
verified checkpoint: ``published`` entries through the Hub (pinned commit, full sha256), ``convertible`` ones by
downloading and converting the upstream checkpoint once. ``weights="hf-hub:ORG/NAME[@REV]"`` loads any exported
model from the Hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from fpn_zoo.voice import in_cli, offers, option, say
from fpn_zoo.weights.hub_download import HF_HUB_PREFIX, fetch_hub_file, parse_hf_hub_spec
from fpn_zoo.weights.manifest import WeightsEntry, load_manifest


class WeightsNotAvailableError(RuntimeError):
    """``pretrained=...`` for a model or tag without weights; the message lists what is available."""


def describe_available(name: str) -> str:
    """What ``name`` can be loaded with: its manifest tags and the other ways to start, spelled for the reader
    (keyword arguments from Python, flags from the CLI: `fpn_zoo.voice`)."""
    manifest = load_manifest()
    default = manifest.default_entry(name)
    available = []
    for e in manifest.entries(name):
        if not e.available:
            continue
        ap = e.coco_box_ap
        facts = ["default"] if e is default else []
        facts += [f"COCO box AP {ap:g}"] if ap is not None else []
        facts += ["Hub" if e.status == "published" else f"converted from {e.upstream.converter} on first use"]
        available.append(f"{e.tag} ({', '.join(facts)})")
    lines = []
    if available:
        if offers("pretrained"):
            how = f"Load one with {option('pretrained', placeholder='TAG')}."
        else:  # `fpn-zoo train`, whose --init coco starts from the default weights
            how = "--init coco starts from the default."
        lines.append(f"Its weights: {'; '.join(available)}. {how}")
    untrained = [e.tag for e in manifest.entries(name) if not e.available]
    if untrained:
        lines.append(
            f"Not trained yet: {', '.join(untrained)} ({say('weights_manifest.json', f'`fpn-zoo info {name}`')} "
            "says how to train it)."
        )
    local = "a .safetensors file or exported folder, or hf-hub:ORG/NAME[@REVISION] for an exported model on the Hub"
    others = []
    if offers("weights"):
        others.append(f"{option('weights', placeholder='PATH')} ({local})")
    elif offers("init"):
        others.append(f"--init PATH ({local})")
    if offers("pretrained_backbone"):
        others.append(f"{option('pretrained_backbone', True)} (timm's ImageNet backbone, then train)")
    if not in_cli():
        others.append("no weights argument (random init)")
    elif offers("random_init"):
        others.append(f"{option('random_init', True)} (untrained: its boxes mean nothing)")
    if others:
        lines.append(f"Other starts: {'; '.join(others)}.")
    return " ".join(lines)


def weights_label(weights: object, pretrained: bool | str) -> str | None:
    """How a model's weights were asked for, for records and logs: ``"pretrained[:TAG]"``, the path, or ``None``.

    Examples:
        >>> weights_label(None, "coco_tv")
        'pretrained:coco_tv'
    """
    if pretrained is not False:
        return "pretrained" if pretrained is True else f"pretrained:{pretrained}"
    return None if weights is None else str(weights)


def select_entry(name: str, pretrained: bool | str) -> WeightsEntry:
    """The manifest entry ``pretrained`` asks for: ``True`` = the default (best COCO box AP), a string = that tag.

    Raises:
        WeightsNotAvailableError: No such tag, or the entry has no weights; the message lists the options.
    """
    from fpn_zoo.registry import get_model_config

    get_model_config(name)  # unknown names fail first, with suggestions
    manifest = load_manifest()
    tag = None if pretrained is True else str(pretrained)
    entry = manifest.entry(name, tag)
    if entry is None:
        what = f"no weights tagged {tag!r}" if tag else "no pretrained weights yet"
        raise WeightsNotAvailableError(f"{name!r} has {what}. {describe_available(name)}")
    if not entry.available:
        raise WeightsNotAvailableError(f"{name!r} has no trained weights. {describe_available(name)}")
    return entry


def fetch_entry(entry: WeightsEntry, **hub_kwargs) -> Path:
    """A local, verified checkpoint for ``entry`` (downloading and converting on first use)."""
    if entry.hub is not None:
        hub = entry.hub
        weights = fetch_hub_file(
            hub.repo_id, hub.filename, hub.revision, sha256=hub.sha256, size=hub.size, **hub_kwargs
        )
        # config.json is small and pinned to the same commit; it carries e.g. the BatchNorm epsilon of the weights.
        fetch_hub_file(hub.repo_id, hub.config_filename, hub.revision, **hub_kwargs)
        return weights.path
    from fpn_zoo.weights.upstream import fetch_converted

    return fetch_converted(entry)


def resolve_pretrained(name: str, pretrained: bool | str = True, **hub_kwargs) -> Path:
    """Resolve ``pretrained`` for model ``name`` to a verified local checkpoint.

    Examples:
        >>> resolve_pretrained("panet_r50_coco")
        Traceback (most recent call last):
        ...
        fpn_zoo.weights.resolve.WeightsNotAvailableError: 'panet_r50_coco' has no pretrained weights yet. ...
    """
    return fetch_entry(select_entry(name, pretrained), **hub_kwargs)


def resolve_weights(weights: str | os.PathLike[str], **hub_kwargs) -> Path:
    """``weights=`` as a local path: ``hf-hub:ORG/NAME[@REV]`` is downloaded (``model.safetensors`` + ``config.json``)
    and verified; anything else is returned as it is."""
    if not (isinstance(weights, str) and weights.startswith(HF_HUB_PREFIX)):
        return Path(weights)
    repo_id, revision = parse_hf_hub_spec(weights)
    model = fetch_hub_file(repo_id, "model.safetensors", revision, **hub_kwargs)
    # The same commit for the config, even if the branch moved between the two requests.
    fetch_hub_file(repo_id, "config.json", model.commit, **hub_kwargs)
    return model.path
