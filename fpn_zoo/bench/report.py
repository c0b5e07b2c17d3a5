"""The markdown tables ``fpn-zoo bench`` writes beside its results JSON (and prints)."""

from __future__ import annotations

from typing import Any

from fpn_zoo.bench.measure import markdown_table
from fpn_zoo.bench.ranking import NOISE_MARK, describe_violations, latency_ranking

__all__ = ["render_markdown"]


def _ms(stats: dict[str, Any] | None) -> str:
    return "" if stats is None else f"{stats['median_ms']:.1f}"


def _with_ratio(text: str, ratio: float | None) -> str:
    return text if ratio is None or not text else f"{text} ({ratio:.2f})"


_BASELINE = (1, "fp32", False, False)  # batch, precision, channels_last, compiled: the models table's columns


def _combo(row: dict[str, Any]) -> tuple[int, str, bool, bool]:
    return row["batch"], row["precision"], row["channels_last"], row["compiled"]


def _baseline_row(entry: dict[str, Any], size: str) -> dict[str, Any] | None:
    """The fp32, batch-1, eager, contiguous latency row at ``size``, if that combination was measured."""
    return next((r for r in entry.get("latency") or [] if r["size"] == size and _combo(r) == _BASELINE), None)


def _models_table(results: dict[str, Any]) -> str:
    sizes = results["settings"]["sizes"]
    header = ["model", "backbone", "neck", "params (M)", *(f"GFLOPs {s}" for s in sizes),
              *(f"ms {s} (ratio)" for s in sizes), *(f"fast ms {s} (ratio)" for s in sizes),
              f"peak MiB {results['settings']['memory_size']} (ratio)",
              "cold load ms (ratio)", "warm load ms (ratio)"]  # fmt: skip
    body = []
    for e in results["models"]:
        if e.get("error"):
            message = e["error"].replace("|", "/")[:160]
            body.append([e["model"], e["backbone"], e["neck"], f"error: {message}", *[""] * (len(header) - 4)])
            continue
        gflops = e.get("gflops") or {}
        latency = []
        for size in sizes:
            row = _baseline_row(e, size)
            latency.append(_with_ratio(_ms(row["ours"]), row["ratio"]) if row else "")
        for size in sizes:  # the fast path, same rounds; its ratio is to the reference too
            row = _baseline_row(e, size)
            latency.append(_with_ratio(_ms(row.get("fast")), row.get("fast_ratio")) if row else "")
        memory, load = e.get("memory"), e.get("load")
        body.append([
            e["model"], e["backbone"], e["neck"], "" if e["params"] is None else f"{e['params'] / 1e6:.2f}",
            *(f"{gflops[s]:.1f}" if s in gflops else "" for s in sizes), *latency,
            _with_ratio(f"{memory['ours_mib']:.0f}", memory["ratio"]) if memory else "",
            *(_with_ratio(_ms(load[t]["ours"]), load[t]["ratio"]) if load else "" for t in ("cold", "warm")),
        ])  # fmt: skip
    return markdown_table(header, body, "lll" + "r" * (len(header) - 3))


def _matrix_table(results: dict[str, Any]) -> str:
    header = ["model", "size", "batch", "precision", "channels_last", "compiled", "ours ms (median / IQR)",
              "reference ms (median / IQR)", "ratio", "paired ratio", "img/s ours", "img/s reference",
              "fast ms (median / IQR)", "fast / reference (paired)", "fast / eager (paired)"]  # fmt: skip
    body = []
    for e in results["models"]:
        for r in e.get("latency") or []:
            ref = r["reference"]
            body.append([
                e["model"], r["size"], str(r["batch"]), r["precision"], "on" if r["channels_last"] else "off",
                "on" if r["compiled"] else "off", f"{r['ours']['median_ms']:.1f} / {r['ours']['iqr_ms']:.1f}",
                "" if ref is None else f"{ref['median_ms']:.1f} / {ref['iqr_ms']:.1f}",
                "" if r["ratio"] is None else f"{r['ratio']:.3f}",
                "" if r["paired_ratio"] is None else f"{r['paired_ratio']:.3f}", f"{r['throughput_img_s']:.2f}",
                "" if r["reference_throughput_img_s"] is None else f"{r['reference_throughput_img_s']:.2f}",
                *_fast_cells(r),
            ])  # fmt: skip
    return markdown_table(header, body, "lrrlll" + "r" * 9)


