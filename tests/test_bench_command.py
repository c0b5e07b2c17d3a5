"""``fpn-zoo bench`` runs end to end, its JSON backs every reported figure, and bad input fails clearly.

Smoke runs only (tiny images, 2-3 runs, ``--quick``): nothing here asserts how fast anything is (STYLE rule 10), only
that the recorded ratios, throughputs and equivalence checks are computed from the recorded timings and outputs.
The whole file takes about a minute on 2 busy cores; the torch.compile run is marked slow.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fpn_zoo.bench.loadtime import evict_from_page_cache, resident_fraction
from fpn_zoo.bench.results import BenchResultsError, find_results, load_results
from fpn_zoo.cli import main
from fpn_zoo.inspect_model import count_parameters
from fpn_zoo.registry import get_model_config

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
V1_FULL, V1_PAIRS = RESULTS / "bench-cpu-20261121.json", RESULTS / "bench-cpu-20261121-pairs40.json"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One real run: fpn_r50_coco and the four neck rows at 128x128, in a subprocess as a user starts it."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    cmd = [sys.executable, "-m", "fpn_zoo.cli", "bench", "fpn_r50_coco", "--sizes", "128x128", "--runs", "3",
           "--load-runs", "2", "--quick", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, out, load_results(out)


def _check_ratios(row):
    ours, ref = row["ours"], row["reference"]
    assert ours["n"] == len(ours["times_ms"]) and ref["n"] == len(ref["times_ms"])
    assert ours["median_ms"] == pytest.approx(statistics.median(ours["times_ms"]))
    assert row["ratio"] == pytest.approx(ours["median_ms"] / ref["median_ms"], rel=1e-12)
    paired = statistics.median(a / b for a, b in zip(ours["times_ms"], ref["times_ms"], strict=True))
    assert row["paired_ratio"] == pytest.approx(paired, rel=1e-12)


def test_quick_run_results_structure(quick_run):
    _, _, results = quick_run
    assert results["schema"] == "fpn-zoo-bench" and results["schema_version"] == 2
    assert results["quick"] is True and results["device"] == "cpu" and results["machine"]["gpu"] is None
    assert results["command"][:3] == ["fpn-zoo", "bench", "fpn_r50_coco"] and "--quick" in results["command"]
    settings = results["settings"]
    assert settings["sizes"] == ["128x128"] and settings["runs"] == 3 and settings["load_runs"] == 2
    assert settings["memory_size"] == "128x128" and settings["score_thresh"] == 0.0
    assert settings["precisions"] == ["fp32"] and settings["batches"] == [1] and settings["compile"] == [False]
    assert results["failures"] == [] and results["total_wall_s"] > 0
    detector = results["references"]["detector"]
    (model,) = results["models"]
    # torchvision's detector and fpn_r50_coco are the same network: same parameters, same FLOPs.
    assert detector["params"] == model["params"] == count_parameters(get_model_config("fpn_r50_coco"))
    assert detector["gflops"]["128x128"] == pytest.approx(model["gflops"]["128x128"], rel=1e-9)
    assert model["gflops"]["128x128"] > 1


def test_quick_run_model_figures_come_from_the_timings(quick_run):
    _, _, results = quick_run
    (model,) = results["models"]
    assert (model["model"], model["backbone"], model["neck"], model["dataset"]) == (
        "fpn_r50_coco",
        "r50",
        "fpn",
        "coco",
    )
    assert model["error"] is None
    (row,) = model["latency"]
    assert (row["size"], row["batch"], row["precision"], row["channels_last"], row["compiled"]) == (
        "128x128",
        1,
        "fp32",
        False,
        False,
    )
    assert row["ours"]["n"] == row["reference"]["n"] == 3
    _check_ratios(row)
    # Timed in the shared latency process: the per-round ratios' median and its interval (n = 3: [min, max]).
    ratios = sorted(a / b for a, b in zip(row["ours"]["times_ms"], row["reference"]["times_ms"], strict=True))
    assert row["timing"] == "shared_process" and row["paired_ratio"] == pytest.approx(ratios[1])
    ci = row["paired_ratio_ci"]
    assert (ci["low"], ci["high"], ci["n"]) == (pytest.approx(ratios[0]), pytest.approx(ratios[-1]), 3)
    fast_ratios = sorted(a / b for a, b in zip(row["fast"]["times_ms"], row["reference"]["times_ms"], strict=True))
    assert row["fast_paired_ratio"] == pytest.approx(fast_ratios[1])
    assert row["fast_paired_ratio_ci"]["low"] == pytest.approx(fast_ratios[0])
    (rounds,) = results["latency_rounds"]
    assert rounds["order_seed"] == "fpn-zoo-bench:0:128x128/b1/fp32/contiguous/eager" and len(rounds["orders"]) == 3
    assert all(sorted(o) == ["fpn_r50_coco", "fpn_r50_coco:fast", "reference"] for o in rounds["orders"])
    assert results["consistency"]["ok"] is True
    assert row["throughput_img_s"] == pytest.approx(1000 / row["ours"]["median_ms"])
    assert row["reference_throughput_img_s"] == pytest.approx(1000 / row["reference"]["median_ms"])
    memory = model["memory"]
    assert memory["size"] == "128x128" and memory["ours_mib"] > 0 and memory["reference_mib"] > 0
    assert memory["ratio"] == pytest.approx(memory["ours_mib"] / memory["reference_mib"])
    assert "VmHWM" in memory["method"]
    load = model["load"]
    assert 150 < load["weights_mib"] < 170 and 150 < load["reference_weights_mib"] < 170  # 41.8 M float32 each
    for temperature in ("cold", "warm"):
        record = load[temperature]
        assert record["ours"]["n"] == record["reference"]["n"] == 2
        assert record["ratio"] == pytest.approx(record["ours"]["median_ms"] / record["reference"]["median_ms"])
    for side in ("ours", "reference"):  # score threshold 0.0: every detector returns its full 100 detections
        assert model["workload"][side]["detections_per_image"] == [100]


def test_quick_run_neck_rows(quick_run):
    _, _, results = quick_run
    rows = {row["neck"]: row for row in results["necks"]}
    assert sorted(rows) == ["augfpn", "bifpn", "fpn", "panet"]
    for kind in ("fpn", "bifpn"):  # the same function as the reference: weights copied, outputs compared
        assert rows[kind]["equivalent"] is True and rows[kind]["max_abs_diff"] < 1e-4
        assert rows[kind]["gflops"] == pytest.approx(rows[kind]["reference_gflops"], rel=1e-6)
    assert rows["fpn"]["reference_name"] == "torchvision.ops.FeaturePyramidNetwork"
    assert rows["bifpn"]["reference_name"] == "effdet.efficientdet.BiFpn"
    for kind in ("panet", "augfpn"):  # cost baselines only
        assert rows[kind]["equivalent"] is False and rows[kind]["max_abs_diff"] is None
        assert rows[kind]["reference_name"] == "torchvision.ops.FeaturePyramidNetwork"
    assert rows["panet"]["gflops"] > rows["panet"]["reference_gflops"]  # PANet adds a bottom-up path to FPN
    for row in rows.values():
        assert row["size"] == "128x128" and row["ours"]["n"] == 3
        _check_ratios(row)


def test_quick_run_writes_markdown_and_shows_progress(quick_run):
    proc, out, _ = quick_run
    markdown = out.with_suffix(".md").read_text()
    assert markdown.startswith("# fpn-zoo bench, ") and "QUICK smoke test" in markdown
    assert "| fpn_r50_coco | r50 | fpn | 41.76 |" in markdown
    assert "| fpn | 128x128 | torchvision.ops.FeaturePyramidNetwork | yes (" in markdown
    assert f"Wrote {out} and {out.with_suffix('.md')}." in proc.stdout
    # tqdm on stderr: 1 reference job + 1 model + 1 latency process (one size) + 4 necks, with the current job's name.
    assert "fpn-zoo bench: 100%" in proc.stderr and "7/7" in proc.stderr and "fpn_r50_coco" in proc.stderr
    assert "## Latency ranking at 128x128" in markdown and "| fpn_r50_coco | " in markdown


# The latency matrix's other axes (bf16, batch 2, channels-last) on CPU: 41 s on 2 cores, so run with -m slow.
@pytest.mark.slow
def test_bf16_batch2_channels_last_on_cpu(tmp_path, capsys):
    out = tmp_path / "matrix.json"
    argv = ["bench", "fpn_r50_coco", "--sizes", "64x64", "--runs", "2", "--warmup", "0", "--quick", "--skip-load",
            "--skip-necks", "--precisions", "fp32,bf16", "--batches", "2", "--channels-last", "both",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-4000:]
    results = load_results(out)
    (model,) = results["models"]
    combos = {(r["batch"], r["precision"], r["channels_last"], r["compiled"]) for r in model["latency"]}
    assert combos == {(2, p, cl, False) for p in ("fp32", "bf16") for cl in (False, True)}
    for row in model["latency"]:
        _check_ratios(row)
        assert row["throughput_img_s"] == pytest.approx(2 * 1000 / row["ours"]["median_ms"])
    assert model["load"] is None and results["necks"] == []
    assert results["settings"]["channels_last"] == [False, True] and results["settings"]["batches"] == [2]
    assert "## Latency matrix" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_compiled_rows_on_cpu(tmp_path, capsys):
    out = tmp_path / "compiled.json"
    argv = ["bench", "fpn_r50_coco", "--sizes", "64x64", "--runs", "2", "--quick", "--skip-load", "--skip-necks",
            "--compile", "on", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-4000:]
    (row,) = load_results(out)["models"][0]["latency"]
    assert row["compiled"] is True and min(row["compile_s"].values()) > 0
    _check_ratios(row)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["fpn_r5_coco"], ["Unknown model 'fpn_r5_coco'", "Did you mean: fpn_r50_coco", "Valid names: augfpn_"]),
        (["nomatch_*"], ["No model matches 'nomatch_*'", "Valid names: augfpn_"]),
        (["fpn_r50_coco", "--sizes", "10x5"], ["'10x5'", "multiple of 32 from 64 to 4096"]),
        (["fpn_r50_coco", "--sizes", "abc"], ["'abc' is not HxW", "e.g. 512x512"]),
        (["fpn_r50_coco", "--sizes", "0x512"], ["'0x512'", "multiple of 32 from 64 to 4096"]),
        (["fpn_r50_coco", "--sizes", "512x512,8192x8192"], ["'8192x8192'", "multiple of 32 from 64 to 4096"]),
        (["fpn_r50_coco", "--sizes", "100x512"], ["'100x512'", "multiple of 32"]),
        (["fpn_r50_coco", "--runs", "3"], ["--runs 3", "at least 10 timed runs", "--quick"]),
        (["fpn_r50_coco", "--precisions", "fp16"], ["'fp16'", "fp32, bf16"]),
        (["fpn_r50_coco", "--device", "tpu"], ["--device 'tpu'", "cpu, cuda or cuda:N"]),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_path, capsys, args, fragments):
    out = tmp_path / "never.json"
    assert main(["bench", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fpn-zoo: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_exits_2(tmp_path, capsys):
    assert main(["bench", "fpn_r50_coco", "--device", "cuda", "--out", str(tmp_path / "x.json")]) == 2
    assert "--device cuda: CUDA is not available here" in capsys.readouterr().err


def test_failed_job_is_recorded_and_exits_1(tmp_path, capsys, monkeypatch):
    from fpn_zoo.bench import runner

    stderr = "Traceback (most recent call last):\n  ...\nRuntimeError: out of memory\n"
    monkeypatch.setattr(runner, "_run_child", lambda job, workdir, index: (None, "exit code 1: boom", stderr))
    out = tmp_path / "failed.json"
    argv = ["bench", "fpn_r50_coco", "--runs", "3", "--quick", "--skip-necks", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "fpn-zoo: error: 4 job(s) failed: reference FLOPs (exit code 1: boom); fpn_r50_coco" in err
    assert "latency 512x512 (1 models) (exit code 1: boom)" in err
    assert "RuntimeError: out of memory" in err  # the child's stderr is shown
    results = load_results(out)  # still valid, and says what failed
    assert results["models"][0]["error"] == "exit code 1: boom" and results["models"][0]["latency"] == []
    assert results["references"]["detector"]["params"] is None
    assert "| fpn_r50_coco | r50 | fpn | error: exit code 1: boom |" in out.with_suffix(".md").read_text()


def _all_timings(obj):
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "times_ms":
                yield tuple(value)
            else:
                yield from _all_timings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _all_timings(value)


def test_v1_results_are_migrated_keeping_every_figure():
    before = V1_FULL.read_bytes()
    results = load_results(V1_FULL)
    assert V1_FULL.read_bytes() == before  # migrated in memory only
    v1 = json.loads(before)
    assert results["schema_version"] == 2 and results["migrated_from"] == 1 and results["migration_note"]
    assert set(_all_timings(v1)) <= set(_all_timings(results))
    assert len(results["models"]) == 20 and results["references"]["detector"]["params"] == 41808406
    models = {e["model"]: e for e in results["models"]}
    ref_row = next(r for r in v1["models"] if r["name"].startswith("torchvision:"))
    bifpn_v1 = next(r for r in v1["models"] if r["name"] == "bifpn_r50_coco")
    (row,) = models["bifpn_r50_coco"]["latency"]  # models table: ratio against the same run's reference row
    assert row["ratio"] == pytest.approx(
        bifpn_v1["latency"]["fp32"]["median_ms"] / ref_row["latency"]["fp32"]["median_ms"]
    )
    assert row["paired_ratio"] is None and row["reference"]["times_ms"] == ref_row["latency"]["fp32"]["times_ms"]
    assert models["bifpn_r50_coco"]["memory"]["ours_mib"] == bifpn_v1["peak_rss"]["increase_mib"]
    assert models["bifpn_r50_coco"]["load"] is None
    pairs = {(p["comparison"], p["size"]): p for p in v1["pairs"]}
    fpn_rows = {r["size"]: r for r in models["fpn_r50_coco"]["latency"]}  # the detector pairs: interleaved
    assert sorted(fpn_rows) == ["512x512", "800x1216"] and len(models["fpn_r50_coco"]["latency_models_table"]) == 1
    for size, row in fpn_rows.items():
        pair = pairs[("fpn_r50_coco vs torchvision fasterrcnn_resnet50_fpn", size)]
        assert row["ratio"] == pair["ratio"] and row["paired_ratio"] == pair["paired_ratio_median"]
    assert sorted((r["neck"], r["size"]) for r in results["necks"]) == [
        ("bifpn", "512x512"), ("bifpn", "800x1216"), ("fpn", "512x512"), ("fpn", "800x1216")
    ]  # fmt: skip
    assert len(results["extra_necks"]) == 2  # BiFPN at effdet's resdet50 width


def test_v1_pairs_only_file_is_migrated():
    results = load_results(V1_PAIRS)
    (model,) = results["models"]
    assert model["model"] == "fpn_r50_coco" and model["params"] is None and model["memory"] is None
    assert [r["ours"]["n"] for r in model["latency"]] == [40, 40]
    assert [r["neck"] for r in results["necks"]] == ["fpn", "fpn"]


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"schema_version": 3},
            "has schema 'fpn-zoo-bench' version 3; this fpn-zoo reads versions 1 (migrated) and "
            "2; upgrade fpn-zoo or re-run fpn-zoo bench",
        ),
        ({"schema": "other-bench"}, "has schema 'other-bench', not 'fpn-zoo-bench'"),
    ],
)
def test_unknown_schema_or_version_is_refused_by_name(tmp_path, change, message):
    path = _write(tmp_path / "x.json", {**load_results(V1_PAIRS), **change})
    with pytest.raises(BenchResultsError) as err:
        load_results(path)
    assert str(err.value).startswith(f"results file {path} {message}")


def test_file_without_schema_is_refused():
    with pytest.raises(BenchResultsError, match=r"load-cpu-20261121\.json has no 'schema' key"):
        load_results(RESULTS / "load-cpu-20261121.json")


def test_validation_names_the_file_and_key(tmp_path):
    results = load_results(V1_FULL)
    del results["models"][3]["memory"]["ours_mib"]
    path = _write(tmp_path / "broken.json", results)
    with pytest.raises(
        BenchResultsError, match=r"^results file .*broken\.json: models\[3\]\.memory\.ours_mib is missing"
    ):
        load_results(path)
    results = load_results(V1_FULL)
    results["necks"][0]["ours"]["times_ms"].pop()
    with pytest.raises(BenchResultsError, match=r"necks\[0\]\.ours\.times_ms has 14 timings but n is 15"):
        load_results(_write(tmp_path / "short.json", results))
    with pytest.raises(BenchResultsError, match=r"quick must be a bool"):
        load_results(_write(tmp_path / "quick.json", {**load_results(V1_PAIRS), "quick": "yes"}))


def test_find_results_sorted_by_date_and_filtered(tmp_path):
    shutil.copy(V1_FULL, tmp_path / "b.json")  # 12:43
    shutil.copy(V1_PAIRS, tmp_path / "a.json")  # 12:58 the same day
    shutil.copy(RESULTS / "load-cpu-20261121.json", tmp_path / "load.json")  # another benchmark: left out
    (tmp_path / "garbage.json").write_text("{not json")
    later = {**load_results(V1_PAIRS), "date": "2026-12-01T00:00:00+00:00", "device": "cuda:0"}
    _write(tmp_path / "0-newest.json", later)
    assert [p.name for p in find_results(tmp_path)] == ["b.json", "a.json", "0-newest.json"]
    assert [p.name for p in find_results(tmp_path, device="cuda")] == ["0-newest.json"]
    assert [p.name for p in find_results(tmp_path, device="cpu")] == ["b.json", "a.json"]


def _fs_type(path: Path) -> str:
    best = ("", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        mount, fs = line.split()[1], line.split()[2]
        if str(path).startswith(mount) and len(mount) > len(best[0]):
            best = (mount, fs)
    return best[1]


@pytest.mark.skipif(not Path("/proc/mounts").exists(), reason="Linux page-cache test")
def test_cold_means_evicted_from_page_cache(tmp_path):
    if _fs_type(tmp_path) in ("tmpfs", "ramfs"):
        pytest.skip("files on tmpfs live in memory: nothing to evict")
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\1" * (4 << 20))
    assert resident_fraction(path) == 1.0
    evict_from_page_cache(path)
    assert resident_fraction(path) == 0.0
