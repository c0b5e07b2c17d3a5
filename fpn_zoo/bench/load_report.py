"""The summaries, ratios and markdown report of ``fpn-zoo bench load``, computed from its raw runs.

Pure functions of the results dictionary, so a report can be rebuilt from a results file without measuring again.
"""

from __future__ import annotations

import statistics
from typing import Any

from fpn_zoo.bench.load_child import MODEL
from fpn_zoo.bench.measure import markdown_table
from fpn_zoo.bench.measure import summarize_values as _stats  # figures in MiB and ms alike

__all__ = ["OURS_CALL", "TARGETS", "TV_CALL", "WEIGHTS_NOTE", "ratios", "report", "side_summary", "verdict"]

TARGETS = {"wall_ratio": 0.6, "peak_rss_ratio": 1.1}
WEIGHTS_NOTE = (
    "The checkpoint is torchvision's fasterrcnn_resnet50_fpn random initialisation (seeded), not COCO weights: none "
    "can be downloaded here. It has the same tensor names, shapes, dtypes and file size as the COCO_V1 .pth, and the "
    "conversion renames without changing values, so load times and memory do not depend on the values."
)
TIMM_IMPORT = "timm (deferred import of create_model)"  # the label load_child.py gives it
OURS_CALL = f'fpn_zoo.create_model("{MODEL}", pretrained=True, device=DEVICE)'
TV_CALL = "fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None) + load_state_dict(torch.load(PTH))"


def side_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / min / IQR ... of every figure of one side's runs (``summarize_values``), phases in call order."""
    phases: dict[str, list[float]] = {}
    order = list(dict.fromkeys([label for run in runs for label in [*run.get("phase_order", []), *run["phases"]]]))
    for run in runs:
        for label, p in run["phases"].items():
            phases.setdefault(label, []).append(p["ms"])
    return {
        "wall_ms": _stats([r["wall_ms"] for r in runs]),
        "process_peak_rss_mib": _stats([r["rss"]["process_peak_rss_mib"] for r in runs]),
        "peak_rss_increase_mib": _stats([r["rss"]["increase_mib"] for r in runs]),
        "baseline_rss_mib": _stats([r["rss"]["baseline_mib"] for r in runs]),
        "ru_maxrss_after_load_mib": _stats([r["ru_maxrss_after_load_mib"] for r in runs]),
        "ru_maxrss_mib": _stats([r["ru_maxrss_mib"] for r in runs]),
        "import_ms": _stats([r["import_total_ms"] for r in runs]),
        "import_plus_load_ms": _stats([r["import_total_ms"] + r["wall_ms"] for r in runs]),
        "load_plus_touch_ms": _stats([r["load_plus_touch_ms"] for r in runs]),
        "touch_ms": _stats([r["touch_ms"] for r in runs]),
        "resident_process_peak_rss_mib": _stats([r["resident"]["process_peak_rss_mib"] for r in runs]),
        "resident_increase_mib": _stats([r["resident"]["increase_mib"] for r in runs]),
        "rss_file_after_load_mib": _stats([r["rss_after_load_mib"]["RssFile"] for r in runs]),
        "rss_file_after_touch_mib": _stats([r["resident"]["rss_after_touch_mib"]["RssFile"] for r in runs]),
        "imports_ms_by_step": {k: _stats([r["imports_ms"][k] for r in runs]) for k in runs[0]["imports_ms"]},
        "phase_calls": {label: max(r["phases"][label]["calls"] for r in runs if label in r["phases"])
                        for label in phases},
        "phases_ms": {label: _stats(phases[label]) for label in order if label in phases},
        "modules_imported_during_load": sorted({m for r in runs for m in r["modules_imported_during_load"]}),
        **({"first_detection_ms": _stats([r["first_detection_ms"] for r in runs])} if "first_detection_ms" in runs[0]
           else {}),
    }  # fmt: skip


