"""Training throughput (images/s) of ``fpn_r50_coco`` in fpn_zoo's engine next to torchvision's plain loop, in one run.

Compares, on the same data, batch, image size and optimiser, each measurement in a fresh process:
    ours         the real engine, ``Trainer(TrainConfig(init="scratch", iters=warmup+steps, ...)).fit()``, timed by its
                 own ``log.jsonl`` (``images_per_s`` with ``log_every=1``: one window per step, the batch fetch
                 included, the log write and the end-of-run checkpoint/export excluded);
    torchvision  ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=..., min_size=...,
                 max_size=...)`` in the plain loop ``loss = sum(model(images, targets).values()); opt.zero_grad();
                 loss.backward(); opt.step()`` over a plain ``DataLoader`` of the same ``CocoDetection`` + transforms +
                 collate, each step timed the same way (batch fetch included);
    ddp          the engine under ``torchrun --nproc_per_node N`` (gloo, CPU, one thread per process), same batch per
                 process: total images/s of all processes, next to ``ours`` (one process, ``--threads`` threads).

Target from the issue: median images/s ours / torchvision >= 0.95. The sides run interleaved in rounds (ours,
torchvision, ddp | ddp, torchvision, ours | ...), each run ``--warmup`` unmeasured steps then ``--steps`` measured
ones. Writes ``docs/results/train-throughput-cpu-<YYYYMMDD>.json`` and a ``.md`` beside it, prints the tables and a
``PASS``/``MISS`` line, and exits 0 either way.

Usage:
    python benchmarks/bench_train_throughput.py                       # BCCD train split, 3 rounds (~10 min)
    python benchmarks/bench_train_throughput.py --quick --out /tmp/train.json   # tiny synthetic data, 2 steps
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import library_versions, machine_info, markdown_table

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().parent / "_train_child.py"
BCCD = REPO.parent / "shared" / "data" / "bccd"
TARGET_RATIO = 0.95
SIDES = ("ours", "torchvision", "ddp")
LABELS = {
    "ours": "ours: fpn_zoo engine, Trainer.fit()",
    "torchvision": "torchvision fasterrcnn_resnet50_fpn, plain loop",
    "ddp": "ours under torchrun",
}
FACT_KEYS = ("params", "trainable_params", "norm_layers", "rpn_post_nms_top_n_train", "roi_batch_size_per_image",
             "min_size", "max_size")  # fmt: skip
_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench_train +{time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def stats(values: list[float]) -> dict[str, float | int]:
    """Median, min, max, quartiles, IQR, mean and relative spread ((max - min) / median) of ``values``."""
    ordered = sorted(values)
    q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) >= 2 else (ordered[0],) * 3
    median = statistics.median(ordered)
    return {
        "n": len(ordered), "median": median, "min": ordered[0], "max": ordered[-1], "q1": q1, "q3": q3,
        "iqr": q3 - q1, "mean": statistics.fmean(ordered),
        "spread": (ordered[-1] - ordered[0]) / median if median else float("nan"),
    }  # fmt: skip


class ChildError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(args: argparse.Namespace, threads: int) -> dict[str, str]:
    """The environment of one measurement: no inherited torchrun variables, the OpenMP settings of the run."""
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
            "PYTHONPATH")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(threads))
    if args.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    return env


def run_child(side: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Run one measurement (a fresh interpreter, or ``nproc`` under torchrun) and return what it wrote."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=work))
    out = run_dir / "result.json"
    threads = 1 if side == "ddp" else args.threads
    flags = [
        "--out", str(out), "--ann", str(args.ann), "--images", str(args.images), "--work-dir", str(run_dir),
        "--batch-size", str(args.batch_size), "--min-size", str(args.min_size), "--max-size", str(args.max_size),
        "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(threads),
        "--workers", str(args.workers), "--lr", str(args.lr), "--seed", str(args.seed),
    ]  # fmt: skip
    if side == "ddp":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               str(CHILD), "ours", *flags]  # fmt: skip
    else:
        cmd = [sys.executable, str(CHILD), side, *flags]
    try:
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=child_env(args, threads), capture_output=True, text=True,
                              timeout=args.child_timeout, cwd=run_dir)  # fmt: skip
        if proc.returncode or not out.is_file():
            raise ChildError(f"{side} child failed (exit {proc.returncode}):\n{proc.stderr.strip()[-4000:]}")
        result = json.loads(out.read_text())
        result["launcher_wall_s"] = time.perf_counter() - start
        return result
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)  # the engine's checkpoint and final weights: ~0.5 GB per run


def measured(run: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Images/s over the measured steps of one run (after ``warmup``): total images / total step time."""
    steps = run["step_s"][warmup:]
    images = run["images_per_step"] * len(steps)
    return {"images": images, "seconds": sum(steps), "images_per_s": images / sum(steps)}


