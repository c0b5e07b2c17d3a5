"""The summaries, ratios, verdict and markdown report of ``fpn-zoo bench train``, computed from its raw runs.

Pure functions of the recorded runs, so ``fpn-zoo bench train --replay`` can rebuild a report without measuring.
"""

from __future__ import annotations

import statistics
from typing import Any

from fpn_zoo.bench.measure import markdown_table, summarize_values

__all__ = ["LABELS", "TARGET_RATIO", "analyse", "measured", "report", "stats", "summarize_side"]

TARGET_RATIO = 0.95
LABELS = {
    "ours": "ours: fpn_zoo engine, Trainer.fit()",
    "torchvision": "torchvision fasterrcnn_resnet50_fpn, plain loop",
    "ddp": "ours under torchrun",
}
FACT_KEYS = ("params", "trainable_params", "norm_layers", "rpn_post_nms_top_n_train", "roi_batch_size_per_image",
             "min_size", "max_size")  # fmt: skip


def stats(values: list[float]) -> dict[str, float | int]:
    """``summarize_values`` plus the relative spread ((max - min) / median) of ``values``.

    Examples:
        >>> stats([1.0, 2.0, 3.0])["spread"]
        1.0
    """
    s = summarize_values(values)
    return {**s, "spread": (s["max"] - s["min"]) / s["median"] if s["median"] else float("nan")}


