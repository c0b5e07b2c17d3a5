"""Ranking latency rows honestly: the median's confidence interval, ties marked, the FLOPs consistency check, the
shuffled round-robin order, and what the bench, its report and the docs do with a flagged run.

Hand-made numbers only (no model runs, no timed assertions); the end-to-end run is in test_bench_command.py.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from fpn_zoo.bench.ranking import (
    check_consistency,
    describe_violations,
    latency_ranking,
    median_ci,
    overlaps,
    paired_ratios,
    rank_rows,
)
from fpn_zoo.bench.results import BenchResultsError, validate_results
from fpn_zoo.bench.roundrobin import order_seed, shuffled_rounds, time_round_robin
from fpn_zoo.bench.work_order import contains
from fpn_zoo.cli import main

REPO = Path(__file__).resolve().parents[1]
SCHEMA2 = REPO / "docs" / "results" / "bench-cpu-20261121T1658.json"


# --------------------------------------------------------------------------------------------------------------------
# The confidence interval of a median


def _coverage(k: int, n: int) -> float:
    return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n


@pytest.mark.parametrize(("n", "k"), [(6, 1), (10, 2), (20, 6), (30, 10), (40, 14)])
def test_median_ci_uses_the_binomial_order_statistics(n, k):
    """[x_(k), x_(n+1-k)] with k the largest whose coverage is still >= 95 % (the published table's values)."""
    values = [float(v) for v in range(1, n + 1)]
    ci = median_ci(list(reversed(values)))  # the order of the input does not matter
    assert (ci.low, ci.high) == (values[k - 1], values[n - k]) and ci.n == n
    assert ci.coverage == pytest.approx(_coverage(k, n)) and ci.coverage >= 0.95
    assert _coverage(k + 1, n) < 0.95  # one step narrower would not reach 95 %


def test_median_ci_small_samples_fall_back_to_min_max_with_their_true_coverage():
    ci = median_ci([1.2, 0.9, 1.0, 1.1, 5.0])
    assert (ci.median, ci.low, ci.high) == (1.1, 0.9, 5.0)
    assert ci.coverage == pytest.approx(1 - 2 / 32)  # below 95 %, and the record says so
    assert ci.to_dict() == {"low": 0.9, "high": 5.0, "level": 0.95, "coverage": ci.coverage, "n": 5}


def test_median_ci_refuses_nonsense():
    with pytest.raises(ValueError, match="at least one"):
        median_ci([])
    with pytest.raises(ValueError, match="between 0 and 1"):
        median_ci([1.0], level=1.5)


def test_paired_ratios_divide_round_by_round():
    assert paired_ratios([2.0, 3.0, 8.0], [4.0, 3.0, 4.0]) == [0.5, 1.0, 2.0]
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])


# --------------------------------------------------------------------------------------------------------------------
# Ranking with ties


def test_overlapping_neighbours_share_a_rank_and_are_marked():
    rows = [
        ("fpn", 0.90, 0.88, 0.92),
        ("panet", 0.95, 0.91, 0.99),  # overlaps fpn: a tie, not ranked below it
        ("bifpn", 1.20, 1.15, 1.25),  # clear of both
        ("augfpn", 1.40, 1.38, 1.45),
        ("big", 1.44, 1.42, 1.50),  # overlaps augfpn
    ]
    ranked = rank_rows(rows)
    assert [(r.key, r.rank_text) for r in ranked] == [
        ("fpn", "≈1"),
        ("panet", "≈1"),
        ("bifpn", "3"),
        ("augfpn", "≈4"),
        ("big", "≈4"),
    ]
    assert not ranked[2].within_noise


def test_a_chain_of_overlaps_still_ranks_its_ends_apart():
    """c overlaps b, b overlaps a, but c is measurably slower than a: one model ranks above it."""
    ranked = rank_rows([("a", 1.0, 0.9, 1.1), ("b", 1.1, 1.05, 1.2), ("c", 1.2, 1.15, 1.3), ("d", 2.0, 1.9, 2.1)])
    assert [r.rank_text for r in ranked] == ["≈1", "≈1", "≈2", "4"]


