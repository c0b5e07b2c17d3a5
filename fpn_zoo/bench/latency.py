"""The latency of every model of a run, at one input size, in one process: shuffled round-robin against the reference.

Timing each model in its own process next to the reference left the reference's own median anywhere between 787 and
1414 ms at 512x512 across processes, so rows could not be compared with each other. Here one long-lived process
holds every model of the run, each model's fast path and the reference; for each latency combination it warms all
of them up, then runs rounds in which each is called once, in a freshly shuffled order (``roundrobin``). Per round
the reference runs under the same conditions as every model, so ``model_i / reference_i`` is a fair ratio, and the
median of those ratios carries a confidence interval (``ranking.median_ci``) that says which rows can be ranked.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fpn_zoo.bench import references as refs
from fpn_zoo.bench.measure import precision, ratio, stats, sync
from fpn_zoo.bench.ranking import median_ci, paired_ratios
from fpn_zoo.bench.roundrobin import order_seed, time_round_robin
from fpn_zoo.bench.settings import SCORE_THRESH, BenchSettings, size_str

__all__ = ["REFERENCE_LABEL", "build_models", "combination_key", "fast_label", "measure_latency"]

REFERENCE_LABEL = "reference"


def fast_label(name: str) -> str:
    """The label of a model's fast path in the round orders.

    Examples:
        >>> fast_label("fpn_r50_coco")
        'fpn_r50_coco:fast'
    """
    return f"{name}:fast"


def combination_key(size: str, batch: int, precision: str, channels_last: bool, compiled: bool) -> str:
    """One latency combination as text, the suffix of its order seed.

    Examples:
        >>> combination_key("512x512", 1, "fp32", False, False)
        '512x512/b1/fp32/contiguous/eager'
    """
    return f"{size}/b{batch}/{precision}/{'channels_last' if channels_last else 'contiguous'}/" + (
        "compiled" if compiled else "eager"
    )


def build_models(name: str, s: BenchSettings, device: torch.device) -> dict[str, nn.Module]:
    """``{"ours": eager, "fast": fast path}`` of ``name`` (``fast`` only with ``s.fast``), from the same seeded weights.

    The weights go through an export folder, as in the per-model process, so the latency and the memory figures
    are of the same model a user with weights builds.
    """
    from fpn_zoo.factory import create_model
    from fpn_zoo.weights.checkpoint import save_checkpoint

    torch.manual_seed(s.seed)
    model = create_model(name, device="cpu")
    with tempfile.TemporaryDirectory(prefix="fpn_zoo_bench_latency_") as tmp:
        folder = save_checkpoint(model.state_dict(), model.config, Path(tmp) / "ours")
        del model
        kwargs: dict[str, Any] = {"weights": folder, "device": device, "box_score_thresh": SCORE_THRESH}
        models = {"ours": create_model(name, **kwargs)}
        if s.fast:
            models["fast"] = create_model(name, **kwargs, fast=True)
    return models


def _forward(model: nn.Module, batch: list[torch.Tensor], device: torch.device, prec: str) -> Any:
    def call() -> Any:
        with torch.inference_mode(), precision(device, prec):
            return model(batch)

    return call


def _model_rows(
    names: list[str], times: dict[str, list[float]], key: dict[str, Any], batch_size: int
) -> dict[str, dict[str, Any]]:
    """One latency row per model from the times of one combination's rounds."""
    reference_ms = times[REFERENCE_LABEL]
    reference = stats(reference_ms)
    rows = {}
    for name in names:
        ours = stats(times[name])
        ci = median_ci(paired_ratios(times[name], reference_ms))
        row = {
            **key, "ours": ours, "reference": reference, "ratio": ratio(ours, reference), "paired_ratio": ci.median,
            "paired_ratio_ci": ci.to_dict(), "throughput_img_s": batch_size * 1000 / ours["median_ms"],
            "reference_throughput_img_s": batch_size * 1000 / reference["median_ms"], "timing": "shared_process",
        }  # fmt: skip
        if fast_label(name) in times:
            fast_ms = times[fast_label(name)]
            fast, fast_ci = stats(fast_ms), median_ci(paired_ratios(fast_ms, reference_ms))
            vs_eager = median_ci(paired_ratios(fast_ms, times[name]))
            row.update(
                fast=fast,
                fast_ratio=ratio(fast, reference),
                fast_paired_ratio=fast_ci.median,
                fast_paired_ratio_ci=fast_ci.to_dict(),
                fast_vs_eager_paired_ratio=vs_eager.median,
                fast_vs_eager_paired_ratio_ci=vs_eager.to_dict(),
            )
        rows[name] = row
    return rows


