"""``fpn-zoo bench train``: training images/s of ``fpn_r50_coco`` in fpn_zoo's engine next to torchvision's plain
loop, in one run.

Compares, on the same data, batch, image size and optimiser, each measurement in a fresh process
(``python -m fpn_zoo.bench.train_child``):
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

Summaries, ratios and the report are in ``train_report``.

Example:
    .. code-block:: console

        $ fpn-zoo bench train                                 # BCCD train split, 3 rounds (~10 min)
        $ fpn-zoo bench train --quick --out /tmp/train.json   # tiny synthetic data, 2 steps
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fpn_zoo.bench.machine import REPO_ROOT
from fpn_zoo.bench.stage_log import ChildError, StageLog

__all__ = ["SCHEMA_VERSION", "main", "parse_args", "run"]

SCHEMA_VERSION = 1  # of the results JSON; docs/results/train-throughput-cpu-20261121.json has it too
PROG = "fpn-zoo bench train"
DESCRIPTION = (
    "Training images/s of fpn_r50_coco in fpn_zoo's engine next to torchvision's fasterrcnn_resnet50_fpn in a plain "
    "loop (same data, batch, size, optimiser), and the engine under torchrun, in interleaved rounds of fresh "
    "processes. Writes JSON and a markdown table; prints PASS/MISS against the target and exits 0."
)
BCCD = REPO_ROOT.parent / "shared" / "data" / "bccd"
SIDES = ("ours", "torchvision", "ddp")
log = StageLog("bench train")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(args: argparse.Namespace, threads: int) -> dict[str, str]:
    """The environment of one measurement: no inherited torchrun variables, the OpenMP settings of the run."""
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
            "PYTHONPATH")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS=str(threads))  # the fpn_zoo this process runs
    if args.omp_wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    return env


CHILD = "fpn_zoo.bench.train_child"


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
               "-m", CHILD, "ours", *flags]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", CHILD, side, *flags]
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


def parse_args(
    argv: list[str] | None = None,
    prog: str = PROG,
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.Namespace:
    """The options of ``fpn-zoo bench train``, with the run-dependent defaults filled in and checked.

    Examples:
        >>> args = parse_args(["--quick", "--no-ddp"])
        >>> (args.steps, args.rounds, args.min_size, args.ddp)
        (1, 1, 64, False)
    """
    p = parser_class(prog=prog, description=DESCRIPTION)
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
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate on both sides (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and data order (default 0)")
    p.add_argument("--nproc", type=int, default=2, help="processes of the DDP runs (default 2)")
    p.add_argument("--no-ddp", dest="ddp", action="store_false", help="skip the torchrun runs (default: run them)")
    p.add_argument("--omp-wait-policy", choices=("passive", "active", "default"), default="passive",
                   help="OMP_WAIT_POLICY of every run (default passive: see the notes in the report)")  # fmt: skip
    p.add_argument("--child-timeout", type=int, default=900, help="seconds per run before giving up (default 900)")
    p.add_argument("--quick", action="store_true", help="smoke check: tiny synthetic data, 1 + 1 steps, 1 round")
    p.add_argument("--out", help="results JSON, with the .md beside it (default: docs/results/train-throughput-...)")
    p.add_argument(
        "--replay",
        help="re-analyse the raw runs of a results or .partial.json file, no measurement (default: measure)",
    )
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

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
    """Fill ``args.ann`` and ``args.images`` (given, synthetic with ``--quick``, else BCCD); returns the data's name."""
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

    from fpn_zoo.bench.machine import library_versions, machine_info
    from fpn_zoo.bench.train_report import measured

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
            "command": [*PROG.split(), *args.argv], "device": "cpu",
            "machine": machine_info(torch.device("cpu")), "versions": library_versions(REPO_ROOT),
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
            "process": "one fresh interpreter per run (python -m fpn_zoo.bench.train_child); torchrun for ddp",
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
    results["total_wall_s"] = log.elapsed_s
    return results


def run(args: argparse.Namespace) -> int:
    """Measure (or ``--replay``), write the JSON and the ``.md`` beside it, print the report and a PASS/MISS line; 0."""
    from fpn_zoo.bench.train_report import TARGET_RATIO, analyse, report

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
        default_out = REPO_ROOT / "docs" / "results" / f"train-throughput-cpu-{now:%Y%m%d}{'-quick' * args.quick}.json"
    out = Path(args.out or default_out)
    if not args.replay:
        results = measure(args, out, now)
    analyse(results, results.pop("runs"), results.pop("rounds"), args.warmup, args.omp_wait_policy)
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


def main(argv: list[str] | None = None) -> int:
    """``fpn-zoo bench train`` outside the ``fpn-zoo`` parser (``benchmarks/bench_train_throughput.py`` calls this)."""
    return run(parse_args(argv))
