"""weights_manifest.json: schema validation, figures recomputed from the models, shipping inside the wheel."""

from __future__ import annotations

import copy
import json
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


def test_repository_manifest_is_valid_and_lists_every_model():
    manifest = load_manifest(REPO / "weights_manifest.json")
    assert set(manifest.models) == set(fpn_zoo.list_models())
    assert manifest.label_spaces["coco-91"] == COCO_CATEGORIES
    default = manifest.entry("fpn_r50_coco")
    assert default is not None and default.status == "convertible" and default.upstream is not None
    assert default.upstream.url.endswith("fasterrcnn_resnet50_fpn_coco-258fb6c6.pth")
    assert [(m.dataset, m.metric, m.value) for m in default.metrics] == [("COCO val2017", "box_ap", 37.0)]
    for name in fpn_zoo.list_models():
        if name != "fpn_r50_coco":
            assert manifest.entry(name) is None, f"{name} claims weights"
            assert [e.status for e in manifest.entries(name)] == ["not_trained"]


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
    with pytest.raises(ManifestError, match=r"must be 64 hex digits starting with the prefix 258fb6c6"):
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