def _compile_all(
    models: dict[str, nn.Module], batch: list[torch.Tensor], device: torch.device, prec: str
) -> tuple[dict[str, Any], dict[str, float]]:
    # A fresh compile per combination: graphs specialised on this shape and precision, as a user compiling for one
    # input size gets. Every model instance is its own set of guards, so the recompile limits must admit them all,
    # or dynamo would silently fall back to eager for the later models.
    torch._dynamo.reset()
    config, limit = torch._dynamo.config, 4 * len(models) + 8
    for names, wanted in (
        (("recompile_limit", "cache_size_limit"), limit),
        (("accumulated_recompile_limit", "accumulated_cache_size_limit"), 4 * limit),
    ):
        name = next((n for n in names if hasattr(config, n)), None)  # renamed across torch versions
        if name is not None:
            setattr(config, name, max(getattr(config, name), wanted))
    fns, seconds = {}, {}
    for label, model in models.items():
        fns[label] = _forward(torch.compile(model), batch, device, prec)
        start = time.perf_counter()
        fns[label]()  # the compilation, reported apart and never timed
        seconds[label] = time.perf_counter() - start
    return fns, seconds


def measure_latency(names: list[str], size: tuple[int, int], s: BenchSettings) -> dict[str, Any]:
    """Latency rows of every model in ``names`` at ``size``, for every combination of ``s``, in this one process.

    Returns:
        ``{"size", "rows": {model: [latency row, ...]}, "rounds": [record per combination]}``; each round record
        holds the combination, its ``order_seed`` and the timed rounds' ``orders`` (labels: model names,
        ``NAME:fast`` and ``reference``).
    """
    device = torch.device(s.device)
    models: dict[str, nn.Module] = {REFERENCE_LABEL: refs.coco_v1_detector(s.seed).to(device)}
    for name in names:
        built = build_models(name, s, device)
        models[name] = built["ours"]
        if "fast" in built:
            models[fast_label(name)] = built["fast"]
    for model in models.values():
        refs.set_input_size(model, size)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    rounds = []
    eager_labels = [REFERENCE_LABEL, *names]  # the fast paths chose their own memory format
    for channels_last in s.channels_last:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        for label in eager_labels:
            models[label].to(memory_format=fmt)
        for compiled in s.compile:
            for prec in s.precisions:
                for batch_size in s.batches:
                    batch = refs.images(size, batch_size, device, s.seed + 1)
                    key = {"size": size_str(size), "batch": batch_size, "precision": prec,
                           "channels_last": channels_last, "compiled": compiled}  # fmt: skip
                    seed = order_seed(s.seed, combination_key(**key))
                    compile_s: dict[str, float] = {}
                    if compiled:
                        fns, compile_s = _compile_all(models, batch, device, prec)
                    else:
                        fns = {label: _forward(m, batch, device, prec) for label, m in models.items()}
                    times, orders = time_round_robin(
                        fns, warmup=s.warmup, rounds=s.runs, seed=seed, sync=lambda: sync(device)
                    )
                    for name, row in _model_rows(names, times, key, batch_size).items():
                        if compiled:
                            row["compile_s"] = {"ours": compile_s[name], "reference": compile_s[REFERENCE_LABEL]}
                            if fast_label(name) in compile_s:
                                row["compile_s"]["fast"] = compile_s[fast_label(name)]
                        rows[name].append(row)
                    rounds.append({**key, "order_seed": seed, "warmup": s.warmup, "rounds": s.runs, "orders": orders})
    if True in s.compile:
        torch._dynamo.reset()
    return {"size": size_str(size), "rows": rows, "rounds": rounds}