def summarize_side(runs: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
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
    args: argparse.Namespace,
) -> None:
    """Summaries, ratios, verdict, like-for-like check and notes, added to ``results``."""
    sides = list(runs)
    summary = {side: summarize_side(side_runs, args.warmup) for side, side_runs in runs.items()}
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
        f"OMP_WAIT_POLICY={args.omp_wait_policy}: on a loaded machine, libgomp's default spin-waiting makes each "
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


# ------------------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ann", type=Path, help="COCO annotations (default: BCCD train split)")
    p.add_argument("--images", type=Path, help="their image folder (default: BCCD images)")
    p.add_argument("--batch-size", type=int, default=2, help="images per step per process (default 2)")
    p.add_argument("--min-size", type=int, help="model resize, shorter side (default 320; quick: 64)")
    p.add_argument("--max-size", type=int, help="model resize, longer side (default 427; quick: 96)")
    p.add_argument("--warmup", type=int, help="unmeasured steps at the start of every run (default 2; quick: 1)")
    p.add_argument("--steps", type=int, help="measured steps per run, >= 5 (default 8; quick: 1)")
    p.add_argument("--rounds", type=int, help="interleaved rounds, >= 3 (default 3; quick: 1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the single-process runs (default 2)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers on both sides (default 0)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nproc", type=int, default=2, help="processes of the DDP runs (default 2)")
    p.add_argument("--no-ddp", dest="ddp", action="store_false", help="skip the torchrun runs")
    p.add_argument("--omp-wait-policy", choices=("passive", "active", "default"), default="passive",
                   help="OMP_WAIT_POLICY of every run (default passive: see the notes in the report)")  # fmt: skip
    p.add_argument("--child-timeout", type=int, default=900, help="seconds per run before giving up (default 900)")
    p.add_argument("--quick", action="store_true", help="smoke check: tiny synthetic data, 1 + 1 steps, 1 round")
    p.add_argument("--out", help="results JSON, with the .md beside it (default: docs/results/train-throughput-...)")
    p.add_argument("--replay", help="re-analyse the raw runs of a results or .partial.json file (no measurement)")
    args = p.parse_args(argv)

    def pick(value: Any, full: Any, quick: Any) -> Any:
        return value if value is not None else (quick if args.quick else full)

    args.min_size, args.max_size = pick(args.min_size, 320, 64), pick(args.max_size, 427, 96)
    args.warmup, args.steps, args.rounds = pick(args.warmup, 2, 1), pick(args.steps, 8, 1), pick(args.rounds, 3, 1)
    if not args.quick and (args.steps < 5 or args.rounds < 3 or args.warmup < 1):
        p.error("a reportable run needs --steps >= 5, --rounds >= 3 and --warmup >= 1; use --quick for a smoke check")
    if min(args.steps, args.rounds, args.threads, args.batch_size, args.nproc) < 1 or args.warmup < 0:
        p.error("--steps, --rounds, --threads, --batch-size and --nproc must be >= 1, --warmup >= 0")
    if (args.ann is None) != (args.images is None):
        p.error("give both --ann and --images, or neither")
    return args


def _prepare_data(args: argparse.Namespace, work: Path) -> str:
    if args.ann is not None:
        return f"{args.ann}"
    if args.quick:
        from fpn_zoo.data import write_synthetic_coco

        args.ann, args.images = write_synthetic_coco(
            work / "synthetic", num_images=8, num_classes=3, image_size=(64, 96), seed=0
        )
        return "synthetic (write_synthetic_coco, 8 images of 64x96, 3 classes)"
    args.ann, args.images = BCCD / "annotations" / "instances_train.json", BCCD / "images"
    return "BCCD train split"


def _warm_page_cache(ann: Path, images: Path) -> int:
    """Read every image of the annotation file once, so the first round does not pay the disk."""
    files = [img["file_name"] for img in json.loads(Path(ann).read_text())["images"]]
    for name in files:
        (Path(images) / name).read_bytes()
    return len(files)


