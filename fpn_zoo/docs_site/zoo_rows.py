"""One row per zoo model: what it costs and what it achieves, each figure with its source and date."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fpn_zoo.bench.ranking import RankedRow, latency_ranking
from fpn_zoo.config import ModelConfig
from fpn_zoo.docs_site.figures import Figure
from fpn_zoo.docs_site.sources import ResultsFile, SiteSources
from fpn_zoo.docs_site.weights_tags import WeightsTag, metric_figure, weights_tags
from fpn_zoo.registry import get_model_config, list_models
from fpn_zoo.weights.manifest import WeightsEntry

__all__ = ["NECK_NAMES", "REFERENCE_NAME", "ZooRow", "latency_row", "metric_figure", "zoo_rows"]

REFERENCE_NAME = "torchvision fasterrcnn_resnet50_fpn"
TABLE_SIZES = ("512x512", "800x1216")
FLOPS_SIZE = "800x1216"
NECK_NAMES = {"fpn": "FPN", "panet": "PANet", "bifpn": "BiFPN", "augfpn": "AugFPN"}


@dataclass(frozen=True)
class ZooRow:
    """The zoo table's row for one model (``None``: not measured, shown as a dash).

    Attributes:
        config: The registered architecture.
        params: Parameter count, in millions.
        gflops: GFLOPs of one forward at ``FLOPS_SIZE``.
        latency: CPU latency per input size, median ms at batch 1 in fp32.
        latency_ratio: The same, divided by torchvision's detector measured interleaved in the same run.
        memory: Peak memory of one CPU forward at the benchmark's memory size, MiB.
        latency_rank: Per input size, the model's place in the run's latency ranking (median per-round ratio to the
            reference, ties within the 95% intervals marked); empty for runs that timed each model in its own
            process, which cannot be ranked against each other.
        fast_latency: Per input size, the fast inference path's CPU latency (``create_model(..., fast=True)``),
            timed in the same rounds; empty when the run did not time it.
        fast_latency_ratio: The same, divided by the reference's eager latency.
        fast_latency_rank: The fast paths' own ranking, as ``latency_rank``.
        gpu: GPU figures by column name, when a CUDA run exists.
        coco_ap: COCO box AP of the default weights, from the manifest.
        bccd_ap: Box AP (and AP50 in the text) on BCCD val after the fine-tuning run.
        weights: The manifest's default entry (``pretrained=True``), else its first entry.
        tags: Every weights tag of the model, each with its COCO box AP; the default first.
    """

    config: ModelConfig
    params: Figure | None
    gflops: Figure | None
    latency: dict[str, Figure | None]
    latency_ratio: dict[str, float | None]
    memory: Figure | None
    gpu: dict[str, Figure | None] = field(default_factory=dict)
    latency_rank: dict[str, RankedRow] = field(default_factory=dict)
    fast_latency: dict[str, Figure | None] = field(default_factory=dict)
    fast_latency_ratio: dict[str, float | None] = field(default_factory=dict)
    fast_latency_rank: dict[str, RankedRow] = field(default_factory=dict)
    coco_ap: Figure | None = None
    bccd_ap: Figure | None = None
    weights: WeightsEntry | None = None
    tags: tuple[WeightsTag, ...] = ()


def latency_row(
    model_row: dict[str, Any],
    size: str,
    *,
    batch: int = 1,
    precision: str = "fp32",
    channels_last: bool = False,
    compiled: bool = False,
) -> dict[str, Any] | None:
    """The benchmark's latency entry for one setting, or ``None`` when it was not measured."""
    for row in model_row.get("latency") or []:
        setting = (row["size"], row["batch"], row["precision"], row["channels_last"], row["compiled"])
        if setting == (size, batch, precision, channels_last, compiled):
            return row
    return None


# The keys of a latency row that hold each path's figures (docs/bench-results.md).
_PATH_KEYS = {
    "eager": ("ours", "ratio", "paired_ratio"),
    "fast": ("fast", "fast_ratio", "fast_paired_ratio"),
}


def _latency_figure(
    run: ResultsFile, model_row: dict[str, Any], size: str, *, path: str = "eager", **setting: Any
) -> tuple[Figure, Any] | None:
    row = latency_row(model_row, size, **setting)
    stats_key, ratio_key, paired_key = _PATH_KEYS[path]
    if row is None or row.get(stats_key) is None:
        return None
    ours, ratio = row[stats_key], row.get(ratio_key)
    batch = setting.get("batch", 1)
    what = "fast path (create_model(..., fast=True)), " if path == "fast" else ""
    detail = (
        f"{what}{row['precision']}, batch {batch}, {size}: median {ours['median_ms']:.1f} ms of {ours['n']} runs "
        f"(min {ours['min_ms']:.1f}, IQR {ours['iqr_ms']:.1f})"
    )
    if ratio is not None:
        detail += f"; {ratio:.3f}x {REFERENCE_NAME} (eager) measured interleaved in the same run"
    ci = row.get(f"{paired_key}_ci")
    if ci is not None:
        detail += (
            f"; median per-round ratio {row[paired_key]:.3f} (95% CI {ci['low']:.3f}-{ci['high']:.3f}), every "
            "model of the run timed in one process in shuffled rounds"
        )
    if path == "fast" and row.get("fast_vs_eager_paired_ratio") is not None:
        detail += f"; {row['fast_vs_eager_paired_ratio']:.3f}x this model's eager path per round"
    return Figure(ours["median_ms"], f"{ours['median_ms']:.0f}", run.source, detail), ratio


