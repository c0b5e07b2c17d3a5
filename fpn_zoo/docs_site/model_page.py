"""One generated page per model: architecture, measured figures, weights, how to load, fine-tune and train it."""

from __future__ import annotations

import textwrap

from fpn_zoo.bench.ranking import latency_ranking
from fpn_zoo.config import NECK_TITLES, VARIANTS, ModelConfig
from fpn_zoo.docs_site.figures import Figure
from fpn_zoo.docs_site.model_weights import weights_section
from fpn_zoo.docs_site.sources import ResultsFile, SiteSources
from fpn_zoo.docs_site.weights_cell import STATUS_TEXT
from fpn_zoo.docs_site.weights_tags import metric_figure
from fpn_zoo.docs_site.zoo_rows import REFERENCE_NAME, ZooRow
from fpn_zoo.inspect_model import ArchitectureInfo
from fpn_zoo.project import GITHUB_REPO
from fpn_zoo.publish.card import CardInputs, build_model_card
from fpn_zoo.weights.manifest import WeightsEntry

__all__ = ["render_model_page"]

NECK_NOTES = {
    "fpn": "A top-down pathway with lateral 1x1 connections and 3x3 output convolutions over C2-C5, plus P6 by "
    "max-pooling P5 ([Lin et al. 2017](https://arxiv.org/abs/1612.03144)). It computes exactly what "
    "`torchvision.ops.FeaturePyramidNetwork` computes (weights interchangeable, outputs compared in the tests).",
    "panet": "FPN followed by a bottom-up path augmentation: each level is downsampled by a stride-2 3x3 conv, added "
    "to the next FPN level and refined by a 3x3 conv ([Liu et al. 2018](https://arxiv.org/abs/1803.01534)); the order "
    "of operations is mmdetection's `PAFPN`, transcribed and compared in the tests.",
    "bifpn": "Repeated bidirectional (top-down and bottom-up) cross-scale blocks with learned, fast-normalised fusion "
    "weights and depthwise-separable convolutions ([Tan et al. 2020](https://arxiv.org/abs/1911.09070)); the graph "
    "is effdet's `BiFpn` over P2-P6, and effdet's weights load into it with identical outputs.",
    "augfpn": "FPN with residual feature augmentation (ratio-invariant adaptive pooling of C5 fused by adaptive "
    "spatial weights), soft RoI selection (RoI features pooled from every level and fused with learned weights) and, "
    "in training only, consistent supervision of the raw laterals "
    "([Guo et al. 2020](https://arxiv.org/abs/1912.05384)); transcribed from the authors' `HighFPN` and "
    "`SoftRoIExtractor`.",
}


def _param_convention(config: ModelConfig) -> str:
    # torchvision's weights tables count v1 models with FrozenBatchNorm (affine terms are buffers) and v2 models with
    # ordinary BatchNorm (they are parameters); the zoo counts each the same way, so the figures compare.
    if config.backbone_norm == "batch_norm":
        return "ordinary BatchNorm, whose affine terms count, as torchvision counts its v2 models"
    return "frozen BatchNorm, torchvision's convention"


def _architecture(row: ZooRow, info: ArchitectureInfo) -> list[str]:
    config = row.config
    strides = "/".join(map(str, info.backbone_strides))
    channels = "/".join(map(str, info.backbone_channels))
    levels = ", ".join(f"P{i + 2} (stride {s})" for i, s in enumerate(info.pyramid_strides))
    return [
        "## Architecture",
        "",
        "| Part | What it is |",
        "|---|---|",
        f"| Backbone | timm `{info.timm_backbone}` (`{config.backbone}`): C2-C5 with {channels} channels at strides "
        f"{strides} |",
        f"| Neck | {NECK_TITLES[config.neck]}: {info.pyramid_channels} channels at {levels} |",
        f"| Head | {info.head} |",
        *([f"| Variant | `{config.variant}`: {VARIANTS[config.variant].title} |"] if config.variant else []),
        f"| Parameters | {info.num_params:,} ({_param_convention(config)}) |",
        f"| Input | float (3, H, W) in [0, 1], resized to min_size={config.min_size}, max_size={config.max_size} |",
        "",
        NECK_NOTES[config.neck] + " The [architecture page](../../architecture.md) shows how the parts fit together "
        "and which test proves each neck equivalent to its reference.",
        "",
    ]


