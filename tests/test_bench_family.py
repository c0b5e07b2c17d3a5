"""The ``fpn-zoo bench`` command family: dispatch, help, refusals, thin callers and old results files.

The quick runs of ``fpn-zoo bench load`` and ``fpn-zoo bench train`` are smoke checks of whole runs in subprocesses
(marked slow): nothing is asserted about the timings themselves (STYLE rule 10), only that the JSON backs the report.
Everything else here parses arguments or re-analyses recorded runs, and stays in the default run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fpn_zoo import list_models
from fpn_zoo.bench.command import MEASUREMENTS
from fpn_zoo.cli import build_parser, main
from fpn_zoo.docs_site.sources import load_finetune_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def test_no_model_is_named_like_a_measurement():
    assert not set(MEASUREMENTS) & set(list_models())


def test_bench_help_lists_the_family(capsys):
    assert main(["bench", "--help"]) == 0
    text = capsys.readouterr().out
    assert "[MODEL_OR_GLOB ...]" in text and "--sizes" in text  # the latency command is unchanged
    for name in MEASUREMENTS:
        assert f"\n  {name} " in text, name
        assert name in text.splitlines()[1], name  # the usage line names each one too


class _Recording(argparse.ArgumentParser):
    """Stops at parse time, keeping the parser a measurement built (its options, before any check runs)."""

    built: argparse.ArgumentParser | None = None

    def parse_args(self, *args, **kwargs):
        _Recording.built = self
        raise SystemExit(0)


@pytest.mark.parametrize("name", list(MEASUREMENTS))
def test_each_measurement_has_help_with_defaults(name, capsys):
    assert main(["bench", name, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: fpn-zoo bench {name} ")
    module = importlib.import_module(MEASUREMENTS[name].module)
    with pytest.raises(SystemExit):
        module.parse_args([], prog=f"fpn-zoo bench {name}", parser_class=_Recording)
    for action in _Recording.built._actions:  # every option that takes a value says its default, or is required
        if action.option_strings and action.nargs != 0:
            assert "default" in action.help or "required" in action.help, (name, action.option_strings)


def test_latency_bench_still_parses_models_and_flags():
    args = build_parser().parse_args(["bench", "fpn_r50_coco", "bifpn_*", "--sizes", "64x64", "--quick"])
    assert args.models == ["fpn_r50_coco", "bifpn_*"] and args.sizes == ((64, 64),) and args.quick
    assert not hasattr(args, "measurement")


def test_a_measurement_name_after_models_is_a_clear_error(capsys):
    assert main(["bench", "fpn_r50_coco", "train", "--sizes", "64x64", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "'train' is a measurement of the bench family" in err and "`fpn-zoo bench train ...`" in err


def test_load_too_few_repeats_are_refused(capsys):
    assert main(["bench", "load", "--repeats", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpn-zoo: error: a reportable run needs --repeats >= 7") and err.count("\n") == 1


def test_train_too_few_steps_are_refused(capsys):
    assert main(["bench", "train", "--steps", "2"]) == 2
    assert "--steps >= 5" in capsys.readouterr().err


def test_fast_check_missing_paths_are_refused(tmp_path, capsys):
    args = ["bench", "fast-check", "--model", "fpn_r50_coco", "--weights", str(tmp_path / "none"),
            "--ann", str(tmp_path), "--images", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    assert f"--weights {tmp_path / 'none'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("script", "fragment"),
    [("bench_load.py", "--repeats >= 7"), ("bench_train_throughput.py", "--steps >= 5")],
)
def test_old_script_paths_still_run_the_commands(script, fragment):
    """The commands recorded in older results files (``python benchmarks/...``) reach the same parsers."""
    bad = {"bench_load.py": ["--repeats", "3"], "bench_train_throughput.py": ["--steps", "2"]}[script]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *bad], capture_output=True, text=True)
    assert proc.returncode == 2 and fragment in proc.stderr


def test_old_script_path_of_finetune_runs_the_command():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_finetune_bccd.py"), "--help"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("usage: fpn-zoo bench finetune")


def test_old_finetune_results_still_load():
    data = load_finetune_results(RESULTS / "bccd-finetune-cpu-20261121.json")
    assert data["command"].startswith("python benchmarks/bench_finetune_bccd.py")
    assert {row["model"] for row in data["results"]} >= {"fpn_r50_coco"}


def test_old_train_results_replay_to_the_same_figures(tmp_path, capsys):
    """``--replay`` re-analyses the raw runs of a results file written by the old script, without measuring."""
    old = RESULTS / "train-throughput-cpu-20261121.json"
    out = tmp_path / "replayed.json"
    assert main(["bench", "train", "--replay", str(old), "--out", str(out)]) == 0
    before, after = json.loads(old.read_text()), json.loads(out.read_text())
    assert after["schema_version"] == before["schema_version"] == 1
    for key in ("ours_vs_torchvision", "ours_vs_torchvision_paired", "ddp_vs_one_process"):
        assert after["ratios"][key] == pytest.approx(before["ratios"][key], rel=1e-12), key
    assert after["summary"]["ours"]["images_per_s"] == pytest.approx(before["summary"]["ours"]["images_per_s"])
    assert after["verdict"] == before["verdict"]
    assert out.with_suffix(".md").read_text().startswith("# fpn_zoo training throughput benchmark")
    assert "ours/torchvision images/s" in capsys.readouterr().out


def test_old_load_results_rebuild_the_same_report():
    """The report of ``fpn-zoo bench load`` renders from the file the old script wrote, with the same verdict."""
    from fpn_zoo.bench.load_report import report, verdict

    data = json.loads((RESULTS / "load-cpu-20261121.json").read_text())
    assert data["schema_version"] == 1 and verdict(data["warm"]["ratios"]) == data["verdict"]
    text = report(data)
    assert text.startswith("# fpn_zoo load benchmark") and "| wall ms, median / min / IQR |" in text


@pytest.mark.slow  # a whole (quick) benchmark run in subprocesses; the refusals above stay in the default run
def test_load_quick_run_writes_json_and_table(tmp_path):
    out = tmp_path / "load.json"
    cmd = [sys.executable, "-m", "fpn_zoo.cli", "bench", "load", "--quick", "--repeats", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "QUICK smoke check" in proc.stdout
    assert "| wall ms, median / min / IQR |" in proc.stdout
    for key in ("wall_ratio", "peak_rss_ratio"):
        assert any(line.startswith((f"PASS {key}:", f"MISS {key}:")) for line in proc.stdout.splitlines()), key
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["schema_version"] == 1
    assert data["command"][:3] == ["fpn-zoo", "bench", "load"]
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


@pytest.mark.slow  # about 20 s on 2 busy cores; tests/test_train_distributed.py covers the engine under torchrun
def test_train_quick_run_writes_json_and_table(tmp_path):
    out = tmp_path / "train.json"
    cmd = [sys.executable, "-m", "fpn_zoo.cli", "bench", "train", "--quick", "--no-ddp", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "QUICK smoke check" in proc.stdout
    assert any(line.startswith(("PASS ours/torchvision", "MISS ours/torchvision")) for line in proc.stdout.splitlines())
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["schema_version"] == 1
    assert data["command"][:3] == ["fpn-zoo", "bench", "train"]
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
