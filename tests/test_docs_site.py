"""The generated documentation pages: they match their sources, and every figure carries its source and date."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path

import pytest

from fpn_zoo.cli import main
from fpn_zoo.docs_site import DocsSourceError, check_pages, load_sources, render_pages, write_pages
from fpn_zoo.docs_site.plot import svg_digest
from fpn_zoo.docs_site.proofs import PROOFS, SAME_MODEL_CONFIGS, proof_for
from fpn_zoo.docs_site.zoo_rows import latency_row
from fpn_zoo.registry import list_models
from fpn_zoo.weights.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
ZOO = Path("docs/zoo/index.md")
# A table cell that shows a figure: sortable by its number, with a tooltip.
FIGURE_CELL = re.compile(r'<td data-sort="(-?[0-9.e+-]+)" title="([^"]*)">([^<]*)')
# A figure among several in one cell (a model's weights tags), with the same tooltip.
FIGURE_SPAN = re.compile(r'<span class="zoo-figure" data-value="(-?[0-9.e+-]+)" title="([^"]*)">([^<]*)</span>')
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def test_committed_pages_match_their_sources():
    """The drift check: regenerate from weights_manifest.json and docs/results, compare with what is committed."""
    assert check_pages(REPO) == [], "run `fpn-zoo docs` and commit docs/zoo"


def test_cli_check_passes_on_the_repository(capsys):
    assert main(["docs", "--check", "--root", str(REPO)]) == 0
    assert "up to date" in capsys.readouterr().out


@pytest.fixture(scope="module")
def repo_pages() -> dict[Path, str]:
    """The pages the repository's sources generate now (rendered once: it builds every model on the meta device)."""
    return render_pages(load_sources(REPO)).pages


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


def test_every_shown_figure_names_its_source_and_date(repo_pages):
    zoo = repo_pages[ZOO]
    cells = FIGURE_CELL.findall(zoo)
    assert len(cells) >= len(list_models()), "the zoo table shows no figures"
    spans = FIGURE_SPAN.findall(zoo)
    assert spans, "the weights column shows no AP"
    for value, title, text in cells + spans:
        assert "Source: " in title and DATE.search(title), (value, title)
        assert text.strip(), title
    rows = re.findall(r'<tr data-model="([^"]+)">', zoo)
    assert rows == list_models()


def _row(zoo: str, name: str) -> str:
    return re.search(rf'<tr data-model="{name}">.*?</tr>', zoo, re.S)[0]


def test_every_weights_tag_is_listed_with_its_ap_source_and_date(repo_pages):
    """The weights column lists every tag to load, default first and marked once, each AP as the manifest has it."""
    manifest = load_manifest(REPO / "weights_manifest.json")
    zoo = repo_pages[ZOO]
    for name in list_models():
        row = _row(zoo, name)
        available = [e for e in manifest.entries(name) if e.available]
        tags = re.findall(rf'<a href="models/{name}/#weights-([a-z0-9_]+)">', row)
        if not available:
            assert tags == [] and "how to train" in row, name
            continue
        default = manifest.default_entry(name)
        assert tags == [default.tag] + [e.tag for e in available if e is not default], name
        assert row.count("<strong>default</strong>") == 1
        assert re.search(rf"#weights-{default.tag}\"><code>{default.tag}</code></a> <strong>default</strong>", row)
        spans = FIGURE_SPAN.findall(row)
        assert len(spans) == len(available), name  # every tag here reports a COCO box AP
        ordered = [default] + [e for e in available if e is not default]
        for entry, (value, title, text) in zip(ordered, spans, strict=True):
            metric = next(m for m in entry.metrics if m.metric == "box_ap")
            assert float(value) == metric.value and text == f"{metric.value:.1f}"
            assert f"({name}:{entry.tag}), {metric.date}: {metric.source}" in html.unescape(title)
        # The AP column shows the default weights' figure and names the tag.
        ap = next(m for m in default.metrics if m.metric == "box_ap")
        cell = rf'<td data-sort="{ap.value:g}" title="box_ap on COCO val2017 \({default.tag}, the default weights\)'
        assert re.search(cell, row), name


def test_downloads_and_digests_are_the_manifests(repo_pages):
    row = _row(repo_pages[ZOO], "fpn_r50_coco")
    line = re.search(r'#weights-coco_tv"><code>coco_tv</code>.*?</div>', row)[0]
    assert 'href="https://download.pytorch.org/models/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"' in line
    assert 'title="download; sha256 prefix 258fb6c6">258fb6c6</code>' in line


def test_an_undated_metric_is_refused(checkout: Path):
    fpn = lambda d: d["models"]["fpn_r50_coco"]["weights"][0]["metrics"][0]  # noqa: E731
    value = fpn(json.loads((checkout / "weights_manifest.json").read_text()))["value"]
    _edit_json(checkout / "weights_manifest.json", lambda d: fpn(d).pop("date"))
    with pytest.raises(DocsSourceError, match=rf"metric 'box_ap' on 'COCO val2017' \({value:g}\) has no 'date'"):
        render_pages(load_sources(checkout))