def _stats(figure: dict, unit: str = "ms") -> str:
    return f"{figure['median_ms']:.1f} {unit} (min {figure['min_ms']:.1f}, IQR {figure['iqr_ms']:.1f}, n={figure['n']})"


def _ci_text(entry: dict) -> str:
    """``; per round 0.953 (95% CI 0.941-0.968)`` for rows timed with every model in one process, else nothing."""
    parts = []
    for key, label in (("paired_ratio", "per round"), ("fast_paired_ratio", "fast path per round")):
        ci = entry.get(f"{key}_ci")
        if ci is not None:
            parts.append(f"{label} {entry[key]:.3f} (95% CI {ci['low']:.3f}-{ci['high']:.3f})")
    return "".join(f"; {part}" for part in parts)


def _rank_lines(run: ResultsFile, name: str) -> list[str]:
    """Where the model ranks among the run's models, per size; nothing for runs that cannot be ranked."""
    lines = []
    for size in run.data["settings"]["sizes"]:
        for fast, label in ((False, "eager"), (True, "fast path")):
            ranking = latency_ranking(run.data["models"], size, fast=fast)
            if name in ranking:
                ranked = ranking[name]
                noise = ", within noise of a neighbour (95% intervals overlap)" if ranked.within_noise else ""
                lines.append(f"- {size}, {label}: rank {ranked.rank_text} of {len(ranking)}{noise}")
    if not lines:
        return []
    return [
        "",
        "Latency rank among the models of this run (fp32, batch 1; all timed in one process per size, shuffled "
        "rounds; by the median per-round ratio to the reference):",
        "",
        *lines,
    ]


def _bench_section(run: ResultsFile, name: str, title: str) -> list[str]:
    row = run.model(name)
    source = run.source
    where = source.markdown("../../")
    if row is None:
        return [
            f"### {title}",
            "",
            f"Not benchmarked yet: {where} ({source.date}) does not cover this model, so its cost is shown as a dash "
            f"in the zoo table, not estimated. `fpn-zoo bench {name}` measures it (add `--device cuda` on a GPU), "
            "then `fpn-zoo docs` puts the figures here.",
            "",
        ]
    lines = [
        f"### {title}",
        "",
        f"Source: {where}, {source.date}: {source.note}. The reference is {REFERENCE_NAME}, timed interleaved with "
        "this model in the same process; ratio = median(ours) / median(reference), below 1 is faster.",
        "",
        "| Input | Batch | Precision | channels_last | torch.compile | Latency | Reference | Ratio | Images/s |",
        "|---|---:|---|---|---|---:|---:|---:|---:|",
    ]
    for entry in row["latency"]:
        ratio = "" if entry.get("ratio") is None else f"{entry['ratio']:.3f}" + _ci_text(entry)
        reference = "" if entry.get("reference") is None else _stats(entry["reference"])
        throughput = entry.get("throughput_img_s")
        flags = " | ".join("yes" if entry[key] else "no" for key in ("channels_last", "compiled"))
        lines.append(
            f"| {entry['size']} | {entry['batch']} | {entry['precision']} | {flags} | {_stats(entry['ours'])} | "
            f"{reference} | {ratio} | {'' if throughput is None else f'{throughput:.2f}'} |"
        )
    lines += _rank_lines(run, name)
    lines += ["", "| Figure | This model | Reference | Ratio |", "|---|---:|---:|---:|"]
    lines.append(f"| Parameters | {row['params']:,} | | |")
    reference_flops = (run.data.get("references", {}).get("detector") or {}).get("gflops") or {}
    for size, gflops in row["gflops"].items():
        ref = reference_flops.get(size)
        ratio = f"{gflops / ref:.3f}" if ref else ""
        lines.append(f"| GFLOPs at {size} | {gflops:.1f} | {'' if ref is None else f'{ref:.1f}'} | {ratio} |")
    memory = row.get("memory")
    if memory:
        lines.append(
            f"| Peak memory of one forward at {memory['size']} (MiB) | {memory['ours_mib']:.0f} | "
            f"{memory['reference_mib']:.0f} | {memory['ratio']:.3f} |"
        )
    load = row.get("load")
    if load:
        for kind in ("cold", "warm"):
            phase = load[kind]
            lines.append(
                f"| Weight load, {kind} (ms) | {_stats(phase['ours'])} | {_stats(phase['reference'])} | "
                f"{phase['ratio']:.3f} |"
            )
        lines.append(f"| Weights file (MiB) | {load['weights_mib']:.1f} | {load['reference_weights_mib']:.1f} | |")
    if memory:
        lines += ["", f"Memory: {memory.get('method', '')}."]
    return [*lines, "", *_neck_rows(run, row["neck"])]


