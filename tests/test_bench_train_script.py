"""The training-throughput benchmark runs end to end and its JSON backs the reported figures (a smoke check).

``--quick`` trains on tiny synthetic data, 1 warm-up + 1 measured step per side, in fresh processes; nothing is
asserted about the timings themselves. The torchrun runs are left out here to keep the test short (about 20 s on 2
busy cores): ``tests/test_train_distributed.py`` covers the engine under torchrun, and a full run of the script
exercises its DDP rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_throughput.py"


@pytest.mark.slow  # a whole (quick) benchmark run in subprocesses; the refusals below stay in the default run
def test_quick_run_writes_json_and_table(tmp_path):
    out = tmp_path / "train.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--no-ddp", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "QUICK smoke check" in proc.stdout
    assert any(line.startswith(("PASS ours/torchvision", "MISS ours/torchvision")) for line in proc.stdout.splitlines())
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["schema_version"] == 1
    assert out.with_suffix(".md").read_text().startswith("# fpn_zoo training throughput benchmark")
    assert data["check"]["same_architecture"] and data["check"]["losses_finite"]
    assert set(data["summary"]) == {"ours", "torchvision"}
    for side in ("ours", "torchvision"):
        (run,) = data["runs"][side]
        assert len(run["step_s"]) == 2 and all(s > 0 for s in run["step_s"])  # 1 warm-up + 1 measured
        assert run["torch_num_threads"] == 2 and run["world_size"] == 1
        assert data["summary"][side]["images_per_s"]["median"] > 0
    assert data["runs"]["ours"][0]["timing_source"].startswith("log.jsonl images_per_s")
    assert data["ratios"]["ours_vs_torchvision"] > 0 and data["verdict"] in ("PASS", "MISS")
    assert data["machine"]["load_average_at_start"] and data["machine"]["load_average_at_end"]


def test_too_few_steps_are_refused():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--steps", "2"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--steps >= 5" in proc.stderr
