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


def _latency_figure(
    run: ResultsFile, model_row: dict[str, Any], size: str, **setting: Any
) -> tuple[Figure, Any] | None:
    row = latency_row(model_row, size, **setting)
    if row is None:
        return None
    ours, ratio = row["ours"], row.get("ratio")
    batch = setting.get("batch", 1)
    detail = (
        f"{row['precision']}, batch {batch}, {size}: median {ours['median_ms']:.1f} ms of {ours['n']} runs "
        f"(min {ours['min_ms']:.1f}, IQR {ours['iqr_ms']:.1f})"
    )
    if ratio is not None:
        detail += f"; {ratio:.3f}x {REFERENCE_NAME} measured interleaved in the same run"
    ci = row.get("paired_ratio_ci")
    if ci is not None:
        detail += (
            f"; median per-round ratio {row['paired_ratio']:.3f} (95% CI {ci['low']:.3f}-{ci['high']:.3f}), every "
            "model of the run timed in one process in shuffled rounds"
        )
    return Figure(ours["median_ms"], f"{ours['median_ms']:.0f}", run.source, detail), ratio


def _bench_figures(sources: SiteSources, name: str) -> dict[str, Any]:
    run = sources.bench
    row = run.model(name) if run else None
    if run is None or row is None:
        return {"params": None, "gflops": None, "latency": {}, "latency_ratio": {}, "memory": None}
    ranks = {size: latency_ranking(run.data["models"], size).get(name) for size in TABLE_SIZES}
    latency: dict[str, Figure | None] = {}
    ratios: dict[str, float | None] = {}
    for size in TABLE_SIZES:
        found = _latency_figure(run, row, size)
        latency[size], ratios[size] = found if found else (None, None)
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
        "latency": latency,
        "latency_ratio": ratios,
        "latency_rank": {size: rank for size, rank in ranks.items() if rank is not None},
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