def ratios(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> dict[str, float]:
    """Ours / torchvision of the medians, and paired (median over rounds of ours_i / torchvision_i)."""

    def med(runs: list[dict[str, Any]], get: Any) -> float:
        return statistics.median(get(r) for r in runs)

    def wall(r: dict[str, Any]) -> float:
        return r["wall_ms"]

    def peak(r: dict[str, Any]) -> float:
        return r["rss"]["process_peak_rss_mib"]

    def inc(r: dict[str, Any]) -> float:
        return r["rss"]["increase_mib"]

    def touched(r: dict[str, Any]) -> float:
        return r["load_plus_touch_ms"]

    def resident(r: dict[str, Any]) -> float:
        return r["resident"]["process_peak_rss_mib"]

    return {
        "wall": med(ours, wall) / med(ref, wall),
        "wall_paired_median": statistics.median(wall(a) / wall(b) for a, b in zip(ours, ref, strict=True)),
        "peak_rss": med(ours, peak) / med(ref, peak),
        "peak_rss_paired_median": statistics.median(peak(a) / peak(b) for a, b in zip(ours, ref, strict=True)),
        "peak_rss_increase": med(ours, inc) / med(ref, inc),
        "import_plus_load": med(ours, lambda r: r["import_total_ms"] + wall(r))
        / med(ref, lambda r: r["import_total_ms"] + wall(r)),
        "resident_wall": med(ours, touched) / med(ref, touched),
        "resident_wall_paired_median": statistics.median(
            touched(a) / touched(b) for a, b in zip(ours, ref, strict=True)
        ),
        "resident_peak_rss": med(ours, resident) / med(ref, resident),
        "resident_increase": med(ours, lambda r: r["resident"]["increase_mib"])
        / med(ref, lambda r: r["resident"]["increase_mib"]),
    }


# ---------------------------------------------------------------------------------------------------------- report


def _msr(s: dict[str, Any], fmt: str = ".0f") -> str:
    return f"{s['median']:{fmt}} / {s['min']:{fmt}} / {s['iqr']:{fmt}}"


def _cell(phases: dict[str, Any], label: str) -> str:
    return f"{phases[label]['median']:.1f}" if label in phases else "-"


def report(results: dict[str, Any]) -> str:
    """The markdown report of a results dictionary (the ``.md`` beside the JSON)."""
    w, r = results["warm"], results["warm"]["ratios"]
    ours, tv, always = w["ours"], w["torchvision"], w["verify_always"]
    verdict = results["verdict"]
    n, dev = results["settings"]["repeats"], results["device"]
    machine, versions = results["machine"], results["versions"]
    cold, sha = results["cold"], results["sha256"]
    warm_phases, warm_calls = results["phase_runs"]["warm"], results["phase_runs"]["warm_calls"]
    st, pth = sha["safetensors"], sha["pth"]
    costs_table = markdown_table(
        ["measurement", "ms, median / min / IQR", "n", "notes"],
        [
            ["cold load: fresh caches, download (loopback HTTP) + sha256 + convert + load",
             _msr(cold["wall_ms"]), str(cold["wall_ms"]["n"]),
             f"peak RSS {cold['process_peak_rss_mib']['median']:.0f} MiB; sha256_file calls per cold load: "
             f"{cold['sha256_calls']} (phases below)"],
            [f"sha256 of the converted model.safetensors ({st['size_bytes'] / 1e6:.0f} MB): what a warm load "
             "skips", _msr(st["ms"]), str(st["ms"]["n"]), f"{st['mb_per_s']:.0f} MB/s, file in the page cache"],
            [f"sha256 of the upstream .pth ({pth['size_bytes'] / 1e6:.0f} MB)", _msr(pth["ms"]),
             str(pth["ms"]["n"]), f"{pth['mb_per_s']:.0f} MB/s"],
            ["the check that replaces it on the warm path: stat + verification record (`is_recorded`)",
             _msr(sha["record_check_ms"], ".3f"), str(sha["record_check_ms"]["n"]),
             f"record in `$FPN_ZOO_CACHE/verified/`, recorded={sha['record_check_recorded']}"],
            ["warm load with `FPN_ZOO_VERIFY=always` (hash on every load)", _msr(always["wall_ms"]),
             str(always["wall_ms"]["n"]),
             f"ratio to torchvision {r['verify_always_vs_torchvision']:.3f}; to the default warm load "
             f"{r['verify_always_vs_ours']:.3f}; peak RSS {always['process_peak_rss_mib']['median']:.0f} MiB"],
            *[[f"torchvision: {label}", _msr(s), str(s["n"]), ""] for label, s in tv["phases_ms"].items()],
        ],
        "lrrl",
    )  # fmt: skip
    phases_table = markdown_table(
        ["phase (indented = inside the unindented one above)", "warm ms", "warm calls", "cold ms", "cold calls"],
        [
            ["↳" * ((len(label) - len(label.lstrip())) // 2) + " " * (label != label.lstrip()) + label.strip(),
             _cell(warm_phases, label), str(warm_calls.get(label, "-")),
             _cell(cold["phases_ms"], label), str(cold["phase_calls"].get(label, "-"))]
            for label in results["phase_runs"]["order"]
        ] + [["total (create_model)", f"{results['phase_runs']['warm_total_ms']['median']:.1f}", "",
              f"{cold['wall_ms']['median']:.1f}", ""]],
        "lrrrr",
    )  # fmt: skip
    warm_table = markdown_table(
        ["", f"ours: `{OURS_CALL}`", f"torchvision: `{TV_CALL}`", "ratio (paired)", "target", "result"],
        [
            ["wall ms, median / min / IQR", _msr(ours["wall_ms"]), _msr(tv["wall_ms"]),
             f"{r['wall']:.3f} ({r['wall_paired_median']:.3f})", f"<= {TARGETS['wall_ratio']}",
             verdict["wall_ratio"]],
            ["process peak RSS MiB, median / min / IQR", _msr(ours["process_peak_rss_mib"]),
             _msr(tv["process_peak_rss_mib"]), f"{r['peak_rss']:.3f} ({r['peak_rss_paired_median']:.3f})",
             f"<= {TARGETS['peak_rss_ratio']}", verdict["peak_rss_ratio"]],
            ["peak RSS increase over the post-import baseline MiB", _msr(ours["peak_rss_increase_mib"]),
             _msr(tv["peak_rss_increase_mib"]), f"{r['peak_rss_increase']:.3f}", "", ""],
            ["post-import baseline RSS MiB (median)", f"{ours['baseline_rss_mib']['median']:.0f}",
             f"{tv['baseline_rss_mib']['median']:.0f}", "", "", ""],
            ["imports before the timed region, ms (not timed)", _msr(ours["import_ms"]), _msr(tv["import_ms"]),
             "", "", ""],
            ["imports + load, ms", _msr(ours["import_plus_load_ms"]), _msr(tv["import_plus_load_ms"]),
             f"{r['import_plus_load']:.3f}", "", ""],
            ["weights resident: load + read every tensor byte, ms", _msr(ours["load_plus_touch_ms"]),
             _msr(tv["load_plus_touch_ms"]), f"{r['resident_wall']:.3f} ({r['resident_wall_paired_median']:.3f})",
             f"<= {TARGETS['wall_ratio']}", verdict["resident_wall_ratio"]],
            ["weights resident: process peak RSS MiB", _msr(ours["resident_process_peak_rss_mib"]),
             _msr(tv["resident_process_peak_rss_mib"]), f"{r['resident_peak_rss']:.3f}",
             f"<= {TARGETS['peak_rss_ratio']}", verdict["resident_peak_rss_ratio"]],
            ["weights resident: peak RSS increase over the baseline MiB", _msr(ours["resident_increase_mib"]),
             _msr(tv["resident_increase_mib"]), f"{r['resident_increase']:.3f}", "", ""],
            ["file-backed RSS (RssFile) after the load / after reading the weights, MiB (median)",
             f"{ours['rss_file_after_load_mib']['median']:.0f} / {ours['rss_file_after_touch_mib']['median']:.0f}",
             f"{tv['rss_file_after_load_mib']['median']:.0f} / {tv['rss_file_after_touch_mib']['median']:.0f}",
             "", "", ""],
            *([["time to first detection ms (480x640)", _msr(ours["first_detection_ms"]),
                _msr(tv["first_detection_ms"]), "", "", ""]] if "first_detection_ms" in ours else []),
        ],
        "lrrrrl",
    )  # fmt: skip
    lines = [
        f"# fpn_zoo load benchmark, {results['date']}{' (QUICK smoke check, not reportable)' * results['quick']}",
        "",
        f"Command: `{' '.join(results['command'])}`",
        "",
        f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs (affinity {machine['cpu_affinity']}), "
        f"load average at start {', '.join(f'{x:.2f}' for x in machine['load_average_at_start'] or [])}, at the "
        f"end {', '.join(f'{x:.2f}' for x in machine.get('load_average_at_end') or [])}; "
        f"{machine['platform']}. Device {dev}, torch threads {results['settings']['threads']} on both sides.",
        "",
        f"Versions: python {versions['python']}, torch {versions['torch']}, torchvision {versions['torchvision']}, "
        f"timm {versions['timm']}, safetensors {versions.get('safetensors')}, fpn-zoo {versions['fpn-zoo']}, "
        f"commit `{versions['fpn_zoo_commit']}`.",
        "",
        f"Weights: {WEIGHTS_NOTE} File: `{results['checkpoint']['filename']}`, "
        f"{results['checkpoint']['size_bytes'] / 1e6:.1f} MB, {results['checkpoint']['tensors']} tensors.",
        "",
        f"## Warm cache (median of {n} fresh processes per side, interleaved)",
        "",
        warm_table,
        "",
        "Imports before the timed region (median ms): "
        + "; ".join(
            f"{side}: " + ", ".join(f"{k} {v['median']:.0f}" for k, v in w[key]["imports_ms_by_step"].items())
            for side, key in (("ours", "ours"), ("torchvision", "torchvision"))
        )
        + ". Modules still imported inside the timed load: ours "
        + (", ".join(f"`{m}`" for m in ours["modules_imported_during_load"]) or "none")
        + "; torchvision "
        + (", ".join(f"`{m}`" for m in tv["modules_imported_during_load"]) or "none")
        + ".",
        "",
    ]
    lines += [
        "## The sha256 and the other paths",
        "",
        costs_table,
        "",
        f"## Where fpn_zoo's load spends its time (phase runs with timing wrappers, median of "
        f"{results['phase_runs']['warm_runs']} warm and {cold['wall_ms']['n']} cold)",
        "",
        phases_table,
        "",
    ]
    check = results["check"]
    lines += [
        "## Like for like",
        "",
        f"- Same function: state dicts equal tensor for tensor = {check['state_dict_tensors_equal']}; "
        f"{check['image']}: {check['detections']['ours']} / {check['detections']['torchvision']} detections, "
        f"max abs diff boxes {check['max_abs_diff']['boxes']}, scores {check['max_abs_diff']['scores']}, same labels "
        f"{check['same_labels']} -> **{'match' if check['match'] else 'NO MATCH'}**.",
        "- torchvision pays, ours does not: the random initialisation of all 41.8 M parameters (kaiming/normal "
        "init of every conv and linear) before they are overwritten, and a second full copy of the weights "
        "(`torch.load` materialises the state dict, `load_state_dict` copies it into the model's own tensors).",
        "- Ours pays, torchvision does not: the manifest lookup and the stat of the cached file against its "
        "verification record, reading config.json, a strict name/shape check against a meta-device build, "
        "and timm's model construction (on the meta device: no memory, no init). Its timm import "
        f"({ours['imports_ms_by_step'][TIMM_IMPORT]['median']:.0f} ms here) runs before the timed region, like "
        "torch's; `imports + load` includes it.",
        f"- The sha256 of the {st['size_bytes'] / 1e6:.0f} MB file ({st['ms']['median']:.0f} ms here) is paid once "
        "per file: after a download and after the conversion, fpn_zoo records the full digest with the file's "
        "real path, size, mtime and inode in `$FPN_ZOO_CACHE/verified/`. Warm loads compare a stat of the file with "
        "that record; any rewrite of the file changes them and triggers a new hash. `FPN_ZOO_VERIFY=always` "
        "hashes on every load.",
        "- Peak RSS is the kernel's VmHWM of the measuring process (imports included); the increase is VmHWM, reset "
        "through /proc/self/clear_refs after the imports, minus VmRSS after malloc_trim. `getrusage(RUSAGE_SELF)."
        "ru_maxrss` right after the load agrees (median ours "
        f"{ours['ru_maxrss_after_load_mib']['median']:.0f}, torchvision "
        f"{tv['ru_maxrss_after_load_mib']['median']:.0f} MiB); on Linux it can also carry a parent's peak through "
        "exec, which is why VmHWM is the figure used.",
        f"- safetensors {versions.get('safetensors')} `load_file` maps the file copy-on-write instead of reading it, "
        "so when `create_model` returns the weights are file-backed pages that the first forward faults in (the "
        "RssFile row). The *weights resident* rows read every tensor byte after the load on both sides (the same "
        "sums), comparing models ready to run. Mapped pages are shared with the page cache and can be dropped "
        "under memory pressure; writing a weight (fine-tuning) copies its page.",
        "- Both files are in the page cache when timed (warm cache); a cold disk would add the read of 167 MB to "
        "torchvision's load and to ours when the weights are first used.",
    ]
    if results["device"].startswith("cuda"):
        lines.append("- CUDA: time to first detection = one forward of a 480x640 image after the load, synchronised.")
    lines += [
        "",
        f"Targets: wall ratio <= {TARGETS['wall_ratio']}: **{verdict['wall_ratio']}**; peak RSS ratio <= "
        f"{TARGETS['peak_rss_ratio']}: **{verdict['peak_rss_ratio']}**. With the weights resident (read once after "
        f"the load): wall **{verdict['resident_wall_ratio']}**, peak RSS **{verdict['resident_peak_rss_ratio']}**.",
    ]
    return "\n".join(lines) + "\n"


def verdict(r: dict[str, float]) -> dict[str, str]:
    """``PASS`` or ``MISS`` per target, for the ratios ``r`` of the warm runs.

    Examples:
        >>> verdict({"wall": 0.5, "peak_rss": 1.2, "resident_wall": 0.7, "resident_peak_rss": 1.0})["peak_rss_ratio"]
        'MISS'
    """
    return {
        "wall_ratio": "PASS" if r["wall"] <= TARGETS["wall_ratio"] else "MISS",
        "peak_rss_ratio": "PASS" if r["peak_rss"] <= TARGETS["peak_rss_ratio"] else "MISS",
        # The same targets with the weights read into memory (safetensors maps the file lazily): informative.
        "resident_wall_ratio": "PASS" if r["resident_wall"] <= TARGETS["wall_ratio"] else "MISS",
        "resident_peak_rss_ratio": "PASS" if r["resident_peak_rss"] <= TARGETS["peak_rss_ratio"] else "MISS",
    }
