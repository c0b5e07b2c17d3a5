"""The benchmark script runs and its JSON backs every reported figure (a smoke check, not a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_models.py"


def test_quick_neck_pairs_write_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--skip-models", "--pairs", "fpn,bifpn", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert "| FPN neck vs torchvision.ops.FeaturePyramidNetwork |" in proc.stdout
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["schema_version"] == 1
    assert {row["comparison"].split(" vs ")[0] for row in data["pairs"]} == {"FPN neck", "BiFPN neck"}
    for row in data["pairs"]:
        assert row["outputs_match"], row["comparison"]
        assert len(row["ours"]["times_ms"]) == len(row["reference"]["times_ms"]) == 3
        assert row["ratio"] > 0


def test_bad_size_is_refused():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--sizes", "10x5"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "must be HEIGHTxWIDTH with both sides >= 32" in proc.stderr
