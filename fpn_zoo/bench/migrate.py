"""Schema 1 -> 2: the results of ``benchmarks/bench_models.py`` in the structure ``fpn-zoo bench`` writes.

Every measured figure is kept. Version 1 had two parts: side-by-side ``pairs`` (interleaved, same weights on both
sides) and a ``models`` table (one process per model, plus a torchvision reference row, not interleaved). They map
to version 2 like this (docs/bench-results.md has the full rule):

* the detector pair (``fpn_r50_coco`` vs torchvision) -> latency rows of ``fpn_r50_coco`` (ratio and paired ratio as
  measured);
* the FPN pair and the zoo-width BiFPN pair -> ``necks`` rows; the BiFPN pair at effdet's resdet50 width ->
  ``extra_necks``;
* each models-table row -> a model entry whose latency row has the torchvision reference row of the same run as its
  ``reference`` (ratio = median / median; ``paired_ratio`` null: the two were not interleaved), unless a pair row
  already covers that combination (the table row is then kept under ``latency_models_table``);
* load times were not measured: ``load`` is null, ``settings.load_runs`` null.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fpn_zoo.bench.results import SCHEMA, SCHEMA_VERSION, BenchResultsError

__all__ = ["MIGRATION_NOTE", "migrate_v1"]

V1_REFERENCE_ROW = "torchvision:fasterrcnn_resnet50_fpn"
MIGRATION_NOTE = (
    "Migrated in memory from schema 1 (benchmarks/bench_models.py); the file is unchanged. Latency rows from the v1 "
    "pairs are interleaved and share weights with the reference (ratio and paired ratio as measured). Latency and "
    "memory rows from the v1 models table take their reference from the torchvision row measured in the same "
    "invocation, in its own process and not interleaved: ratio = median(ours) / median(reference), paired_ratio null. "
    "v1 params count ordinary BatchNorm's affine terms (v2 counts frozen BatchNorm, as torchvision). Load times were "
    "not measured in v1."
)
_TABLE_SOURCE = "v1 models table: ours and the reference row measured in separate processes of one run, not interleaved"
_PAIR_SOURCE = "v1 pairs: interleaved, same weights on both sides"


def _latency_row(size: str, prec: str, ours: dict[str, Any], ref: dict[str, Any] | None, **extra: Any) -> dict:
    ratio = ours["median_ms"] / ref["median_ms"] if ref else None
    return {
        "size": size, "batch": 1, "precision": prec, "channels_last": False, "compiled": False,
        "ours": ours, "reference": ref, "ratio": ratio, "paired_ratio": None,
        "throughput_img_s": 1000 / ours["median_ms"],
        "reference_throughput_img_s": 1000 / ref["median_ms"] if ref else None, **extra,
    }  # fmt: skip


def _pair_kind(comparison: str) -> str:
    if comparison.startswith("fpn_r50_coco vs torchvision"):
        return "detector"
    if comparison.startswith("FPN neck"):
        return "fpn"
    if comparison.startswith("BiFPN neck"):
        return "bifpn" if "zoo default" in comparison else "bifpn_other"
    return "unknown"


def _neck_row(kind: str, pair: dict[str, Any]) -> dict[str, Any]:
    check = pair.get("check", {})
    return {
        "neck": kind.removesuffix("_other"), "size": pair["size"],
        "reference_name": "torchvision.ops.FeaturePyramidNetwork" if kind == "fpn" else "effdet.efficientdet.BiFpn",
        "equivalent": bool(pair.get("outputs_match")), "ours": pair["ours"], "reference": pair["reference"],
        "ratio": pair["ratio"], "paired_ratio": pair.get("paired_ratio_median"),
        "max_abs_diff": check.get("max_abs_diff"), "gflops": pair["gflops"]["ours"],
        "reference_gflops": pair["gflops"]["reference"], "precision": pair.get("precision", "fp32"), "batch": 1,
        "comparison": pair["comparison"], "target": pair.get("target"), "meets_target": pair.get("meets_target"),
        "config": pair.get("config"), "source": _PAIR_SOURCE,
    }  # fmt: skip


def _memory(row: dict[str, Any], ref: dict[str, Any] | None, cuda: bool) -> dict[str, Any] | None:
    key = "peak_tensor_memory" if cuda else "peak_rss"
    if key not in row:
        return None
    ours = row[key]["increase_mib"]
    reference = ref[key]["increase_mib"] if ref and key in ref else None
    return {
        "size": row["size"], "method": row[key]["method"], "ours_mib": ours, "reference_mib": reference,
        "ratio": ours / reference if reference else None, "source": _TABLE_SOURCE,
    }  # fmt: skip


def _model_entry(name: str, backbone: str, neck: str) -> dict[str, Any]:
    return {
        "model": name, "backbone": backbone, "neck": neck, "dataset": name.rsplit("_", 1)[-1], "params": None,
        "gflops": {}, "latency": [], "memory": None, "load": None, "error": None,
    }  # fmt: skip


def migrate_v1(data: dict[str, Any], source: Path | str = "<memory>") -> dict[str, Any]:
    """The schema-2 form of a schema-1 results dict (see the module docstring for the rule).

    Raises:
        BenchResultsError: A v1 row this rule does not cover, named by its index.
    """
    settings, cuda = data.get("settings", {}), str(data.get("device", "cpu")).startswith("cuda")
    table = {row["name"]: row for row in data["models"]}
    ref_row = table.pop(V1_REFERENCE_ROW, None)
    if ref_row is not None and "error" in ref_row:
        ref_row = None
    models: dict[str, dict[str, Any]] = {}
    for name, row in table.items():
        if "error" in row:
            entry = _model_entry(name, "unknown", name.split("_", 1)[0])
            models[name] = {**entry, "latency": None, "gflops": None, "error": row["error"]}
            continue
        entry = _model_entry(name, row["backbone"].split()[0], row["neck"])
        mapped = ("name", "backbone", "neck", "params", "gflops", "latency", "size")
        entry.update(
            params=row["params"],
            gflops={row["size"]: row["gflops"]},
            memory=_memory(row, ref_row, cuda),
            params_convention="ordinary BatchNorm (affine terms counted)",
            v1_row={k: v for k, v in row.items() if k not in mapped},
        )
        for prec, ours in row["latency"].items():
            ref = ref_row["latency"].get(prec) if ref_row else None
            entry["latency"].append(_latency_row(row["size"], prec, ours, ref, source=_TABLE_SOURCE))
        models[name] = entry
    necks, extra_necks, detector_gflops = [], [], {}
    for i, pair in enumerate(data["pairs"]):
        kind = _pair_kind(str(pair.get("comparison")))
        if kind == "unknown":
            raise BenchResultsError(
                f"results file {source}: pairs[{i}].comparison {pair.get('comparison')!r} is not one schema 1 "
                "wrote (detector, FPN neck, BiFPN neck); it cannot be migrated"
            )
        if kind != "detector":
            (necks if kind in ("fpn", "bifpn") else extra_necks).append(_neck_row(kind, pair))
            continue
        entry = models.setdefault("fpn_r50_coco", _model_entry("fpn_r50_coco", "r50", "fpn"))
        size, prec = pair["size"], pair["precision"]
        detector_gflops[size] = pair["gflops"]["reference"]
        if entry["gflops"] is not None:
            entry["gflops"].setdefault(size, pair["gflops"]["ours"])
        row = {**_latency_row(size, prec, pair["ours"], pair["reference"]), "ratio": pair["ratio"],
               "paired_ratio": pair.get("paired_ratio_median"), "source": _PAIR_SOURCE, "check": pair.get("check"),
               "equivalent": pair.get("outputs_match")}  # fmt: skip
        for j, old in enumerate(entry["latency"]):
            if (old["size"], old["precision"]) == (size, prec):  # the pair is the better measurement of the two
                entry.setdefault("latency_models_table", []).append(entry["latency"].pop(j))
                break
        entry["latency"].append(row)
    if ref_row is not None:
        detector_gflops.setdefault(ref_row["size"], ref_row["gflops"])
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "migrated_from": 1, "migration_note": MIGRATION_NOTE,
        "date": data["date"], "command": data["command"], "quick": data["quick"], "device": data["device"],
        "machine": {"gpu": None, **data["machine"]}, "versions": data["versions"],
        "settings": {
            "sizes": settings["sizes"], "runs": settings["runs"], "warmup": settings["warmup"],
            "batches": [settings.get("batch", 1)], "precisions": settings["precisions"], "channels_last": [False],
            "compile": [False], "load_runs": None, "seed": settings["seed"], "score_thresh": settings["score_thresh"],
            "memory_size": settings["model_size"], "weights": settings["weights"],
            "v1": {k: v for k, v in settings.items() if k not in ("sizes", "runs", "warmup", "precisions", "seed")},
        },
        "references": {
            "detector": {"name": "torchvision.models.detection.fasterrcnn_resnet50_fpn",
                         "params": ref_row["params"] if ref_row else None, "gflops": detector_gflops,
                         "build": "v1: carrying fpn_r50_coco's weights (models table) or converted random "
                         "COCO_V1-layout weights shared with fpn_r50_coco (pairs)"},
            "fpn_neck": {"name": "torchvision.ops.FeaturePyramidNetwork"},
            "bifpn_neck": {"name": "effdet.efficientdet.BiFpn"},
        },
        "models": sorted(models.values(), key=lambda e: e["model"]),
        "necks": necks, "extra_necks": extra_necks, "total_wall_s": data.get("total_wall_s"),
    }  # fmt: skip