def _fast_cells(row: dict[str, Any]) -> list[str]:
    """The fast path's median / IQR and paired ratios, empty for results that did not time it."""
    fast = row.get("fast")
    if fast is None:
        return ["", "", ""]
    return [
        f"{fast['median_ms']:.1f} / {fast['iqr_ms']:.1f}",
        f"{row['fast_paired_ratio']:.3f}",
        f"{row['fast_vs_eager_paired_ratio']:.3f}",
    ]


def _ranking_tables(results: dict[str, Any]) -> list[str]:
    parts = []
    for size in results["settings"]["sizes"]:
        eager = latency_ranking(results["models"], size)
        if not eager:
            continue
        fast = latency_ranking(results["models"], size, fast=True)
        body = []
        for ranked in sorted(eager.values(), key=lambda r: (r.median, r.key)):
            other = fast.get(ranked.key)
            body.append([
                ranked.rank_text, ranked.key, f"{ranked.median:.3f} [{ranked.low:.3f}, {ranked.high:.3f}]",
                "" if other is None else other.rank_text,
                "" if other is None else f"{other.median:.3f} [{other.low:.3f}, {other.high:.3f}]",
            ])  # fmt: skip
        header = ["rank", "model", "eager / reference, median [95% CI]", "fast rank", "fast / reference [95% CI]"]
        parts += [
            f"## Latency ranking at {size} (fp32, batch 1; every model in one process, shuffled rounds)",
            markdown_table(header, body, "rlrrr"),
        ]
    if parts:
        coverage = min(
            (r["paired_ratio_ci"]["coverage"] for e in results["models"] for r in e.get("latency") or []
             if r.get("paired_ratio_ci")), default=1.0,
        )  # fmt: skip
        short = (
            f" With {results['settings']['runs']} rounds no interval reaches 95%: [min, max] covers only "
            f"{coverage:.0%}; run at least 6 rounds (--runs) for a 95% interval."
            if coverage < 0.95
            else ""
        )
        parts.append(
            "Ratio = median over rounds of model_i / reference_i, the reference timed in the same round; the interval "
            f"is the distribution-free 95% CI of that median (order statistics). {NOISE_MARK}: the row's interval "
            f"overlaps a neighbour's, so their order is within noise. Rank = 1 + the models measurably faster (their "
            f"whole interval below the row's).{short}"
        )
    return parts


def _consistency_line(results: dict[str, Any]) -> list[str]:
    consistency = results.get("consistency")
    if not consistency or (not consistency.get("checked") and consistency.get("ok")):
        return []
    if consistency["ok"]:
        n = consistency["checked"]
        return [f"Consistency check passed: {n} comparison{'s' * (n != 1)} of a model with one it contains."]
    lines = "\n".join(f"- {v['message']}" for v in consistency["violations"])
    return [
        f"**FLAGGED: {describe_violations(consistency)}.** A model that computes all of another and more ran "
        "faster than it beyond the intervals: the machine was too noisy to rank these models; rerun on a quiet "
        "machine. `fpn-zoo docs` refuses this file.",
        lines,
    ]


def _necks_table(results: dict[str, Any]) -> str:
    header = ["neck", "size", "reference", "same function (max abs diff)", "ours ms (median / IQR)",
              "reference ms (median / IQR)", "ratio", "paired ratio", "GFLOPs ours / reference"]  # fmt: skip
    body = []
    for r in results["necks"]:
        same = "no: cost baseline" if not r["equivalent"] else f"yes ({r['max_abs_diff']:.1e})"
        body.append([
            r["neck"], r["size"], r["reference_name"], same,
            f"{r['ours']['median_ms']:.1f} / {r['ours']['iqr_ms']:.1f}",
            f"{r['reference']['median_ms']:.1f} / {r['reference']['iqr_ms']:.1f}", f"{r['ratio']:.3f}",
            "" if r["paired_ratio"] is None else f"{r['paired_ratio']:.3f}",
            f"{r['gflops']:.1f} / {r['reference_gflops']:.1f}",
        ])  # fmt: skip
    return markdown_table(header, body, "llll" + "r" * 5)


def _cold_not_evicted(entry: dict[str, Any]) -> bool:
    fractions = ((entry.get("load") or {}).get("cold") or {}).get("max_resident_fraction_after_evict") or {}
    return any(f is not None and f > 0.05 for f in fractions.values())


