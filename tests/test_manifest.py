"""weights_manifest.json: schema validation, figures recomputed from the models, shipping inside the wheel."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import fpn_zoo
from fpn_zoo.inspect_model import count_flops, count_parameters
from fpn_zoo.labels import COCO_CATEGORIES
from fpn_zoo.weights.manifest import (
    MANIFEST_PATH,
    ManifestError,
    load_manifest,
    parse_manifest,
)

REPO = Path(__file__).resolve().parents[1]
RAW = json.loads((REPO / "weights_manifest.json").read_text())

PUBLISHED = {
    "tag": "coco",
    "status": "published",
    "label_space": "coco-91",
    "num_params": 1,
    "gflops": 1.0,
    "gflops_input_size": [800, 800],
    "metrics": [],
    "license": "Apache-2.0",
    "recipe": "r",
    "source": "s",
    "hub": {
        "repo_id": "acme/fpn_r50_coco",
        "filename": "model.safetensors",
        "revision": "a" * 40,
        "sha256": "b" * 64,
        "size": 10,
    },
    "upstream": None,
}


def _with_entry(entry: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(RAW)
    data["models"]["fpn_r50_coco"]["weights"] = [entry]
    return data


# Every checkpoint of shared/reference/conversions.md section 1 that fits a zoo model (the official ConvNeXt file has
# no published hash, so it is converted by hand instead): (model, tag, converter, hash prefix, upstream's box AP).
CONVERTIBLE = {
    ("fpn_r50_coco", "coco_tv", "torchvision", "258fb6c6", 37.0),
    ("fpn_r50_coco", "coco_tv_mask", "torchvision", "bf2d0c1e", 37.9),
    ("fpn_r50_coco", "coco_mmdet_1x", "mmdet", "047c8118", 37.4),
    ("fpn_r50_coco", "coco_mmdet_2x", "mmdet", "a5d8aa15", 38.4),
    ("fpn_r50_coco", "coco_mmdet_ms3x", "mmdet", "e10bd31c", 40.3),
    ("fpn_r50_coco", "coco_mmdet_rsb_1x", "mmdet", "32ae82a9", 40.8),
    ("fpn_r50_coco", "coco_mmdet_mask_ms3x", "mmdet", "21b550bb", 40.9),
    ("fpn_r101_coco", "coco_mmdet_1x", "mmdet", "f513f705", 39.4),
    ("fpn_r101_coco", "coco_mmdet_2x", "mmdet", "1d2dac9c", 39.8),
    ("fpn_r101_coco", "coco_mmdet_ms3x", "mmdet", "4d4d2ca8", 41.8),
    ("fpn_r101_coco", "coco_mmdet_mask_ms3x", "mmdet", "5675c317", 42.7),
    ("panet_r50_coco", "coco_mmdet_1x", "mmdet", "b7b4b9bd", 37.5),
    ("fpn_convnext_t_coco", "coco_mmdet_mask_ms3x", "mmdet", "050731f4", 46.2),
    ("fpn_r50_v2_coco", "coco_tv", "torchvision", "dd69338a", 46.7),
    ("fpn_r50_v2_coco", "coco_tv_mask", "torchvision", "73cbd019", 47.4),
}
TAG_CONVENTION = r"^coco(_(tv|mmdet|convnext))?(_mask)?(_(1x|2x|ms3x|rsb_1x))?$"  # docs/manifest.md


def test_repository_manifest_is_valid_and_lists_every_model():
    manifest = load_manifest(REPO / "weights_manifest.json")
    assert set(manifest.models) == set(fpn_zoo.list_models())
    assert manifest.label_spaces["coco-91"] == COCO_CATEGORIES
    found = set()
    for name, entries in manifest.models.items():
        for e in entries:
            assert re.match(TAG_CONVENTION, e.tag), f"{name}:{e.tag} does not follow the tag convention"
            assert e.status != "published", "nothing is published yet"
            if e.status == "not_trained":
                assert e.tag == "coco" and len(entries) == 1, f"{name}: a not_trained entry stands alone"
                continue
            up = e.upstream
            assert up.url.endswith(f"-{up.sha256_prefix}.pth") and len(up.sha256_prefix) == 8
            (metric,) = e.metrics
            assert (metric.dataset, metric.metric) == ("COCO val2017", "box_ap") and metric.date
            assert "not measured by fpn_zoo" in metric.source and "tests/test_convert_" in metric.source
            assert e.license and e.recipe.startswith("https://")
            found.add((name, e.tag, up.converter, up.sha256_prefix, metric.value))
    assert found == CONVERTIBLE


def test_the_default_weights_are_the_best_by_coco_box_ap():
    manifest = load_manifest(REPO / "weights_manifest.json")
    best = {}
    for name, tag, _, _, ap in CONVERTIBLE:
        if ap > best.get(name, ("", -1.0))[1]:
            best[name] = (tag, ap)
    assert {n: manifest.default_entry(n).tag for n in best} == {n: t for n, (t, _) in best.items()}
    assert manifest.default_entry("bifpn_r50_coco") is None
    assert fpn_zoo.list_models(pretrained=True) == sorted(best)
    assert fpn_zoo.list_models("fpn_r*", pretrained=True) == ["fpn_r101_coco", "fpn_r50_coco", "fpn_r50_v2_coco"]


def test_the_default_rule_breaks_ties_by_file_order_and_ranks_missing_figures_last():
    def entry(tag, ap):
        e = copy.deepcopy(PUBLISHED)
        e["tag"] = tag
        e["metrics"] = (
            [] if ap is None else [{"dataset": "COCO val2017", "metric": "box_ap", "value": ap, "source": "s"}]
        )
        return e

    data = copy.deepcopy(RAW)
    data["models"]["fpn_r50_coco"]["weights"] = [entry("coco_a", None), entry("coco_b", 40.0), entry("coco_c", 40.0)]
    assert parse_manifest(data, Path("m.json")).default_entry("fpn_r50_coco").tag == "coco_b"
    data["models"]["fpn_r50_coco"]["weights"] = [entry("coco_a", None), entry("coco_b", None)]
    assert parse_manifest(data, Path("m.json")).default_entry("fpn_r50_coco").tag == "coco_a"


@pytest.mark.parametrize("name", fpn_zoo.list_models())
def test_num_params_match_the_model(name):
    for entry in load_manifest().entries(name):
        assert entry.num_params == count_parameters(fpn_zoo.get_model_config(name))


def _check_gflops(name: str) -> None:
    for entry in load_manifest().entries(name):
        measured = count_flops(fpn_zoo.get_model_config(name), *entry.gflops_input_size).gflops
        assert entry.gflops == pytest.approx(measured, abs=0.006), name


def test_gflops_match_the_model_fpn_r50():
    _check_gflops("fpn_r50_coco")


@pytest.mark.slow
@pytest.mark.parametrize("name", fpn_zoo.list_models())
def test_gflops_match_the_model(name):
    _check_gflops(name)


def test_a_published_entry_parses():
    entry = parse_manifest(_with_entry(PUBLISHED), Path("m.json")).entry("fpn_r50_coco")
    assert entry is not None and entry.hub is not None
    assert entry.hub.config_filename == "config.json"
    nested = {**PUBLISHED, "hub": {**PUBLISHED["hub"], "filename": "coco/model.safetensors"}}
    entry = parse_manifest(_with_entry(nested), Path("m.json")).entry("fpn_r50_coco")
    assert entry is not None and entry.hub is not None and entry.hub.config_filename == "coco/config.json"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "ready"}, r"status: 'ready' is not one of"),
        ({"hub": None}, r"status 'published' requires a 'hub' location"),
        ({"status": "not_trained"}, r"status 'not_trained' forbids a 'hub' location"),
        ({"hub": {**PUBLISHED["hub"], "revision": "main"}}, r"revision: 'main' must be a full 40-hex commit"),
        ({"hub": {**PUBLISHED["hub"], "sha256": "abc"}}, r"sha256: 'abc' must be 64 lowercase hex"),
        ({"hub": {**PUBLISHED["hub"], "size": 0}}, r"size: must be positive"),
        ({"hub": {**PUBLISHED["hub"], "repo_id": "no-slash"}}, r"'no-slash' is not a Hub repository id"),
        ({"hub": {**PUBLISHED["hub"], "filename": "../model.safetensors"}}, r"must be a plain relative path"),
        ({"hub": {**PUBLISHED["hub"], "filename": "/etc/model.safetensors"}}, r"must be a plain relative path"),
        ({"hub": {**PUBLISHED["hub"], "filename": "a/../../model.safetensors"}}, r"must be a plain relative path"),
        ({"hub": {**PUBLISHED["hub"], "filename": "model.bin"}}, r"published weights are .safetensors files"),
        ({"label_space": "voc"}, r"label_space: 'voc' is not in label_spaces \['coco-91'\]"),
        ({"gflops_input_size": [800]}, r"expected \[height, width\]"),
        ({"num_params": "41M"}, r"num_params: expected int"),
        ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({"metrics": [{"dataset": "COCO", "metric": "box_ap", "value": 1.0}]}, r"metrics\[0\]: missing field 'source'"),
        (
            {"metrics": [{"dataset": "COCO", "metric": "box_ap", "value": 1.0, "source": "s", "date": "2026-13-01"}]},
            r"metrics\[0\]\.date: '2026-13-01' is not a date; write it as YYYY-MM-DD",
        ),
    ],
)
def test_schema_violations_are_named(change, message):
    with pytest.raises(ManifestError, match=message):
        parse_manifest(_with_entry({**PUBLISHED, **change}), Path("m.json"))


def test_manifest_level_violations():
    with pytest.raises(ManifestError, match=r"schema_version 1 is not supported; this fpn_zoo reads version 2"):
        parse_manifest({**RAW, "schema_version": 1}, Path("m.json"))
    data = _with_entry(PUBLISHED)
    data["models"]["fpn_r50_coco"]["weights"].append(PUBLISHED)
    with pytest.raises(ManifestError, match=r"duplicate tags \['coco', 'coco'\]"):
        parse_manifest(data, Path("m.json"))
    data = copy.deepcopy(RAW)
    data["models"]["fpn_r50_coco"]["weights"] = []
    with pytest.raises(ManifestError, match=r"list at least one entry"):
        parse_manifest(data, Path("m.json"))
    upstream = copy.deepcopy(RAW["models"]["fpn_r50_coco"]["weights"][0])
    upstream["upstream"]["sha256"] = "f" * 64
    prefix = upstream["upstream"]["sha256_prefix"]
    with pytest.raises(ManifestError, match=rf"must be 64 hex digits starting with the prefix {prefix}"):
        parse_manifest(_with_entry(upstream), Path("m.json"))
    upstream["upstream"]["sha256"] = None
    upstream["upstream"]["url"] = "file:///etc/passwd"
    with pytest.raises(ManifestError, match=r"must be an http\(s\) URL"):
        parse_manifest(_with_entry(upstream), Path("m.json"))


def test_env_var_selects_another_manifest(tmp_path, monkeypatch):
    other = tmp_path / "manifest.json"
    other.write_text(json.dumps(_with_entry(PUBLISHED)))
    monkeypatch.setenv("FPN_ZOO_MANIFEST", str(other))
    entry = load_manifest().entry("fpn_r50_coco")
    assert entry is not None and entry.status == "published"
    other.write_text("{not json")
    with pytest.raises(ManifestError, match=r"Cannot read the weights manifest .*manifest.json"):
        load_manifest()
    monkeypatch.delenv("FPN_ZOO_MANIFEST")
    assert load_manifest().path == MANIFEST_PATH


@pytest.mark.slow
def test_wheel_ships_the_manifest(tmp_path):
    """Installed packages have no repository root: the wheel carries a copy of the manifest (setup.py hook)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("fpn_zoo-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("fpn_zoo/weights_manifest.json") == (REPO / "weights_manifest.json").read_bytes()