def measure(args: argparse.Namespace, out: Path, now: datetime.datetime) -> dict[str, Any]:
    """Run every round; the raw results so far are kept in ``<out>.partial.json`` until the report is written."""
    import torch

    partial = out.with_name(out.stem + ".partial.json")
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    sides = [side for side in SIDES if side != "ddp" or args.ddp]
    try:
        data_name = _prepare_data(args, work)
        n_images = _warm_page_cache(args.ann, args.images)
        log(f"{data_name}: {n_images} images; {args.rounds} rounds of {', '.join(sides)}; {args.warmup} warm-up + "
            f"{args.steps} measured steps each{' (quick)' * args.quick}")  # fmt: skip
        results: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "date": now.isoformat(timespec="seconds"), "quick": args.quick,
            "command": [Path(sys.executable).name, *sys.argv], "device": "cpu",
            "machine": machine_info(torch.device("cpu")), "versions": library_versions(REPO),
        }  # fmt: skip
        results["settings"] = {
            "data": data_name, "ann": str(args.ann), "images": str(args.images), "train_images": n_images,
            "batch_size": args.batch_size, "min_size": args.min_size, "max_size": args.max_size, "hflip": 0.5,
            "optimizer": "sgd", "lr": args.lr, "momentum": 0.9, "weight_decay": 1e-4, "seed": args.seed,
            "init": "random on both sides: fpn_zoo init='scratch'; torchvision weights=None, weights_backbone=None",
            "warmup_steps": args.warmup, "measured_steps": args.steps, "rounds": args.rounds,
            "threads": args.threads, "ddp_processes": args.nproc if args.ddp else None, "ddp_threads_per_process": 1,
            "workers": args.workers, "omp_wait_policy": args.omp_wait_policy,
            "interleaving": "round r runs " + ", ".join(sides) + " when r is even, the reverse when odd",
            "process": "one fresh interpreter per run (benchmarks/_train_child.py); torchrun for ddp",
            "images_per_s": "per run: images of the measured steps / sum of their step times; per side: median "
            "over rounds",
        }  # fmt: skip
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        rounds: list[dict[str, Any]] = []
        results.update(runs=runs, rounds=rounds)
        out.parent.mkdir(parents=True, exist_ok=True)
        for r in range(args.rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            record: dict[str, Any] = {"round": r + 1, "order": order, "images_per_s": {}, "load_average_1min": {}}
            rounds.append(record)
            for side in order:
                run = run_child(side, args, work)
                run.update(round=r + 1, side=side)
                runs[side].append(run)
                record["images_per_s"][side] = measured(run, args.warmup)["images_per_s"]
                record["load_average_1min"][side] = run["load_average_start"][0]
                partial.write_text(json.dumps(results, indent=1) + "\n")
                log(
                    f"round {r + 1}/{args.rounds} {side}: {record['images_per_s'][side]:.3f} images/s (steps "
                    + ", ".join(f"{s:.2f}" for s in run["step_s"])
                    + f" s; load {run['load_average_start'][0]:.2f})"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["total_wall_s"] = time.perf_counter() - _START
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    now = datetime.datetime.now(datetime.timezone.utc)
    if args.replay:
        # Re-analyse the raw runs of an earlier (possibly interrupted) invocation; no measurement.
        results = json.loads(Path(args.replay).read_text())
        settings = results["settings"]
        args.warmup, args.omp_wait_policy = settings["warmup_steps"], settings["omp_wait_policy"]
        results["rounds"] = [r for r in results["rounds"] if set(r["images_per_s"]) == set(results["runs"])]
        results["runs"] = {side: runs[: len(results["rounds"])] for side, runs in results["runs"].items()}
        settings["rounds"] = len(results["rounds"])
        results.setdefault("machine", {}).setdefault("load_average_at_end", None)
        results["replayed_from"] = str(args.replay)
        default_out = Path(args.replay).with_name(Path(args.replay).name.replace(".partial", ""))
    else:
        default_out = REPO / "docs" / "results" / f"train-throughput-cpu-{now:%Y%m%d}{'-quick' * args.quick}.json"
    out = Path(args.out or default_out)
    if not args.replay:
        results = measure(args, out, now)
    analyse(results, results.pop("runs"), results.pop("rounds"), args)
    text = report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(text)
    out.with_name(out.stem + ".partial.json").unlink(missing_ok=True)
    print(text)
    ratio = results["ratios"]["ours_vs_torchvision"]
    print(f"{results['verdict']} ours/torchvision images/s: {ratio:.3f} (target >= {TARGET_RATIO})")
    print(f"Total {results['total_wall_s'] / 60:.1f} min. Raw data: {out} (table: {out.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