def test_clear_rows_are_ranked_in_order():
    ranked = rank_rows([("slow", 2.0, 1.9, 2.1), ("fast", 1.0, 0.9, 1.1)])
    assert [(r.key, r.rank_text) for r in ranked] == [("fast", "1"), ("slow", "2")]
    assert overlaps((1, 2), (2, 3)) and not overlaps((1, 2), (2.01, 3))


# --------------------------------------------------------------------------------------------------------------------
# Hand-made results: two models on one backbone, FLOPs from the per-model processes, rows from the shared process


def _row(size: str, median: float, low: float, high: float, fast: tuple[float, float, float] | None = None) -> dict:
    times = [100.0 * median] * 3
    stats = {"n": 3, "median_ms": times[0], "min_ms": times[0], "max_ms": times[0], "q1_ms": times[0],
             "q3_ms": times[0], "iqr_ms": 0.0, "mean_ms": times[0], "times_ms": times}  # fmt: skip
    ref = {**stats, "median_ms": 100.0, "min_ms": 100.0, "max_ms": 100.0, "q1_ms": 100.0, "q3_ms": 100.0,
           "mean_ms": 100.0, "times_ms": [100.0] * 3}  # fmt: skip
    row = {
        "size": size, "batch": 1, "precision": "fp32", "channels_last": False, "compiled": False, "ours": stats,
        "reference": ref, "ratio": median, "paired_ratio": median,
        "paired_ratio_ci": {"low": low, "high": high, "level": 0.95, "coverage": 0.98, "n": 10},
        "throughput_img_s": 1000 / stats["median_ms"], "reference_throughput_img_s": 10.0, "timing": "shared_process",
    }  # fmt: skip
    if fast is not None:
        ci = {"low": fast[1], "high": fast[2], "level": 0.95, "coverage": 0.98, "n": 10}
        row.update(fast=stats, fast_ratio=fast[0], fast_paired_ratio=fast[0], fast_vs_eager_paired_ratio=1.0,
                   fast_paired_ratio_ci=ci)  # fmt: skip
    return row


def _entry(name: str, gflops: float, *rows: dict) -> dict:
    neck, backbone, dataset = name.split("_")
    return {"model": name, "backbone": backbone, "neck": neck, "dataset": dataset, "params": 1_000_000,
            "gflops": {"64x64": gflops}, "latency": list(rows), "memory": None, "load": None,
            "error": None}  # fmt: skip


def test_consistency_flags_a_containing_model_faster_beyond_the_intervals():
    fpn = _entry("fpn_r50_coco", 10.0, _row("64x64", 1.00, 0.97, 1.03))
    panet = _entry("panet_r50_coco", 11.0, _row("64x64", 0.90, 0.88, 0.93))  # contains FPN, clearly faster: noise
    deeper = _entry("fpn_r101_coco", 15.0, _row("64x64", 1.50, 1.40, 1.60))  # contains fpn_r50, slower: fine
    result = check_consistency([fpn, panet, deeper])
    assert result["ok"] is False and result["checked"] == 2  # panet over fpn_r50, fpn_r101 over fpn_r50
    (violation,) = result["violations"]
    assert [violation[k] for k in ("heavier", "lighter", "path")] == ["panet_r50_coco", "fpn_r50_coco", "eager"]
    assert violation["gflops"] == [11.0, 10.0] and violation["heavier_ci"] == [0.88, 0.93]
    assert (
        "panet_r50_coco (11.0 GFLOPs) ran faster than fpn_r50_coco (10.0 GFLOPs), which it contains, at 64x64"
        in violation["message"]
    )
    assert describe_violations(result).startswith("1 consistency violation(s): panet_r50_coco")


