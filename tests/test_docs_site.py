"""The generated documentation pages: they match their sources, and every figure carries its source and date."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from fpn_zoo.cli import main
from fpn_zoo.docs_site import DocsSourceError, check_pages, load_sources, render_pages, write_pages
from fpn_zoo.docs_site.plot import svg_digest
from fpn_zoo.docs_site.zoo_rows import latency_row
from fpn_zoo.registry import list_models

REPO = Path(__file__).resolve().parents[1]
ZOO = Path("docs/zoo/index.md")
# A table cell that shows a figure: sortable by its number, with a tooltip.
FIGURE_CELL = re.compile(r'<td data-sort="(-?[0-9.e+-]+)" title="([^"]*)">([^<]*)')
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def test_committed_pages_match_their_sources():
    """The drift check: regenerate from weights_manifest.json and docs/results, compare with what is committed."""
    assert check_pages(REPO) == [], "run `fpn-zoo docs` and commit docs/zoo"


def test_cli_check_passes_on_the_repository(capsys):
    assert main(["docs", "--check", "--root", str(REPO)]) == 0
    assert "up to date" in capsys.readouterr().out


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    """A copy of what the pages are generated from, and the pages themselves."""
    for name in ("mkdocs.yml", "weights_manifest.json"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "docs" / "results", tmp_path / "docs" / "results")
    shutil.copytree(REPO / "docs" / "zoo", tmp_path / "docs" / "zoo")
    return tmp_path


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=1))


def test_drift_is_reported_and_regeneration_fixes_it(checkout: Path, capsys):
    fpn = lambda d: d["models"]["fpn_r50_coco"]["weights"][0]["metrics"][0]  # noqa: E731
    _edit_json(checkout / "weights_manifest.json", lambda d: fpn(d).update(value=38.5))
    (checkout / "docs/zoo/models/fpn_r50_coco.md").write_text("hand-edited\n")
    (checkout / "docs/zoo/models/old_model.md").write_text("a model that is no longer registered\n")

    problems = check_pages(checkout)
    assert "docs/zoo/index.md: differs from what its sources generate" in problems
    assert "docs/zoo/models/fpn_r50_coco.md: differs from what its sources generate" in problems
    assert "docs/zoo/models/old_model.md: no registered model has this page" in problems
    assert main(["docs", "--check", "--root", str(checkout)]) == 1
    assert "drift: docs/zoo/index.md" in capsys.readouterr().err

    changed = write_pages(checkout)
    assert Path("docs/zoo/index.md") in changed and Path("docs/zoo/models/old_model.md") in changed
    assert check_pages(checkout) == []
    assert "38.5" in (checkout / ZOO).read_text()


def test_plot_drift_is_judged_by_its_data(checkout: Path):
    svg = checkout / "docs/zoo/latency.svg"
    digest = svg_digest(svg.read_text())
    assert digest is not None
    svg.write_text(svg.read_text().replace(digest, "0" * 64))
    assert check_pages(checkout) == ["docs/zoo/latency.svg: drawn from other data than the sources hold now"]
    assert write_pages(checkout) == [Path("docs/zoo/latency.svg")]
    assert svg_digest(svg.read_text()) == digest


def test_every_shown_figure_names_its_source_and_date():
    pages = render_pages(load_sources(REPO)).pages
    zoo = pages[ZOO]
    cells = FIGURE_CELL.findall(zoo)
    assert len(cells) >= len(list_models()), "the zoo table shows no figures"
    for value, title, text in cells:
        assert "Source: " in title and DATE.search(title), (value, title)
        assert text.strip(), title
    rows = re.findall(r'<tr data-model="([^"]+)">', zoo)
    assert rows == list_models()


def test_the_coco_figure_is_the_manifests_with_its_source():
    zoo = render_pages(load_sources(REPO)).pages[ZOO]
    row = re.search(r'<tr data-model="fpn_r50_coco">.*?</tr>', zoo, re.S)[0]
    assert re.search(
        r'<td data-sort="37" title="box_ap on COCO val2017\. Source: weights_manifest\.json '
        r"\(fpn_r50_coco:coco_tv\), 2026-11-21: reported by torchvision",
        row,
    )
    assert "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth" in row and 'title="sha256 prefix 258fb6c6"' in row


def test_an_undated_metric_is_refused(checkout: Path):
    fpn = lambda d: d["models"]["fpn_r50_coco"]["weights"][0]["metrics"][0]  # noqa: E731
    _edit_json(checkout / "weights_manifest.json", lambda d: fpn(d).pop("date"))
    with pytest.raises(DocsSourceError, match=r"metric 'box_ap' on 'COCO val2017' \(37\) has no 'date'"):
        render_pages(load_sources(checkout))


def test_finetune_results_of_another_schema_are_refused_by_name(checkout: Path):
    path = next((checkout / "docs/results").glob("bccd-finetune-*.json"))
    _edit_json(path, lambda d: d.update(schema="fpn-zoo-finetune", schema_version=7))
    with pytest.raises(DocsSourceError, match=r"schema 'fpn-zoo-finetune' version 7; this fpn-zoo reads"):
        load_sources(checkout)


def test_a_results_file_without_a_date_is_refused(checkout: Path):
    path = next((checkout / "docs/results").glob("bccd-finetune-*.json"))
    _edit_json(path, lambda d: d.pop("date"))
    with pytest.raises(DocsSourceError, match="missing 'date'"):
        load_sources(checkout)


def test_not_a_checkout_is_a_clear_error(tmp_path: Path, capsys):
    assert main(["docs", "--root", str(tmp_path)]) == 2
    assert "is not an fpn-zoo checkout" in capsys.readouterr().err


def test_newest_full_benchmark_backs_the_table(checkout: Path):
    sources = load_sources(checkout)
    if sources.bench is None:
        pytest.skip("no benchmark results are committed")
    newer = copy.deepcopy(sources.bench.data)
    newer["date"] = "2099-01-01T00:00:00+00:00"
    newer["quick"] = True  # a smoke run never backs the pages, however new
    (checkout / "docs/results/bench-cpu-20990101T0000.json").write_text(json.dumps(newer))
    assert load_sources(checkout).bench.path == sources.bench.path


def test_a_gpu_run_adds_gpu_columns_and_sections(checkout: Path):
    """A CUDA results file (here derived from the CPU one, as a test input) adds GPU columns and page sections."""
    sources = load_sources(checkout)
    if sources.bench is None or sources.bench.data.get("migrated_from"):
        pytest.skip("no schema-2 benchmark results are committed")
    data = copy.deepcopy(sources.bench.data)
    data["device"] = "cuda"
    data["machine"]["gpu"] = "Synthetic GPU (test input)"
    data["settings"].update(batches=[1, 8], precisions=["fp32", "bf16"])
    for model in data["models"]:
        base = latency_row(model, "800x1216") if not model.get("error") else None
        if base is not None:
            model["latency"].append({**copy.deepcopy(base), "batch": 8, "precision": "bf16", "throughput_img_s": 123.0})
    (checkout / "docs/results/bench-cuda-20261121T0000.json").write_text(json.dumps(data))

    pages = render_pages(load_sources(checkout)).pages
    zoo = pages[ZOO]
    assert '<th data-sort-method="number">GPU img/s bf16 b8 800x1216' in zoo
    assert zoo.count('<td data-sort="123" title="images/s at 800x1216, bf16, batch 8') == len(
        sources.bench.data["models"]
    )
    page = pages[Path("docs/zoo/models/fpn_r50_coco.md")]
    assert "### Cost on GPU" in page and "Synthetic GPU (test input)" in page
