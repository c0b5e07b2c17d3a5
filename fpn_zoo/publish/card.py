"""Model cards of exported weights: ``README.md`` with Hub metadata, built with ``huggingface_hub.ModelCard``.

The YAML block carries what the Hub indexes (``library_name: fpn-zoo``, tags, ``pipeline_tag: object-detection``,
licence, datasets) and, when figures exist, a ``model-index`` built from ``EvalResult`` objects. The body says what
the model is, its label space, every metric with its source, how to load it and the sha256 of ``model.safetensors``.

Metrics are never made up here: a card lists exactly the [`Metric`][fpn_zoo.weights.manifest.Metric] objects it is
given and otherwise states that nothing was measured. ``fpn-zoo publish`` reads them back from the ``model-index``
([`card_metrics`][fpn_zoo.publish.card.card_metrics]), so the card is the one place a maintainer reviews before
uploading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fpn_zoo.config import NECK_TITLES, ModelConfig
from fpn_zoo.labels import COCO_CATEGORIES
from fpn_zoo.project import GITHUB_REPO, HOMEPAGE
from fpn_zoo.weights.manifest import ManifestError, Metric, check_metric_date

if TYPE_CHECKING:
    from huggingface_hub import EvalResult, ModelCard

__all__ = ["REPO_PLACEHOLDER", "CardError", "CardInputs", "build_model_card", "card_metrics"]

LIBRARY_NAME = "fpn-zoo"
TASK = "object-detection"
# Written where the Hub repository is not known yet (``fpn-zoo export``); ``fpn-zoo publish`` fills it in.
REPO_PLACEHOLDER = "YOUR-ORG/YOUR-REPO"
_SHOWN_CATEGORIES = 10


class CardError(ValueError):
    """A model card that cannot be built or whose metadata cannot be used; the message says which field."""


@dataclass(frozen=True)
class CardInputs:
    """Everything a card states, gathered by the caller (nothing here is looked up or measured).

    Attributes:
        config: The exported architecture, label space included.
        sha256: Hex sha256 of ``model.safetensors``.
        size: Size of ``model.safetensors`` in bytes.
        num_params: Parameter count
            ([`fpn_zoo.inspect_model.count_parameters`][fpn_zoo.inspect_model.count_parameters]).
        gflops: GFLOPs at ``gflops_input_size``, or ``None`` when they were not counted.
        gflops_input_size: ``(height, width)`` of the FLOP count.
        metrics: Measured or reported figures, each with its source; empty when there are none.
        metrics_origin: Where ``metrics`` were taken from (a metrics file, a manifest entry), for the reader.
        license: Licence of the weights (an SPDX id such as ``"apache-2.0"``), or ``None`` if not stated.
        datasets: Hub dataset ids the weights were trained on.
        tag: Weights tag in ``weights_manifest.json``, when the weights are (to be) listed there.
        repo_id: Hub repository, or ``None`` to write `REPO_PLACEHOLDER`.
        provenance: One line on where the weights come from.
    """

    config: ModelConfig
    sha256: str
    size: int
    num_params: int
    gflops: float | None = None
    gflops_input_size: tuple[int, int] | None = None
    metrics: tuple[Metric, ...] = ()
    metrics_origin: str | None = None
    license: str | None = None
    datasets: tuple[str, ...] = ()
    tag: str | None = None
    repo_id: str | None = None
    provenance: str | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell (custom category names and sources can hold anything)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _eval_results(metrics: tuple[Metric, ...]) -> list[EvalResult]:
    from huggingface_hub import EvalResult

    # model-index groups results per dataset *type*, so distinct dataset names must get distinct slugs.
    slugs: dict[str, str] = {}
    for dataset in dict.fromkeys(m.dataset for m in metrics):
        slug, n = _slug(dataset), 2
        while slug in slugs.values():
            slug, n = f"{_slug(dataset)}-{n}", n + 1
        slugs[dataset] = slug
    return [
        EvalResult(
            task_type=TASK,
            task_name="Object Detection",
            dataset_type=slugs[m.dataset],
            dataset_name=m.dataset,
            metric_type=m.metric,
            metric_name=m.metric,
            metric_value=m.value,
            # model-index has no per-figure provenance field (its `source` is per dataset and needs a URL), so the
            # source rides in the metric's args, which the Hub keeps and `model_index_to_eval_results` returns.
            metric_args={"source": m.source, **({"date": m.date} if m.date else {})},
        )
        for m in metrics
    ]


def _tags(config: ModelConfig) -> list[str]:
    return ["object-detection", "faster-rcnn", config.neck, config.backbone_spec.timm_name, "timm", "pytorch"]


def _label_space_section(config: ModelConfig) -> list[str]:
    names = [n for n in config.categories[1:] if n != "N/A"]
    shown = ", ".join(_cell(n) for n in names[:_SHOWN_CATEGORIES])
    more = f" and {len(names) - _SHOWN_CATEGORIES} more" if len(names) > _SHOWN_CATEGORIES else ""
    if tuple(config.categories) == COCO_CATEGORIES:
        kind = "COCO's 91-slot label space (label == COCO category id; the `N/A` slots are never predicted)"
    else:
        kind = f"a custom label space of {config.num_classes - 1} object classes"
    return [
        "## Label space",
        "",
        f"{config.num_classes} class slots including the background at index 0: {kind}. A detection's `label` indexes "
        "`model.config.categories` (also in `config.json` under `model.categories`).",
        "",
        f"Classes: {shown}{more}.",
    ]


def _metrics_section(inputs: CardInputs) -> list[str]:
    lines = ["## Evaluation", ""]
    if not inputs.metrics:
        return [
            *lines,
            "No metrics were measured for these weights, so this card makes no accuracy claim. Evaluate them on "
            "your own data before relying on them.",
        ]
    lines += ["| Dataset | Metric | Value | Source | Date |", "|---|---|---|---|---|"]
    lines += [
        f"| {_cell(m.dataset)} | {_cell(m.metric)} | {m.value:g} | {_cell(m.source)} | {m.date or 'not recorded'} |"
        for m in inputs.metrics
    ]
    if inputs.metrics_origin:
        lines += ["", f"Figures taken from {inputs.metrics_origin}; each row names who measured it."]
    return lines


def _model_section(inputs: CardInputs) -> list[str]:
    from fpn_zoo.inspect_model import inspect_architecture

    config = inputs.config
    info = inspect_architecture(config)  # a meta-device build: instant, no memory
    strides = "/".join(str(s) for s in info.backbone_strides)
    if inputs.gflops is not None and inputs.gflops_input_size is not None:
        h, w = inputs.gflops_input_size
        gflops = f"{inputs.gflops:.2f} at {h}x{w} (2 FLOPs per multiply-add, 1000 RoIs; `inspect_model.count_flops`)"
    else:
        gflops = f"not counted here; `fpn-zoo info {config.name}` counts them"
    rows = [
        ("Backbone", f"`{config.backbone}` = timm `{info.timm_backbone}` (C2-C5, strides {strides})"),
        ("Neck", f"{NECK_TITLES[config.neck]}; {info.pyramid_channels} channels, levels P2-P6"),
        ("Head", info.head),
        ("Parameters", f"{inputs.num_params:,} (frozen BatchNorm, torchvision's convention)"),
        ("GFLOPs", gflops),
        ("Input", f"float (3, H, W) in [0, 1], resized to min_size={config.min_size}, max_size={config.max_size}"),
        ("Weights", f"`model.safetensors`, {inputs.size:,} bytes, sha256 `{inputs.sha256}`"),
        ("Licence", inputs.license or "not stated"),
    ]
    if inputs.provenance:
        rows.append(("Provenance", inputs.provenance))
    return ["## Model", "", "| | |", "|---|---|", *(f"| {k} | {_cell(v)} |" for k, v in rows)]


def _usage_section(inputs: CardInputs) -> list[str]:
    name, repo = inputs.config.name, inputs.repo_id or REPO_PLACEHOLDER
    hub_weights = f'weights="hf-hub:{repo}"'
    # A tag means the weights are (to be) listed in weights_manifest.json, so `pretrained=TAG` loads them pinned to
    # the published commit; without one only the Hub reference is guaranteed to name these weights.
    pretrained = f'pretrained="{inputs.tag}"' if inputs.tag else hub_weights
    return [
        "## Usage",
        "",
        "```python",
        "import torch",
        "",
        f'model = torch.hub.load("{GITHUB_REPO}", "{name}", {pretrained})',
        "```",
        "",
        "```python",
        "import fpn_zoo, torch",
        "",
        f'model = fpn_zoo.create_model("{name}", {hub_weights})  # sha256-verified, cached',
        "detections = model([torch.rand(3, 480, 640)])[0]  # boxes (x1, y1, x2, y2), scores, labels",
        "```",
        "",
        "Fine-tuning on K class slots (background included) re-initialises only the class predictor:",
        "",
        "```python",
        f'model = fpn_zoo.create_model("{name}", {pretrained}, num_classes=K).train()',
        "```",
        "",
        f"Check a download with `sha256sum model.safetensors`: `{inputs.sha256}`.",
    ]


def build_model_card(inputs: CardInputs) -> ModelCard:
    """The ``README.md`` of an export: Hub metadata (``model-index`` when there are metrics) and a Markdown body.

    Args:
        inputs: What the card states.

    Returns:
        The card; ``str(card)`` is the file content, ``card.data`` its metadata.

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> card = build_model_card(CardInputs(get_model_config("fpn_r50_coco"), "0" * 64, 1, 41755286))
        >>> card.data.library_name, "No metrics were measured" in card.text
        ('fpn-zoo', True)
    """
    from huggingface_hub import ModelCard, ModelCardData

    config = inputs.config
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=inputs.license.lower() if inputs.license else None,  # the Hub's licence ids are lowercase SPDX
        datasets=list(inputs.datasets) or None,
        pipeline_tag=TASK,
        tags=_tags(config),
        model_name=config.name if inputs.metrics else None,
        eval_results=_eval_results(inputs.metrics) if inputs.metrics else None,
    )
    tag = f" Weights tag: `{inputs.tag}`." if inputs.tag else ""
    body = [
        f"# {config.name}",
        "",
        f"Faster R-CNN object detector from [fpn_zoo]({HOMEPAGE}): timm "
        f"`{config.backbone_spec.timm_name}` backbone, {config.neck.upper()} neck, torchvision RPN + RoI heads.{tag}",
        "",
        *_model_section(inputs),
        "",
        *_label_space_section(config),
        "",
        *_metrics_section(inputs),
        "",
        *_usage_section(inputs),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n")


def _metric(result: Any, where: str) -> Metric:
    value = result.metric_value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CardError(f"{where}: metric {result.metric_type!r} has value {value!r}; fpn_zoo records numbers.")
    source = (result.metric_args or {}).get("source") if isinstance(result.metric_args, dict) else None
    if not isinstance(source, str) or not source.strip():
        raise CardError(
            f"{where}: metric {result.metric_type!r} on {result.dataset_name!r} has no source (model-index "
            "metrics[].args.source); every published figure must say who measured it."
        )
    date = result.metric_args.get("date")
    try:
        date = check_metric_date(date, f"{where}: metric {result.metric_type!r} date")
    except ManifestError as err:
        raise CardError(str(err)) from err
    return Metric(result.dataset_name, result.metric_type, float(value), source, date)


def card_metrics(card: ModelCard, where: str = "README.md") -> tuple[Metric, ...]:
    """The metrics a card's ``model-index`` states, as manifest [`Metric`][fpn_zoo.weights.manifest.Metric] objects.

    Args:
        card: A card, e.g. ``ModelCard.load(Path("export/README.md"))``.
        where: Name of the card in messages.

    Returns:
        The figures, empty when the card has no ``model-index``.

    Raises:
        CardError: A figure without a numeric value or without a source.

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> m = Metric("COCO val2017", "box_ap", 37.0, "reported by torchvision")
        >>> card = build_model_card(CardInputs(get_model_config("fpn_r50_coco"), "0" * 64, 1, 1, metrics=(m,)))
        >>> card_metrics(card) == (m,)
        True
    """
    return tuple(_metric(r, where) for r in card.data.eval_results or ())
