"""Every weights tag of a model as the site shows it: its COCO box AP with source and date, whether it is the
default, where its file comes from and the inference settings it runs with."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from fpn_zoo.config import INFERENCE_FIELDS, ModelConfig
from fpn_zoo.docs_site.figures import DocsSourceError, Figure, Source
from fpn_zoo.docs_site.weights_cell import STATUS_TEXT, WeightsLink, weights_link
from fpn_zoo.weights.manifest import DEFAULT_METRIC, Manifest, Metric, WeightsEntry

__all__ = ["WeightsTag", "coco_ap_figure", "inference_settings", "metric_figure", "tags_cell", "weights_tags"]


def metric_figure(metric: Metric, source_label: str) -> Figure:
    """A manifest metric as a figure; refuses one without a date (the site never shows an undated figure)."""
    if not metric.date:
        raise DocsSourceError(
            f"{source_label}: metric {metric.metric!r} on {metric.dataset!r} ({metric.value:g}) has no 'date'; "
            "add the date it was measured or recorded (YYYY-MM-DD) before it can appear on the site."
        )
    source = Source(source_label, metric.date, metric.source)
    return Figure(metric.value, f"{metric.value:.1f}", source, f"{metric.metric} on {metric.dataset}")


def coco_ap_figure(entry: WeightsEntry, manifest_label: str) -> Figure | None:
    """The entry's box AP on COCO val2017 (the metric that picks the default weights), or ``None``."""
    for metric in entry.metrics:
        if (metric.dataset, metric.metric) == DEFAULT_METRIC:
            return metric_figure(metric, f"{manifest_label} ({entry.model}:{entry.tag})")
    return None


@dataclass(frozen=True)
class WeightsTag:
    """One weights tag of a model, as the zoo table and the model page show it.

    Attributes:
        entry: The manifest entry.
        coco_ap: Its box AP on COCO val2017 with source and date, ``None`` when it reports none.
        default: Whether ``pretrained=True`` loads it (``Manifest.default_entry``).
    """

    entry: WeightsEntry
    coco_ap: Figure | None
    default: bool

    @property
    def tag(self) -> str:
        return self.entry.tag

    @property
    def anchor(self) -> str:
        """The id of the tag's section on its model page."""
        return f"weights-{self.entry.tag}"

    @property
    def link(self) -> WeightsLink:
        return weights_link(self.entry)


def weights_tags(manifest: Manifest, name: str, manifest_label: str) -> tuple[WeightsTag, ...]:
    """The model's tags, the default first, then in manifest order.

    Raises:
        DocsSourceError: A metric without a date.

    Examples:
        >>> from fpn_zoo.weights.manifest import load_manifest
        >>> [(t.tag, t.default) for t in weights_tags(load_manifest(), "fpn_r50_v2_coco", "weights_manifest.json")]
        [('coco_tv_mask', True), ('coco_tv', False)]
    """
    default = manifest.default_entry(name)
    tags = [WeightsTag(e, coco_ap_figure(e, manifest_label), e is default) for e in manifest.entries(name)]
    return tuple(sorted(tags, key=lambda t: not t.default))  # sorted() is stable: manifest order after the default


def inference_settings(entry: WeightsEntry, config: ModelConfig) -> dict[str, Any] | None:
    """The inference settings a convertible entry's weights run with, as ``fpn-zoo info`` lists them: the model's
    defaults updated with its converter's options. ``None`` for other entries (published weights carry theirs in
    their ``config.json``).

    Examples:
        >>> from fpn_zoo import get_model_config
        >>> from fpn_zoo.weights.manifest import load_manifest
        >>> entry = load_manifest().entry("fpn_r50_coco", "coco_tv")
        >>> inference_settings(entry, get_model_config("fpn_r50_coco"))["frozen_bn_eps"]
        0.0
    """
    if entry.upstream is None:
        return None
    from fpn_zoo.converters import CONVERTERS  # imports torch; only the generator needs it

    upstream = entry.upstream
    options = CONVERTERS[upstream.converter].options(entry.model, upstream.sha256 or upstream.sha256_prefix)
    return {field: options.get(field, getattr(config, field)) for field in INFERENCE_FIELDS}


def _badge(status: str) -> str:
    return f'<span class="zoo-status zoo-status--{status}">{STATUS_TEXT[status]}</span>'


def _tag_line(tag: WeightsTag, model_page: str, badge: bool) -> str:
    link = tag.link
    parts = [_badge(tag.entry.status)] if badge else []
    parts.append(f'<a href="{model_page}#{tag.anchor}"><code>{tag.tag}</code></a>')
    if tag.default:
        parts.append("<strong>default</strong>")
    if tag.coco_ap is not None:
        parts.append(tag.coco_ap.html_span())
    if link.url is not None:
        # The short digest is the download link; its tooltip gives the full digest (or says it is a prefix).
        digest = html.escape(link.sha256 or "", quote=True)
        parts.append(
            f'<a href="{html.escape(link.url, quote=True)}" title="download">'
            f'<code title="download; {link.sha256_kind} {digest}">{digest[:8]}</code></a>'
        )
    return '<div class="zoo-weights-tag">' + " ".join(parts) + "</div>"


def tags_cell(tags: tuple[WeightsTag, ...], model_page: str) -> str:
    """The zoo table's weights cell: each tag with its AP, the default marked; sorts by the number of tags to load.

    A model without weights to load gets its status and a link to how to train it.
    """
    available = [t for t in tags if t.entry.available]
    if not available:
        status = tags[0].entry.status if tags else "not_trained"
        return f'<td data-sort="0">{_badge(status)} <a href="{model_page}#how-to-train">how to train</a></td>'
    statuses = sorted({t.entry.status for t in available})
    # One badge for the cell when every tag has the same status; a badge per tag when they differ.
    shared = len(statuses) == 1
    count = f"{len(available)} tag" + ("s" if len(available) > 1 else "")
    head = f"<div>{_badge(statuses[0])} {count}</div>" if shared else f"<div>{count}</div>"
    lines = [_tag_line(t, model_page, badge=not shared) for t in available]
    return f'<td data-sort="{len(available)}">' + head + "".join(lines) + "</td>"