def _neck_rows(run: ResultsFile, neck: str) -> list[str]:
    """The neck alone next to its reference implementation (or torchvision's FPN as a cost baseline)."""
    rows = [r for r in run.data.get("necks") or [] if r["neck"] == neck]
    if not rows:
        return []
    lines = [
        "The neck alone, on random ResNet-50 C2-C5 maps, timed interleaved with its reference in the same run:",
        "",
        "| Input | Reference | Same function (max abs diff) | Neck | Reference | Ratio | Paired ratio |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["equivalent"]:
            same = f"yes ({r['max_abs_diff']:.1e})" if r.get("max_abs_diff") is not None else "yes"
        else:
            same = "no: a cost baseline"
        lines.append(
            f"| {r['size']} | `{r['reference_name']}` | {same} | {_stats(r['ours'])} | {_stats(r['reference'])} | "
            f"{r['ratio']:.3f} | {r['paired_ratio']:.3f} |"
        )
    return [*lines, ""]


def _accuracy(row: ZooRow, sources: SiteSources, entries: tuple[WeightsEntry, ...]) -> list[str]:
    lines = ["### Accuracy", ""]
    figures: list[tuple[str, Figure]] = []
    manifest_label = sources.files()[0].as_posix()
    for entry in entries:
        default = " (default)" if entry == row.weights and entry.available else ""
        for metric in entry.metrics:
            figure = metric_figure(metric, f"{manifest_label} ({entry.model}:{entry.tag})")
            figures.append((f"{metric.metric} on {metric.dataset}, weights `{entry.tag}`{default}", figure))
    if row.bccd_ap is not None:
        figures.append(("box AP (AP50) on BCCD val after fine-tuning", row.bccd_ap))
    if not figures:
        return [*lines, "No accuracy has been measured for this model: it has no trained weights yet.", ""]
    lines += ["| Figure | Value | Source | Date |", "|---|---:|---|---|"]
    for label, figure in figures:
        source = figure.source
        lines.append(f"| {label} | {figure.text} | {source.label}: {source.note} | {source.date} |")
    return [*lines, ""]


def _usage(name: str, default: WeightsEntry | None) -> list[str]:
    available = default is not None and default.available
    pretrained = "pretrained=True" if available else "pretrained_backbone=True"
    note = (
        f"`pretrained=True` loads the default weights, `{default.tag}`, checked against their hash and cached; "
        '`pretrained="TAG"` loads any tag listed under [Weights](#weights).'
        if available
        else "No trained weights exist yet, so `pretrained=True` raises `WeightsNotAvailableError`; "
        "`pretrained_backbone=True` starts from timm's ImageNet backbone weights."
    )
    return [
        "## Load",
        "",
        note,
        "",
        "```python",
        "import torch",
        "",
        "# The entrypoint puts the model on the GPU when there is one.",
        f'model = torch.hub.load("{GITHUB_REPO}", "{name}", {pretrained})',
        "model.eval()",
        "detections = model([torch.rand(3, 480, 640, device=next(model.parameters()).device)])[0]",
        "```",
        "",
        "Installed with pip, the same through Python or the command line:",
        "",
        "```python",
        "import fpn_zoo",
        "",
        f'model = fpn_zoo.create_model("{name}", {pretrained})',
        "```",
        "",
        "```console",
        f"$ fpn-zoo info {name}",
        f"$ fpn-zoo predict photo.jpg --model {name}" + (" --pretrained" if available else ""),
        "```",
        "",
        "## Fine-tune",
        "",
        "Give the number of class slots of your data (background included); only the class predictor is "
        "re-initialised:",
        "",
        "```python",
        f'model = fpn_zoo.create_model("{name}", {pretrained}, num_classes=K).train()',
        "```",
        "",
        "Or train on COCO-format data from the command line (class names come from the annotations):",
        "",
        "```console",
        f"$ fpn-zoo train --model {name} --train-ann train.json --train-images train/ \\",
        f"    --val-ann val.json --val-images val/ --init {'coco' if available else 'backbone'} --epochs 12 --out runs/"
        f"{name}",
        f"$ fpn-zoo eval --model {name} --weights runs/{name}/final --ann val.json --images val/",
        "```",
        "",
        "The [fine-tuning guide](../../guides/fine-tuning.md) covers the options, resuming and evaluation; "
        "[torchrun](../../guides/torchrun.md) covers several GPUs.",
        "",
    ]


def _how_to_train(entries: tuple[WeightsEntry, ...]) -> list[str]:
    recipes = [e.recipe for e in entries if e.status == "not_trained"]
    lines = ["## How to train", ""]
    if not recipes:
        return [*lines, "Trained weights exist (above); the recipe each was trained with is listed with it.", ""]
    return [
        *lines,
        recipes[0],
        "",
        "Then export and publish the result so it can be listed here: see [publishing](../../guides/publishing.md).",
        "",
    ]


def _card(row: ZooRow, entries: tuple[WeightsEntry, ...]) -> list[str]:
    lines = ["## Model card", ""]
    published = [e for e in entries if e.status == "published" and e.hub is not None]
    if not published:
        return [
            *lines,
            "No weights are published for this model, so there is no card on the Hub. `fpn-zoo export` writes one "
            "(architecture, label space, metrics with their sources, usage, sha256) for weights you train; "
            "see [publishing](../../guides/publishing.md).",
            "",
        ]
    entry = published[0]
    hub = entry.hub
    card = build_model_card(
        CardInputs(
            config=row.config,
            sha256=hub.sha256,
            size=hub.size,
            num_params=entry.num_params,
            gflops=entry.gflops,
            gflops_input_size=entry.gflops_input_size,
            metrics=entry.metrics,
            metrics_origin="weights_manifest.json",
            license=entry.license,
            tag=entry.tag,
            repo_id=hub.repo_id,
            provenance=entry.source,
        )
    )
    body = card.text.replace("\n#", "\n###")  # the card's headings sit under this page's "Model card"
    return [
        *lines,
        f'??? note "README.md of `{hub.repo_id}` at `{hub.revision[:12]}`, as `fpn-zoo export` writes it"',
        "",
        textwrap.indent(body.strip(), "    "),
        "",
    ]


def render_model_page(row: ZooRow, info: ArchitectureInfo, sources: SiteSources, header: str) -> str:
    """The Markdown of ``docs/zoo/models/<name>.md``."""
    name = row.config.name
    entries = sources.manifest.entries(name)
    status = (
        ", ".join(f"`{t.tag}`{' (default)' if t.default else ''} {STATUS_TEXT[t.entry.status]}" for t in row.tags)
        or "no manifest entry"
    )
    lines = [
        header,
        f"# {name}",
        "",
        f"Faster R-CNN. Backbone: timm `{info.timm_backbone}`. Neck: {NECK_TITLES[row.config.neck]}. "
        f"{row.config.num_classes} class slots ({row.config.dataset}). Weights: {status}.",
        "",
        *_architecture(row, info),
        "## Measured figures",
        "",
        "Every figure here is generated from a results file or the weights manifest, named with its date. Latency, "
        "memory and load time are measured on randomly initialised weights: they do not depend on the values, and no "
        "trained weights could be downloaded where they were measured.",
        "",
    ]
    if sources.bench:
        lines += _bench_section(sources.bench, name, "Cost on CPU")
    else:
        lines += ["No benchmark results are committed yet (`fpn-zoo bench`, then `fpn-zoo docs`).", ""]
    if sources.bench_gpu:
        lines += _bench_section(sources.bench_gpu, name, "Cost on GPU")
    lines += _accuracy(row, sources, entries)
    lines += weights_section(name, row.tags, row.config)
    lines += _usage(name, row.weights)
    lines += _how_to_train(entries)
    lines += _card(row, entries)
    return "\n".join(lines)