def test_a_model_the_benchmark_did_not_cover_is_shown_as_not_measured(checkout: Path):
    """A model missing from the benchmark run (one registered after it) gets dashes that say so, never figures."""
    bench = load_sources(checkout).bench
    if bench is None:
        pytest.skip("no benchmark results are committed")
    for path in sorted((checkout / "docs/results").glob("bench-cpu-*.json")):  # every run the docs could fall back to
        if json.loads(path.read_text()).get("schema_version") == 2:
            _edit_json(path, lambda d: d.update(models=[m for m in d["models"] if m["model"] != "fpn_r50_coco"]))
    pages = render_pages(load_sources(checkout)).pages
    uncovered = [name for name in list_models() if load_sources(checkout).bench.model(name) is None]
    assert "fpn_r50_coco" in uncovered
    for name in uncovered:
        row = _row(pages[ZOO], name)
        dashes = re.findall(r'<td data-sort="" title="([^"]*)">\u2014</td>', row)
        assert len(dashes) >= 5, name  # params, GFLOPs, two latencies, memory
        for title in dashes[:5]:
            assert "not benchmarked yet" in title and f"run `fpn-zoo bench {name}`" in title, title
        page = pages[Path(f"docs/zoo/models/{name}.md")]
        assert "Not benchmarked yet" in page and f"`fpn-zoo bench {name}`" in page


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


# --------------------------------------------------------------------------------------------------------------------
# Model pages: every weights tag, its settings, and the tests that prove it


def _function_body(source: str, name: str) -> str:
    """The text of ``def name(...)`` up to the next top-level definition."""
    match = re.search(rf"^def {name}\(.*?(?=^(?:def |class |@|# ---)|\Z)", source, re.S | re.M)
    assert match, f"{name} is not defined"
    return match[0]


def test_every_convertible_entry_names_the_test_that_proves_it():
    manifest = load_manifest(REPO / "weights_manifest.json")
    convertible = [e for entries in manifest.models.values() for e in entries if e.upstream is not None]
    assert convertible
    for entry in convertible:
        assert proof_for(entry) is not None, f"{entry.model}:{entry.tag}: no test covers its upstream model"


@pytest.mark.parametrize("key", sorted(PROOFS))
def test_the_proofs_the_pages_cite_are_the_tests_that_exist(key):
    """Each proof names test functions that exist, run the upstream model the page says, with the stated tolerance."""
    proof = PROOFS[key]
    source = (REPO / proof.test).read_text()
    assert re.search(rf'^\s*"{proof.param}": ', source, re.M), f"{proof.test} has no reference {proof.param!r}"
    for name in proof.functions:
        body = _function_body(source, name)
        found = re.findall(r"assert_same_detections\(.*?score_atol=([0-9.e-]+), box_atol=([0-9.e-]+)", body)
        assert found and {(float(s), float(b)) for s, b in found} == {(proof.score_atol, proof.box_atol)}, name
    if proof.mmdet_config is not None:
        reference = (REPO / "tests" / "mmdet_reference.py").read_text()
        assert f'"{proof.param}": "{proof.mmdet_config}"' in reference
    else:
        builders = {"faster_v1": "v1_model()", "mask_v1": "v1_model(mask=True"}
        assert builders.get(proof.param, key) in source, f"{proof.test} does not build {key}"


def _mmdet_model_and_test_pipeline(config: str) -> tuple[dict, list]:
    import mmdet
    from mmengine.config import Config

    cfg = Config.fromfile(Path(mmdet.__file__).parent / ".mim" / "configs" / config)
    model = cfg.model.to_dict()
    model.pop("train_cfg", None)
    model["backbone"].pop("init_cfg", None)
    return model, [dict(step) for step in cfg.test_dataloader.dataset.pipeline]


@pytest.mark.parametrize("config", sorted(SAME_MODEL_CONFIGS))
def test_configs_covered_by_a_tested_config_build_the_same_model(config):
    """The pages say these mmdetection configs build the tested config's model and test pipeline (apart from the
    named fields): mmdetection's own config files say so too."""
    pytest.importorskip("mmengine")
    pytest.importorskip("mmdet")
    tested, differs, _ = SAME_MODEL_CONFIGS[config]
    (ours, our_pipeline), (theirs, their_pipeline) = (_mmdet_model_and_test_pipeline(c) for c in (config, tested))
    assert our_pipeline == their_pipeline
    for path in differs:
        *parents, leaf = path.split(".")
        a, b = ours, theirs
        for part in parents:
            a, b = a[part], b[part]
        assert a.pop(leaf) != b.pop(leaf), f"{path} does not differ"
    assert ours == theirs


def test_model_pages_list_every_tag_with_the_settings_fpn_zoo_info_shows(repo_pages):
    from fpn_zoo.inspect_model import describe_inference, model_report
    from fpn_zoo.registry import get_model_config

    manifest = load_manifest(REPO / "weights_manifest.json")
    pages = repo_pages
    for name in manifest.pretrained_models():
        page = pages[Path(f"docs/zoo/models/{name}.md")]
        report = model_report(get_model_config(name), input_size=None)
        for entry in report["weights"]:
            if entry["status"] == "not_trained":
                continue
            tag = entry["tag"]
            section = page.split(f"{{ #weights-{tag} }}", 1)[1].split("\n### ", 1)[0]
            assert describe_inference({**report["inference"], **entry["runs_with"]}) in section, (name, tag)
            assert f'create_model("{name}", pretrained="{tag}")' in section
            assert f"--pretrained {tag}`" in section
            assert entry["upstream"]["url"] in section and entry["upstream"]["sha256_prefix"] in section
            match = proof_for(manifest.entry(name, tag))
            assert f"(#{match.proof.anchor})" in section and f"{{ #{match.proof.anchor} }}" in page
            assert "[details](#what-could-not-be-verified)" in section
        assert "## What could not be verified" in page


def test_the_v2_model_has_its_page_in_the_navigation(repo_pages):
    assert "- [fpn_r50_v2_coco](fpn_r50_v2_coco.md)" in repo_pages[Path("docs/zoo/models/SUMMARY.md")]
    assert Path("docs/zoo/models/fpn_r50_v2_coco.md") in repo_pages
