"""``fpn-zoo train`` under torchrun: 2 CPU processes (gloo) on tiny synthetic data, trained, checkpointed, evaluated.

The run goes through the real launcher (``python -m torch.distributed.run``), so DistributedDataParallel, the
DistributedSampler shards, the barriers around checkpoints and the distributed evaluation (each rank predicts its
shard, rank 0 gathers and scores) are all exercised. About 20 s on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import fpn_zoo
from fpn_zoo.engine.checkpoints import latest_checkpoint

MODEL = "fpn_r50_coco"
NPROC = 2
ITERS = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    from fpn_zoo.data import write_synthetic_coco

    root = tmp_path_factory.mktemp("ddp")
    train_ann, train_images = write_synthetic_coco(
        root / "train", num_images=6, num_classes=3, image_size=(64, 96), seed=0
    )
    val_ann, val_images = write_synthetic_coco(root / "val", num_images=3, num_classes=3, image_size=(64, 96), seed=1)
    out = root / "run"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(NPROC),
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "fpn_zoo.cli", "train", "--model", MODEL,
        "--train-ann", str(train_ann), "--train-images", str(train_images),
        "--val-ann", str(val_ann), "--val-images", str(val_images), "--out", str(out),
        "--init", "scratch", "--iters", str(ITERS), "--batch-size", "1", "--min-size", "64", "--max-size", "96",
        "--workers", "0", "--log-every", "1", "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)  # a test runner launched under torchrun must not leak its own rank into the child
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=root)
    return proc, out


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_torchrun_two_processes_exit_cleanly(ddp_run):
    proc, _ = ddp_run
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
    # Only rank 0 prints the result line.
    assert proc.stdout.count("Final weights:") == 1, proc.stdout


def test_rank0_writes_the_only_log_and_counts_both_processes(ddp_run):
    proc, out = ddp_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = sorted(p.relative_to(out) for p in out.rglob("*.jsonl"))
    assert logs == [Path("log.jsonl")]
    records = _records(out)
    train = [r for r in records if r["event"] == "train"]
    # One line per step: a second writer would duplicate them.
    assert [r["global_step"] for r in train] == list(range(1, ITERS + 1))
    assert all(r["loss"] > 0 and r["images_per_s"] > 0 for r in train)
    # images_per_s counts every process's batch: step 2's window runs from the step-1 log line to its own, so
    # images_per_s x that interval is the images of one step in all processes (batch 1 x 2), not rank 0's alone (1).
    first, second = train[0], train[1]
    images_in_window = second["images_per_s"] * (second["time"] - first["time"])
    assert 0.75 * NPROC < images_in_window < 1.25 * NPROC, images_in_window
    # One shard per rank: 6 images, batch 1, 2 processes -> 3 steps per epoch; 2 iterations stop mid-epoch.
    assert train[-1]["epoch"] == 0 and train[-1]["step_in_epoch"] == ITERS


def test_checkpoint_final_weights_and_distributed_eval(ddp_run):
    proc, out = ddp_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = _records(out)
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None and checkpoint.name == f"step_{ITERS:08d}"
    assert [r["global_step"] for r in records if r["event"] == "checkpoint"] == [ITERS]

    final = out / "final"
    model = fpn_zoo.create_model(MODEL, weights=final, device="cpu")
    assert model.config.num_classes == 4 and model.config.categories[0] == "__background__"

    evals = [r for r in records if r["event"] == "eval"]
    assert len(evals) == 1
    # Each rank predicted its shard (3 images over 2 ranks, one padded); rank 0 gathered all 3, once each.
    assert evals[0]["num_images"] == 3
    assert "AP50" in evals[0]["metrics"] and "gather" in evals[0]["timing_seconds"]
    assert [r["event"] for r in records][-1] == "final"