def measured(run: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Images/s over the measured steps of one run (after ``warmup``): total images / total step time."""
    steps = run["step_s"][warmup:]
    images = run["images_per_step"] * len(steps)
    return {"images": images, "seconds": sum(steps), "images_per_s": images / sum(steps)}


def summarize_side(runs: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """One side's figures over its runs: images/s per round and their summary, step and data-only times."""
    per_round = [measured(r, warmup)["images_per_s"] for r in runs]
    step_s = [s for r in runs for s in r["step_s"][warmup:]]
    data_ms = [1e3 * s for r in runs for s in r["data_only_s"][1:]]  # the first batch builds the iterator
    return {
        "images_per_s_per_round": per_round,
        "images_per_s": stats(per_round),
        "measured_step_s": stats(step_s),
        "warmup_step_s": [r["step_s"][:warmup] for r in runs],
        "data_only_ms_per_batch": stats(data_ms) if data_ms else None,
        "setup_s": stats([r["setup_s"] for r in runs]),
        "losses_finite": all(v == v and abs(v) != float("inf") for r in runs for v in r["losses"]),
        "world_size": runs[0]["world_size"],
        "images_per_step": runs[0]["images_per_step"],
        "threads_per_process": runs[0]["torch_num_threads"],
        "timing_source": runs[0]["timing_source"],
        "data_pipeline": runs[0]["data_pipeline"],
    }


def analyse(
    results: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    rounds: list[dict[str, Any]],
    warmup: int,
    omp_wait_policy: str,
) -> None:
    """Summaries, ratios, verdict, like-for-like check and notes, added to ``results``."""
    sides = list(runs)
    summary = {side: summarize_side(side_runs, warmup) for side, side_runs in runs.items()}
    for side in sides:
        summary[side]["model"] = runs[side][0]["model"]

    def ratio(a: str, b: str) -> tuple[float, float, list[float]]:
        pairs = zip(summary[a]["images_per_s_per_round"], summary[b]["images_per_s_per_round"], strict=True)
        per_round = [x / y for x, y in pairs]
        return (
            summary[a]["images_per_s"]["median"] / summary[b]["images_per_s"]["median"],
            statistics.median(per_round),
            per_round,
        )

    main_ratio, paired, per_round = ratio("ours", "torchvision")
    ratios: dict[str, Any] = {
        "ours_vs_torchvision": main_ratio,
        "ours_vs_torchvision_paired": paired,
        "ours_vs_torchvision_per_round": per_round,
    }
    if "ddp" in runs:
        d, dp, dr = ratio("ddp", "ours")
        ratios.update(ddp_vs_one_process=d, ddp_vs_one_process_paired=dp, ddp_vs_one_process_per_round=dr)
    facts = [{k: runs[side][0]["model"][k] for k in FACT_KEYS} for side in sides]
    results.update(
        summary=summary,
        ratios=ratios,
        rounds=rounds,
        target={"ours_vs_torchvision_min": TARGET_RATIO},
        verdict="PASS" if main_ratio >= TARGET_RATIO else "MISS",
        check={
            "same_architecture": all(f == facts[0] for f in facts),
            "model_facts": dict(zip(sides, facts, strict=True)),
            "losses_finite": all(summary[side]["losses_finite"] for side in sides),
        },
        runs={side: side_runs for side, side_runs in runs.items()},
    )
    results["notes"] = [
        "ours is timed by the engine itself: log_every=1, and each train line's images_per_s covers the window "
        "since the previous line (batch fetch + host-to-device + `_step`); the log write falls between windows and "
        "the end-of-run checkpoint and `final/` export come after the last one (`fit_outside_windows_s` in the "
        "JSON). torchvision's loop is timed per step the same way, batch fetch included.",
        "Both sides start from random weights (each its own initialisation, same seed) and see the BCCD images "
        "in their own shuffled order; all images have the same size, so every step computes on 2 images of the "
        "same resized size. In training the RoI head always samples 512 RoIs per image, so the random weights "
        "barely change the cost.",
        "The engine does per step what the plain loop does, plus: `SeededSamples` (fork_rng + manual_seed per "
        "sample), a `GroupedBatchSampler` over a `DistributedSampler`, `torch.isfinite(loss)` and `.item()` of "
        "every loss, `GradScaler` and the LR scheduler (no-ops and a few scalar ops here). `data only` times the "
        "data pipeline alone (no model), per batch.",
        f"OMP_WAIT_POLICY={omp_wait_policy}: on a loaded machine, libgomp's default spin-waiting makes each "
        "2-thread parallel region wait for a descheduled thread; in a probe on this machine under another "
        "training job a step took 13-17 s with the default and 3.4-4.6 s with PASSIVE (same model, same size). "
        "The setting applies to both sides alike; with one thread per process (DDP) it changes nothing.",
        "Nothing else ran on purpose, but the machine was shared (see the load averages): absolute images/s "
        "are only meaningful next to the other side of the same round.",
    ]


# ---------------------------------------------------------------------------------------------------------- report


def _f(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def _ips_cells(side: dict[str, Any]) -> list[str]:
    ips = side["images_per_s"]
    return [_f(ips["median"], 3), f"{_f(ips['min'], 3)} - {_f(ips['max'], 3)}"]


def report(results: dict[str, Any]) -> str:
    """The markdown report of an analysed results dictionary (the ``.md`` beside the JSON)."""
    s, settings, machine = results["summary"], results["settings"], results["machine"]
    warmup = settings["warmup_steps"]
    quick = " (QUICK smoke check, not reportable)" * results["quick"]
    lines = [
        f"# fpn_zoo training throughput benchmark, {results['date']}{quick}",
        "",
        f"- Machine: {machine['processor']}, {machine['cpu_count']} CPUs (affinity {machine['cpu_affinity']}), "
        f"{machine['platform']}; load average (1/5/15 min) at start "
        + "/".join(f"{v:.2f}" for v in machine["load_average_at_start"])
        + ", at end "
        + "/".join(f"{v:.2f}" for v in machine["load_average_at_end"] or [float("nan")] * 3)
        + ".",
        f"- Versions: Python {results['versions']['python']}, torch {results['versions']['torch']}, torchvision "
        f"{results['versions']['torchvision']}, timm {results['versions']['timm']}, fpn-zoo "
        f"{results['versions']['fpn-zoo']}, commit {results['versions']['fpn_zoo_commit']}.",
        f"- Data: {settings['data']} ({settings['train_images']} images), batch {settings['batch_size']} per process, "
        f"image size min {settings['min_size']} / max {settings['max_size']} (the model's own resize), hflip "
        f"{settings['hflip']}, SGD lr {settings['lr']} momentum 0.9 wd {settings['weight_decay']}, random init "
        f"(seed {settings['seed']}), {settings['workers']} data workers.",
        f"- Each run: {warmup} warm-up + {settings['measured_steps']} measured steps in a fresh process; "
        f"{settings['rounds']} interleaved rounds ({settings['interleaving']}). Threads: "
        f"{settings['threads']} per single process, 1 per DDP process; OMP_WAIT_POLICY "
        f"{settings['omp_wait_policy']}.",
        "",
        "## Engine vs torchvision's plain loop (1 process)",
        "",
    ]
    rows = []
    for side in ("ours", "torchvision"):
        x = s[side]
        ips, step, data = x["images_per_s"], x["measured_step_s"], x["data_only_ms_per_batch"]
        rows.append([
            LABELS[side], _f(ips["median"], 3), f"{_f(ips['min'], 3)} - {_f(ips['max'], 3)}",
            f"{100 * ips['spread']:.0f} %", f"{_f(step['median'])} ({_f(step['iqr'])})",
            f"{_f(data['median'], 1)}" if data else "-", _f(x["setup_s"]["median"], 1),
        ])  # fmt: skip
    lines.append(markdown_table(
        ["side", "images/s, median of rounds", "min - max", "spread", "step s, median (IQR)",
         "data only, ms/batch", "setup s"], rows, "lrrrrrr"))  # fmt: skip
    r = results["ratios"]
    lines += [
        "",
        f"**Ratio ours / torchvision (medians): {r['ours_vs_torchvision']:.3f}** (paired, median over rounds of "
        f"ours_i / torchvision_i: {r['ours_vs_torchvision_paired']:.3f}; per round "
        + ", ".join(f"{v:.3f}" for v in r["ours_vs_torchvision_per_round"])
        + f"). Target >= {TARGET_RATIO}: **{results['verdict']}**.",
        "",
        f"Same architecture on both sides: {'yes' if results['check']['same_architecture'] else 'NO'} "
        f"({s['ours']['model']['params']:,} parameters, all trainable, "
        + ", ".join(f"{n} {k}" for k, n in s["ours"]["model"]["norm_layers"].items())
        + f"; RPN post-NMS top-n {s['ours']['model']['rpn_post_nms_top_n_train']} in training, "
        f"{s['ours']['model']['roi_batch_size_per_image']} RoIs sampled per image). Losses finite in every run: "
        f"{'yes' if results['check']['losses_finite'] else 'NO'}.",
    ]
    if "ddp" in s:
        d, o = s["ddp"], s["ours"]
        lines += ["", "## DDP: the engine under torchrun vs one process", ""]
        rows = [
            [f"1 process x {o['threads_per_process']} threads (ours above)", str(o["images_per_step"]),
             *_ips_cells(o), _f(o["measured_step_s"]["median"])],
            [f"torchrun {d['world_size']} processes x 1 thread (gloo)", str(d["images_per_step"]),
             *_ips_cells(d), _f(d["measured_step_s"]["median"])],
        ]  # fmt: skip
        lines.append(markdown_table(
            ["configuration", "images per step (all processes)", "total images/s, median", "min - max",
             "step s, median"], rows, "lrrrr"))  # fmt: skip
        lines += [
            "",
            f"DDP / 1 process: {r['ddp_vs_one_process']:.3f} (paired {r['ddp_vs_one_process_paired']:.3f}). "
            f"On {machine['cpu_affinity']} cores both use the same cores; this is no scaling claim.",
        ]
    lines += ["", "## Per round", ""]
    header = ["round", "order", *(f"{side} images/s" for side in s), "load avg (1 min) at each run's start"]
    rows = []
    for rnd in results["rounds"]:
        rows.append([
            str(rnd["round"]), ", ".join(rnd["order"]),
            *(_f(rnd["images_per_s"][side], 3) for side in s),
            ", ".join(f"{side} {rnd['load_average_1min'][side]:.2f}" for side in rnd["order"]),
        ])  # fmt: skip
    lines.append(markdown_table(header, rows, "lr" + "r" * len(s) + "l"))
    lines += ["", "## Notes", ""] + [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"