def test_consistency_compares_by_containment_not_by_flops():
    """The 2026-12-07 run's orders: BiFPN (fewer FLOPs) slower than FPN, AugFPN (fewer) slower than PANet; and
    containment reaches across backbones (panet_r101 contains fpn_r50) and through chains (ConvNeXt-B over T)."""
    fpn = _entry("fpn_r50_coco", 394.0, _row("64x64", 0.96, 0.89, 1.05))
    bifpn = _entry("bifpn_r50_coco", 339.0, _row("64x64", 1.31, 1.09, 1.51))
    panet = _entry("panet_r50_coco", 441.0, _row("64x64", 1.06, 0.93, 1.12))
    augfpn = _entry("augfpn_r50_coco", 421.0, _row("64x64", 1.34, 1.17, 1.48))
    assert check_consistency([fpn, bifpn, panet, augfpn]) == {
        **check_consistency([]),
        "checked": 2,
        "ok": True,
        "violations": [],
    }
    panet_r101 = _entry("panet_r101_coco", 585.0, _row("64x64", 0.80, 0.75, 0.85))
    assert [v["heavier"] for v in check_consistency([fpn, panet_r101])["violations"]] == ["panet_r101_coco"]
    assert contains("augfpn_convnext_b_coco", "fpn_convnext_t_coco")
    assert not contains("fpn_convnext_t_coco", "fpn_convnext_b_coco") and not contains("fpn_r50_coco", "fpn_r50_coco")
    assert not contains("fpn_r50_v2_coco", "fpn_r50_coco")  # other heads: neither contains the other
    fpn_r101 = _entry("fpn_r101_coco", 0.0, _row("64x64", 0.70, 0.65, 0.75))
    fpn_r101["gflops"] = None  # a run whose FLOP count failed still checks the latency, and says so without GFLOPs
    (violation,) = check_consistency([fpn, fpn_r101])["violations"]
    assert violation["gflops"] == [None, 394.0] and violation["message"].startswith("fpn_r101_coco ran faster than")
    assert not contains("fpn_r50_coco", "no_such_model") and not contains("bifpn_r101_coco", "fpn_r50_coco")


def test_consistency_accepts_a_faster_heavier_model_within_noise_and_checks_the_fast_path():
    fpn = _entry("fpn_r50_coco", 10.0, _row("64x64", 1.00, 0.95, 1.05, fast=(0.70, 0.68, 0.72)))
    panet = _entry("panet_r50_coco", 11.0, _row("64x64", 0.98, 0.93, 1.02, fast=(0.60, 0.58, 0.62)))
    result = check_consistency([fpn, panet])
    assert result["checked"] == 2 and [v["path"] for v in result["violations"]] == ["fast"]
    panet["latency"][0].update(fast_paired_ratio=0.71, fast_paired_ratio_ci={"low": 0.69, "high": 0.74})
    assert check_consistency([fpn, panet]) == {**result, "ok": True, "violations": []}


def test_old_rows_without_intervals_are_neither_ranked_nor_checked():
    fpn = _entry("fpn_r50_coco", 10.0, _row("64x64", 1.0, 0.9, 1.1))
    panet = _entry("panet_r50_coco", 11.0, _row("64x64", 0.5, 0.4, 0.6))
    for entry in (fpn, panet):
        del entry["latency"][0]["paired_ratio_ci"]
    assert check_consistency([fpn, panet]) == {**check_consistency([]), "ok": True}
    assert latency_ranking([fpn, panet], "64x64") == {}


def test_latency_ranking_ranks_eager_and_fast_separately():
    fpn = _entry("fpn_r50_coco", 10.0, _row("64x64", 1.00, 0.97, 1.03, fast=(0.70, 0.69, 0.71)))
    panet = _entry("panet_r50_coco", 11.0, _row("64x64", 1.02, 0.99, 1.06, fast=(0.80, 0.79, 0.81)))
    eager, fast = latency_ranking([fpn, panet], "64x64"), latency_ranking([fpn, panet], "64x64", fast=True)
    assert {k: r.rank_text for k, r in eager.items()} == {"fpn_r50_coco": "≈1", "panet_r50_coco": "≈1"}
    assert {k: r.rank_text for k, r in fast.items()} == {"fpn_r50_coco": "1", "panet_r50_coco": "2"}


