"""The load benchmark runs end to end and its JSON backs every reported figure (a smoke check, not a timed test).

It builds a random 167 MB torchvision checkpoint, serves it over loopback HTTP, converts it through the cold path
and loads it warm in fresh processes; nothing is asserted about the timings themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_load.py"


@pytest.mark.slow  # a whole (quick) benchmark run in subprocesses; the refusals below stay in the default run
def test_quick_run_writes_json_and_table(tmp_path):
    out = tmp_path / "load.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--repeats", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    assert "QUICK smoke check" in proc.stdout
    assert "| wall ms, median / min / IQR |" in proc.stdout
    for key in ("wall_ratio", "peak_rss_ratio"):
        assert any(line.startswith((f"PASS {key}:", f"MISS {key}:")) for line in proc.stdout.splitlines()), key
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["schema_version"] == 1
    assert out.with_suffix(".md").read_text().startswith("# fpn_zoo load benchmark")
    assert data["check"]["match"] and data["check"]["state_dict_tensors_equal"]
    warm = data["warm"]
    for side in ("ours", "torchvision", "verify_always"):
        assert len(warm[side]["runs"]) == 1
        run = warm[side]["runs"][0]
        assert run["wall_ms"] > 0 and run["rss"]["process_peak_rss_mib"] > 0
        assert run["torch_num_threads"] == 2
    assert warm["ratios"]["wall"] > 0 and warm["ratios"]["peak_rss"] > 0
    assert set(warm["torchvision"]["phases_ms"]) == {"construction (random init)", "torch.load",
                                                      "load_state_dict (+ .eval())"}  # fmt: skip
    # The cold path hashes, the warm path only checks the verification record.
    assert data["cold"]["sha256_calls"] >= 1
    warm_phases = data["phase_runs"]["warm"]
    assert not any("sha256_file" in label for label in warm_phases)
    assert any("is_recorded" in label for label in warm_phases)
    assert data["sha256"]["record_check_recorded"] is True
    assert data["sha256"]["safetensors"]["size_bytes"] > 100e6


def test_too_few_repeats_are_refused():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "3"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--repeats >= 7" in proc.stderr
