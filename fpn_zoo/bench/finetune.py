"""``fpn-zoo bench finetune``: fine-tune each neck on real data (BCCD blood cells) under one fixed budget and report
val AP / AP50.

Every model trains with the same settings (iterations, batch, image size, optimiser, seed) through ``fpn-zoo
train``'s engine, then is evaluated with COCOeval on the validation split. The same model before training (random
init, same seed) is evaluated too, so "it learned" is a measured difference, not a claim.

Where no pretrained weights can be downloaded (this project's CI machines), ``--init scratch`` is the only honest
start; say so next to the numbers. With network access, ``--init backbone`` (timm ImageNet) is the usual recipe.
``fpn_zoo.docs_site.sources.load_finetune_results`` reads the JSON this writes.

Example:
    .. code-block:: console

        $ fpn-zoo bench finetune --necks fpn,panet,bifpn,augfpn --iters 150
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from fpn_zoo.bench.machine import REPO_ROOT

__all__ = ["main", "parse_args", "run", "write_report"]

PROG = "fpn-zoo bench finetune"
DATA = REPO_ROOT.parent / "shared" / "data" / "bccd"
RESULTS = REPO_ROOT / "docs" / "results"


def parse_args(
    argv: list[str] | None = None,
    prog: str = PROG,
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.Namespace:
    """The options of ``fpn-zoo bench finetune``.

    Examples:
        >>> parse_args(["--necks", "fpn", "--iters", "2"]).necks
        'fpn'
    """
    p = parser_class(
        prog=prog,
        description="Fine-tune each neck on BCCD under one fixed budget through fpn-zoo train's engine and report "
        "COCO AP / AP50 on the val split, before and after training. Writes JSON and a markdown table.",
    )
    p.add_argument("--data", type=Path, default=DATA, help=f"BCCD folder with annotations/ and images/ "
                   f"(default: {DATA})")  # fmt: skip
    p.add_argument("--necks", default="fpn,panet,bifpn,augfpn", help="comma-separated necks (default: "
                   "fpn,panet,bifpn,augfpn)")  # fmt: skip
    p.add_argument("--backbone", default="r50", help="backbone short name; models are {neck}_{backbone}_coco "
                   "(default: r50)")  # fmt: skip
    p.add_argument("--init", default="scratch", help="scratch | backbone | coco | PATH (default: scratch)")
    p.add_argument("--iters", type=int, default=150, help="training iterations per model (default 150)")
    p.add_argument("--batch-size", type=int, default=2, help="images per step (default 2)")
    p.add_argument("--min-size", type=int, default=256, help="model resize, shorter side (default 256)")
    p.add_argument("--max-size", type=int, default=342, help="model resize, longer side (default 342)")
    p.add_argument("--optimizer", default="adamw", help="optimiser of the engine (default: adamw)")
    p.add_argument("--lr", type=float, default=2e-4, help="learning rate, cosine schedule (default 2e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and data order (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (default 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--work-dir", type=Path, default=Path("runs/bench-bccd"), help="one training run per neck "
                   "(default: runs/bench-bccd)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace the runs an earlier benchmark left in --work-dir")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: "
                   "docs/results/bccd-finetune-{device}-{YYYYMMDD}.json)")  # fmt: skip
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _evaluate(model: Any, val: Any, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from fpn_zoo.engine.evaluate import evaluate_model

    result = evaluate_model(model, val, batch_size=2, device=torch.device(args.device), progress=False)
    return {"AP": result.AP, "AP50": result.AP50, "AP75": result.AP75, "per_class": result.per_class}


def run_neck(neck: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``{neck}_{backbone}_coco`` under the budget of ``args``; its AP before and after, losses and time."""
    import torch

    from fpn_zoo.data import CocoDetection
    from fpn_zoo.engine.model_init import build_training_model
    from fpn_zoo.engine.train_config import TrainConfig
    from fpn_zoo.engine.trainer import Trainer
    from fpn_zoo.factory import create_model

    name = f"{neck}_{args.backbone}_coco"
    out = args.work_dir / name
    config = TrainConfig(
        model=name,
        train_ann=str(args.data / "annotations" / "instances_train.json"),
        train_images=str(args.data / "images"),
        out=str(out),
        init=args.init,
        iters=args.iters,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        schedule="cosine",
        warmup_iters=max(1, args.iters // 10),
        min_size=args.min_size,
        max_size=args.max_size,
        seed=args.seed,
        workers=args.workers,
        checkpoint_every=10**6,
        log_every=10,
        progress=True,
        device=args.device,
    )
    val = CocoDetection(args.data / "annotations" / "instances_val.json", args.data / "images")
    torch.manual_seed(config.seed)  # the untrained baseline: exactly the weights training starts from
    before = _evaluate(build_training_model(config, val.categories, torch.device(args.device)).eval(), val, args)
    start = time.perf_counter()
    final = Trainer(config).fit(overwrite=args.overwrite)  # refused without --overwrite: never lose a run unasked
    train_s = time.perf_counter() - start
    after = _evaluate(create_model(name, weights=final, device=args.device), val, args)
    losses = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in losses if r.get("event") == "train"]
    return {
        "model": name,
        "before": before,
        "after": after,
        "train_seconds": round(train_s, 1),
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


def run(args: argparse.Namespace) -> int:
    """Train and evaluate every neck, rewriting the report after each so an interrupted run keeps what it measured."""
    import torch

    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for neck in args.necks.split(","):
        rows.append(run_neck(neck, args))
        print(json.dumps(rows[-1]), flush=True)
        write_report(rows, args)
    return 0


def write_report(rows: list[dict[str, Any]], args: argparse.Namespace, commit: str | None = None) -> Path:
    """Write the JSON results and the markdown table for the models measured so far; returns the JSON's path."""
    import torch

    from fpn_zoo.bench.machine import git_commit, machine_info

    date = dt.date.today().strftime("%Y%m%d")
    out = args.out or RESULTS / f"bccd-finetune-{args.device}-{date}.json"
    meta = {
        # Read by fpn_zoo.docs_site.sources.load_finetune_results (files without these keys are version 1 too).
        "schema": "fpn-zoo-finetune",
        "schema_version": 1,
        "command": " ".join([PROG, *getattr(args, "argv", [])]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(torch.device(args.device)),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "commit": commit or git_commit(REPO_ROOT),
        "settings": {k: str(v) for k, v in vars(args).items() if k != "argv"},
        "measured": [r["model"] for r in rows],
        "note": (
            f"init={args.init}: "
            + (
                "no pretrained weights (none can be downloaded here); every model starts from random init, so these "
                "are from-scratch figures after a short budget, far below a fine-tune from COCO or ImageNet weights."
                if args.init == "scratch"
                else "pretrained start."
            )
        ),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    lines = [
        f"# BCCD fine-tuning, {meta['date']}",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {json.dumps(meta['machine'])}; torch {torch.__version__}; commit `{meta['commit']}`.  ",
        f"Budget: {args.iters} iterations x {args.batch_size} images at {args.min_size}-{args.max_size} px, "
        f"{args.optimizer} lr {args.lr} cosine, seed {args.seed}. Val: BCCD val, 87 images, COCOeval.  ",
        f"**{meta['note']}**",
        "",
        "| model | AP50 before | AP50 after | AP before | AP after | per-class AP after | loss first -> last "
        "| train s |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        b, a = r["before"], r["after"]
        per = ", ".join(f"{k} {v:.1f}" for k, v in a["per_class"].items() if v is not None)
        lines.append(
            f"| {r['model']} | {b['AP50']:.1f} | {a['AP50']:.1f} | {b['AP']:.1f} | {a['AP']:.1f} | {per} | "
            f"{r['first_loss']:.2f} -> {r['last_loss']:.2f} | {r['train_seconds']:.0f} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def main(argv: list[str] | None = None) -> int:
    """``fpn-zoo bench finetune`` outside the ``fpn-zoo`` parser (``benchmarks/bench_finetune_bccd.py`` calls this)."""
    return run(parse_args(argv))