def _bench_figures(sources: SiteSources, name: str) -> dict[str, Any]:
    run = sources.bench
    row = run.model(name) if run else None
    if run is None or row is None:
        return {"params": None, "gflops": None, "latency": {}, "latency_ratio": {}, "memory": None}
    figures: dict[str, Any] = {}
    for path, prefix in (("eager", ""), ("fast", "fast_")):
        ranks = {size: latency_ranking(run.data["models"], size, fast=path == "fast").get(name) for size in TABLE_SIZES}
        found = {size: _latency_figure(run, row, size, path=path) for size in TABLE_SIZES}
        figures[f"{prefix}latency"] = {size: f[0] for size, f in found.items() if f}
        figures[f"{prefix}latency_ratio"] = {size: f[1] for size, f in found.items() if f}
        figures[f"{prefix}latency_rank"] = {size: rank for size, rank in ranks.items() if rank is not None}
    gflops = (row.get("gflops") or {}).get(FLOPS_SIZE)
    memory = row.get("memory")
    params = row.get("params")
    return {
        "params": None
        if params is None
        else Figure(params / 1e6, f"{params / 1e6:.1f}", run.source, f"{params:,} params"),
        "gflops": None
        if gflops is None
        else Figure(gflops, f"{gflops:.0f}", run.source, f"GFLOPs of one forward at {FLOPS_SIZE}"),
        **figures,
        "memory": None
        if not memory
        else Figure(
            memory["ours_mib"],
            f"{memory['ours_mib']:.0f}",
            run.source,
            f"peak memory of one forward at {memory['size']} ({memory.get('method', '')}); "
            f"{REFERENCE_NAME}: {memory['reference_mib']:.0f} MiB",
        ),
    }


GPU_COLUMNS = {
    "GPU ms fp32 b1": {"batch": 1, "precision": "fp32"},
    "GPU img/s bf16 b8": {"batch": 8, "precision": "bf16"},
}


def _gpu_figures(sources: SiteSources, name: str) -> dict[str, Figure | None]:
    run = sources.bench_gpu
    row = run.model(name) if run else None
    if run is None:
        return {}
    figures: dict[str, Figure | None] = dict.fromkeys(GPU_COLUMNS)
    if row is None:
        return figures
    for column, setting in GPU_COLUMNS.items():
        entry = latency_row(row, FLOPS_SIZE, **setting)
        if entry is None:
            continue
        if column.startswith("GPU img/s"):
            value = entry["throughput_img_s"]
            detail = f"images/s at {FLOPS_SIZE}, {setting['precision']}, batch {setting['batch']}"
            figures[column] = Figure(value, f"{value:.1f}", run.source, detail)
        else:
            found = _latency_figure(run, row, FLOPS_SIZE, **setting)
            figures[column] = found[0] if found else None
    return figures


def _bccd_ap(sources: SiteSources, name: str) -> Figure | None:
    run = sources.finetune
    row = run.model(name) if run else None
    if run is None or row is None:
        return None
    ap, ap50 = row["after"]["AP"], row["after"]["AP50"]
    detail = f"BCCD val box AP {ap:.1f}, AP50 {ap50:.1f} after fine-tuning (before: AP {row['before']['AP']:.2f})"
    return Figure(ap, f"{ap:.1f} ({ap50:.1f})", run.source, detail)


def zoo_rows(sources: SiteSources) -> list[ZooRow]:
    """One row per registered model, in registry order.

    Raises:
        DocsSourceError: A manifest metric without a date.
    """
    manifest_label = sources.files()[0].as_posix()
    rows = []
    for name in list_models():
        tags = weights_tags(sources.manifest, name, manifest_label)
        default = next((t for t in tags if t.default), tags[0] if tags else None)
        rows.append(
            ZooRow(
                config=get_model_config(name),
                **_bench_figures(sources, name),
                gpu=_gpu_figures(sources, name),
                coco_ap=default.coco_ap if default else None,
                bccd_ap=_bccd_ap(sources, name),
                weights=default.entry if default else None,
                tags=tags,
            )
        )
    return rows