# --------------------------------------------------------------------------------------------------------------------
# The shuffled round-robin order


def test_every_round_visits_every_callable_in_a_seeded_shuffled_order():
    names = [f"m{i}" for i in range(6)] + ["reference"]
    orders = shuffled_rounds(names, 30, seed=order_seed(0, "64x64/b1/fp32/contiguous/eager"))
    assert len(orders) == 30 and all(sorted(order) == sorted(names) for order in orders)
    assert len({tuple(order) for order in orders}) > 20  # freshly shuffled, not one order repeated
    assert {order[0] for order in orders} != {"m0"}  # the first slot moves around
    assert orders == shuffled_rounds(names, 30, seed=order_seed(0, "64x64/b1/fp32/contiguous/eager"))
    assert orders != shuffled_rounds(names, 30, seed=order_seed(1, "64x64/b1/fp32/contiguous/eager"))
    with pytest.raises(ValueError, match="distinct"):
        shuffled_rounds(["a", "a"], 1, seed=0)


def test_time_round_robin_calls_in_the_recorded_orders_after_warmup():
    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b", "reference")}
    times, orders = time_round_robin(fns, warmup=2, rounds=4, seed=7)
    expected = shuffled_rounds(list(fns), 6, seed=7)
    assert orders == expected[2:]
    assert calls == [name for order in expected for name in order]  # warm-up rounds are shuffled too
    assert {name: len(t) for name, t in times.items()} == {"a": 4, "b": 4, "reference": 4}
    assert all(t >= 0 for ts in times.values() for t in ts)


# --------------------------------------------------------------------------------------------------------------------
# The results file keeps reading old files and checks the new fields


def test_new_fields_are_validated_and_old_files_need_none():
    data = json.loads(SCHEMA2.read_text())
    validate_results(data, SCHEMA2)  # no intervals, no consistency: still valid
    data["models"][0]["latency"][0]["paired_ratio_ci"] = {"low": 1.1, "high": 1.0, "level": 0.95, "coverage": 0.98,
                                                          "n": 10}  # fmt: skip
    with pytest.raises(BenchResultsError, match=r"models\[0\]\.latency\[0\]\.paired_ratio_ci has low 1\.1 above"):
        validate_results(data, "x.json")
    data = json.loads(SCHEMA2.read_text())
    data["consistency"] = {"ok": True, "violations": [{"message": "x"}]}
    with pytest.raises(BenchResultsError, match=r"consistency\.ok must be true exactly when violations is empty"):
        validate_results(data, "x.json")


# --------------------------------------------------------------------------------------------------------------------
# The bench command: a flagged run exits 3 unless --allow-inconsistent; the report marks ties and the flag


def _fake_child(panet: tuple[float, float, float]):
    """Stands in for the measuring subprocesses with hand-made figures: fpn, panet (more FLOPs) and bifpn."""

    def run_child(job, workdir, index):
        if job["kind"] == "reference":
            return {"name": "torchvision", "params": 41_755_286, "gflops": {"64x64": 10.0}}, None, ""
        if job["kind"] == "model":
            flops = {"fpn_r50_coco": 10.0, "panet_r50_coco": 11.0, "bifpn_r50_coco": 12.0}[job["name"]]
            return _entry(job["name"], flops), None, ""
        rows = {
            "fpn_r50_coco": [_row("64x64", 1.00, 0.97, 1.03)],
            "panet_r50_coco": [_row("64x64", *panet)],
            "bifpn_r50_coco": [_row("64x64", 1.30, 1.25, 1.35)],
        }
        rounds = [{"size": "64x64", "order_seed": "fpn-zoo-bench:0:x", "orders": [["reference", "fpn_r50_coco"]]}]
        return {"size": job["size"], "rows": rows, "rounds": rounds}, None, ""

    return run_child