def _reference_line(results: dict[str, Any]) -> str:
    detector = results["references"]["detector"]
    if detector.get("params") is None:
        return f"Reference detector: {detector['name']} (its parameters and FLOPs could not be counted)."
    gflops = ", ".join(f"{v:.1f} at {k}" for k, v in (detector.get("gflops") or {}).items())
    medians = [r["reference"]["median_ms"] for e in results["models"] for r in e.get("latency") or []
               if r["reference"] is not None and (r["precision"], r["batch"], r["compiled"]) == ("fp32", 1, False)
               and not r["channels_last"] and r["size"] == results["settings"]["memory_size"]]  # fmt: skip
    spread = ""
    if medians:
        size = results["settings"]["memory_size"]
        spread = f" Its fp32 median at {size} ranged from {min(medians):.0f} to {max(medians):.0f} ms across the runs."
    shared = any(r.get("timing") == "shared_process" for e in results["models"] for r in e.get("latency") or [])
    if shared:  # one process per size: one set of reference timings that every model's rounds share
        return (
            f"Reference detector: `{detector['name']}`, {detector['params'] / 1e6:.2f} M params, GFLOPs {gflops}; it "
            "is timed in every round, in the same process as all the models of each size, in a shuffled order."
        )
    return (
        f"Reference detector: `{detector['name']}`, {detector['params'] / 1e6:.2f} M params, GFLOPs {gflops}; it is "
        f"timed next to every model, interleaved, in the same process.{spread}"
    )


def render_markdown(results: dict[str, Any], *, source: str = "the results JSON") -> str:
    """The tables of a schema-2 results dict: models, (with several combinations) the latency matrix, and necks.

    Examples:
        >>> from fpn_zoo.bench.results import load_results
        >>> text = render_markdown(load_results("docs/results/bench-cpu-20261121.json"))  # doctest: +SKIP
    """
    m, v, s = results["machine"], results["versions"], results["settings"]
    quick = " (QUICK smoke test, not reportable)" if results.get("quick") else ""
    parts = [
        f"# fpn-zoo bench, {results['date']}{quick}",
        f"{m['processor']}, {m['cpu_count']} CPUs, GPU {m.get('gpu') or 'none'}, torch {v['torch']} with "
        f"{m['torch_num_threads']} threads, device {results['device']}, fpn-zoo {v['fpn-zoo']} "
        f"(commit {(v.get('fpn_zoo_commit') or 'unknown')[:12]}). {s['weights']}",
        _reference_line(results),
        f"## Models (fp32, batch 1, eager; median of {s['runs']} interleaved runs after {s['warmup']} warm-up)",
        _models_table(results),
        "ratio = median(ours) / median(reference) in the same process: below 1 means ours is faster or smaller. "
        "Reference: torchvision fasterrcnn_resnet50_fpn for the detector columns. Peak MiB: "
        + ("torch.cuda.max_memory_allocated" if results["device"].startswith("cuda") else "peak RSS increase")
        + " of one forward. Load: create_model(name, weights=DIR) against fasterrcnn_resnet50_fpn + load_state_dict"
        "(torch.load(PTH)); cold = file evicted from the page cache.",
    ]
    parts += _ranking_tables(results) + _consistency_line(results)
    if any(_combo(r) != _BASELINE for e in results["models"] for r in e.get("latency") or []):
        parts += ["## Latency matrix", _matrix_table(results)]
    not_cold = [e["model"] for e in results["models"] if _cold_not_evicted(e)]
    if not_cold:
        parts.append(
            f"WARNING: the weights files stayed in the page cache after eviction for {', '.join(not_cold)} (tmpfs?), "
            "so their cold loads were warm; set TMPDIR to a folder on disk and re-run."
        )
    if results["necks"]:
        parts += [
            "## Necks (fp32, batch 1, random ResNet-50 C2-C5 maps)",
            _necks_table(results),
            "fpn and bifpn compute the same function as their reference (weights copied, outputs compared); panet "
            "and augfpn have no equivalent, so torchvision's FPN is only a cost baseline for them.",
        ]
    total = results.get("total_wall_s")
    parts.append(f"Total {total / 60:.1f} min. Raw timings: {source}." if total else f"Raw timings: {source}.")
    return "\n\n".join(parts) + "\n"