def _bench(tmp_path, monkeypatch, panet, *extra):
    from fpn_zoo.bench import runner

    monkeypatch.setattr(runner, "_run_child", _fake_child(panet))
    out = tmp_path / "bench.json"
    argv = ["bench", "fpn_r50_coco", "panet_r50_coco", "bifpn_r50_coco", "--sizes", "64x64", "--runs", "3",
            "--quick", "--skip-necks", "--out", str(out), *extra]  # fmt: skip
    return main(argv), out


def test_a_consistent_run_ranks_and_marks_ties(tmp_path, monkeypatch, capsys):
    code, out = _bench(tmp_path, monkeypatch, (1.02, 0.99, 1.06))
    assert code == 0, capsys.readouterr().err
    results = json.loads(out.read_text())
    assert results["consistency"]["ok"] is True and results["consistency"]["checked"] == 1  # panet over fpn only
    assert results["latency_rounds"][0]["order_seed"] == "fpn-zoo-bench:0:x"
    markdown = out.with_suffix(".md").read_text()
    assert "## Latency ranking at 64x64" in markdown
    assert "| ≈1 | fpn_r50_coco | 1.000 [0.970, 1.030] |" in markdown  # tied with panet: a shared rank
    assert "| ≈1 | panet_r50_coco | 1.020 [0.990, 1.060] |" in markdown
    assert "| 3 | bifpn_r50_coco | 1.300 [1.250, 1.350] |" in markdown
    assert "Consistency check passed: 1 comparison of a model with one it contains" in markdown


def test_an_inconsistent_run_is_flagged_and_exits_3(tmp_path, monkeypatch, capsys):
    code, out = _bench(tmp_path, monkeypatch, (0.90, 0.88, 0.93))
    err = capsys.readouterr().err
    assert code == 3
    assert "fpn-zoo bench: inconsistent: panet_r50_coco (11.0 GFLOPs) ran faster than fpn_r50_coco" in err
    assert "fpn-zoo: error: the run is flagged (1 consistency violation(s)" in err and "rerun on a quiet machine" in err
    results = json.loads(out.read_text())  # written all the same, and flagged
    assert results["consistency"]["ok"] is False and len(results["consistency"]["violations"]) == 1
    assert "**FLAGGED: 1 consistency violation(s)" in out.with_suffix(".md").read_text()
    code, out = _bench(tmp_path, monkeypatch, (0.90, 0.88, 0.93), "--allow-inconsistent")
    assert code == 0 and "--allow-inconsistent" in json.loads(out.read_text())["command"]
    assert "fpn-zoo: warning: the run is flagged" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------------
# The docs: a flagged file is refused; a ranked run marks ties in the tables


def _ranked_copy(flagged: bool) -> dict:
    """The committed schema-2 run with hand-made intervals (test input): fpn and panet on r50 tied at 512x512."""
    data = copy.deepcopy(json.loads(SCHEMA2.read_text()))
    data["date"] = "2099-01-01T00:00:00+00:00"
    for entry in data["models"]:
        for row in entry["latency"]:
            row["paired_ratio_ci"] = {"low": row["paired_ratio"] * 0.999, "high": row["paired_ratio"] * 1.001,
                                      "level": 0.95, "coverage": 0.98, "n": 10}  # fmt: skip
            if entry["model"] in ("fpn_r50_coco", "panet_r50_coco") and row["size"] == "512x512":
                row["paired_ratio"] = 1.0 + 0.01 * (entry["model"] == "panet_r50_coco")
                row["paired_ratio_ci"].update(low=0.95, high=1.05)
    if flagged:  # (the unflagged copy carries no check: its other rows are the old run's, not a consistent ranking)
        data["consistency"] = {"ok": False, "checked": 1, "violations": [{"message": "panet_r50_coco ran faster"}]}
    return data


def test_docs_refuse_a_flagged_results_file(checkout, capsys):
    (checkout / "docs/results/bench-cpu-20990101T0000.json").write_text(json.dumps(_ranked_copy(flagged=True)))
    assert main(["docs", "--check", "--root", str(checkout)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bench-cpu-20990101T0000.json is flagged by fpn-zoo bench's consistency" in err
    assert "panet_r50_coco ran faster" in err and "rerun `fpn-zoo bench` on a quiet machine" in err


def test_docs_tables_mark_ties_in_a_ranked_run(checkout):
    from fpn_zoo.docs_site import load_sources, render_pages

    data = _ranked_copy(flagged=False)
    for other in (checkout / "docs/results").glob("bench-cpu-*.json"):  # the site prefers the run with most models
        other.unlink()
    (checkout / "docs/results/bench-cpu-20990101T0000.json").write_text(json.dumps(data))
    sources = load_sources(checkout)
    assert sources.bench.path.name == "bench-cpu-20990101T0000.json"
    pages = render_pages(sources).pages
    zoo = pages[Path("docs/zoo/index.md")]
    assert "≈ marks a rank within noise" in zoo
    fpn_row = next(line for line in zoo.splitlines() if line.startswith('<tr data-model="fpn_r50_coco">'))
    panet_row = next(line for line in zoo.splitlines() if line.startswith('<tr data-model="panet_r50_coco">'))
    for row in (fpn_row, panet_row):
        assert 'class="zoo-rank" title="latency rank ≈' in row and "within noise of a neighbour" in row
    assert '<td data-sort="1" title=' in fpn_row and '<td data-sort="1.01" title=' in panet_row  # sort by ratio
    page = pages[Path("docs/zoo/models/panet_r50_coco.md")]
    assert "- 512x512, eager: rank ≈" in page and "within noise of a neighbour (95% intervals overlap)" in page
    assert "per round 1.010 (95% CI 0.950-1.050)" in page


# --------------------------------------------------------------------------------------------------------------------
# fpn-zoo bench compare: does a repeated run rank the same way?


def test_compare_flags_pairs_ordered_oppositely_and_never_ties(tmp_path, capsys):
    first = _ranked_copy(flagged=False)  # every row apart (intervals of +-0.1%) but fpn/panet r50 tied at 512x512
    second = copy.deepcopy(first)
    rows = {e["model"]: next(r for r in e["latency"] if r["size"] == "512x512") for e in second["models"]}
    rows["panet_r50_coco"].update(paired_ratio=0.5, paired_ratio_ci={**rows["panet_r50_coco"]["paired_ratio_ci"],
                                                                     "low": 0.49, "high": 0.51})  # fmt: skip
    paths = [tmp_path / "first.json", tmp_path / "second.json"]
    for path, data in zip(paths, (first, second), strict=True):
        path.write_text(json.dumps(data))
    assert main(["bench", "compare", *map(str, paths)]) == 0  # panet moved ahead of fpn, with which run 1 tied
    out = capsys.readouterr().out
    assert "512x512, eager:" in out and ": agree" in out and "contradiction" not in out

    slowest = max(rows, key=lambda name: rows[name]["paired_ratio"])  # now run 2 puts it ahead of panet too
    rows[slowest].update(paired_ratio=0.4, paired_ratio_ci={**rows[slowest]["paired_ratio_ci"], "low": 0.39,
                                                            "high": 0.41})  # fmt: skip
    paths[1].write_text(json.dumps(second))
    assert main(["bench", "compare", *map(str, paths)]) == 3
    out = capsys.readouterr().out
    assert "512x512, eager:" in out and "contradiction(s)" in out
    assert f"  fpn_r50_coco before {slowest} in the first run" in out  # a pair run 1 ordered, run 2 reversed

    paths[1].write_text("{}")
    assert main(["bench", "compare", *map(str, paths)]) == 2
    assert "fpn-zoo: error:" in capsys.readouterr().err
