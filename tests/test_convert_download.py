"""Every convertible tag of the manifest, downloaded for real on loopback, converted once, then loaded offline.

For each layout the manifest's entries need (torchvision v1/v2 Faster and Mask R-CNN, mmdetection Faster and Mask
R-CNN on R-50/R-101/ConvNeXt-T, PAFPN), a checkpoint file is written in that upstream's own format (torchvision: a
bare state dict; mmdetection: ``{"meta", "state_dict"}`` in torch's legacy serialisation, as its ``publish_model``
writes) and served by a local HTTP server under the upstream file name of every entry that uses it. A copy of the
repository manifest points each entry's URL at that server; its ``sha256_prefix`` is the served file's own (these
are random weights, not the upstream files). Then, in fresh interpreters as a user would:

1. ``create_model(name, pretrained=tag)`` for every tag: each file is downloaded once, its prefix checked, converted,
   cached, and the model carries its converter's inference settings;
2. with ``HF_HUB_OFFLINE=1``: every tag resolves to the same cached conversion, no request, no conversion.

The mmdetection R-50 Faster R-CNN file has calibrated random weights, and the model loaded from the download cache
gives mmdetection's own detections on real photos. ``fpn-zoo publish-converted`` then exports and publishes entries
from the same caches to a stand-in Hub API.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mmdet_reference as mmref
import pytest
import torch
from fake_hub import FakeApi
from hub_servers import Caches, CountingFileServer, child_env, run_child, sha256_of
from model_helpers import v1_model
from photos import as_float, assert_same_detections, real_photos
from torchvision.models.detection import fasterrcnn_resnet50_fpn_v2, maskrcnn_resnet50_fpn_v2

import fpn_zoo
from fpn_zoo.converters import CONVERTERS
from fpn_zoo.inspect_model import FlopCount
from fpn_zoo.labels import COCO_CATEGORY_IDS
from fpn_zoo.weights.manifest import load_manifest

mmref.require_mmdet(mmpretrain=True)

REPO = Path(__file__).resolve().parents[1]
PHOTO_SIZE = (320, 480)


def _mmdet(key: str, *, calibrated: bool = False) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        model = mmref.build_mmdet_model(key)
        if calibrated:
            mmref.randomise_for_detections(model, seed=0, images=real_photos(2, PHOTO_SIZE))
        mmref.save_mmdet_checkpoint(model, path)

    return write


def _torchvision(build: Callable[[], torch.nn.Module]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        torch.manual_seed(0)
        torch.save(build().state_dict(), path)

    return write


# (model, converter, trained as Mask R-CNN) -> how to write a file of that layout
LAYOUTS: dict[tuple[str, str, bool], Callable[[Path], None]] = {
    ("fpn_r50_coco", "torchvision", False): _torchvision(v1_model),
    ("fpn_r50_coco", "torchvision", True): _torchvision(lambda: v1_model(mask=True)),
    ("fpn_r50_v2_coco", "torchvision", False): _torchvision(
        lambda: fasterrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)
    ),
    ("fpn_r50_v2_coco", "torchvision", True): _torchvision(
        lambda: maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None)
    ),
    ("fpn_r50_coco", "mmdet", False): _mmdet("faster_r50_fpn", calibrated=True),
    ("fpn_r50_coco", "mmdet", True): _mmdet("mask_r50_fpn"),
    ("fpn_r101_coco", "mmdet", False): _mmdet("faster_r101_fpn"),
    ("fpn_r101_coco", "mmdet", True): _mmdet("mask_r101_fpn"),
    ("panet_r50_coco", "mmdet", False): _mmdet("faster_r50_pafpn"),
    ("fpn_convnext_t_coco", "mmdet", True): _mmdet("mask_convnext_t_fpn"),
}
REPRESENTATIVE = ("fpn_r50_coco", "coco_mmdet_1x")  # its file has calibrated weights: detections are compared

# Cold: create_model(name, pretrained=tag) for every tag, and the folder it loaded from.
LOAD_ALL = """
import json, sys
from fpn_zoo.config import INFERENCE_FIELDS
from fpn_zoo.factory import create_model
from fpn_zoo.weights.resolve import resolve_pretrained
results = []
for model, tag in json.loads(sys.argv[1]):
    def load():
        m = create_model(model, pretrained=tag, device="cpu")
        return {"settings": {f: getattr(m.config, f) for f in INFERENCE_FIELDS}, "digest": hs.state_digest(m),
                "folder": str(resolve_pretrained(model, tag))}
    results.append({"model": model, "tag": tag, **hs.attempt(load)})
hs.emit(results=results, converter_imported="fpn_zoo.weights.convert" in sys.modules)
"""
# Warm and offline: what every load resolves its weights to (the I/O half of create_model; building the model from
# the folder is the same code as in the cold run, and test_the_downloaded_... builds one from the cache).
RESOLVE_ALL = """
import json, sys
from fpn_zoo.weights.resolve import resolve_pretrained
results = []
for model, tag in json.loads(sys.argv[1]):
    results.append({"model": model, "tag": tag, **hs.attempt(lambda: {"folder": str(resolve_pretrained(model, tag))})})
hs.emit(results=results, converter_imported="fpn_zoo.weights.convert" in sys.modules)
"""


def _layout(model: str, tag: str, converter: str) -> tuple[str, str, bool]:
    return (model, converter, "_mask" in tag)


@dataclass(frozen=True)
class Served:
    manifest: Path
    server: CountingFileServer
    names: dict[tuple[str, str], str]  # (model, tag) -> the served upstream file name
    prefixes: dict[tuple[str, str], str]


@pytest.fixture(scope="module")
def served(module_scratch, single_thread) -> Served:
    """Every layout written once, served under the upstream name of each entry using it; a manifest pointing there."""
    folder = module_scratch / "upstream"
    folder.mkdir()
    data = json.loads((REPO / "weights_manifest.json").read_text())
    with CountingFileServer() as server:
        files: dict[tuple[str, str, bool], tuple[Path, str]] = {}
        names, prefixes = {}, {}
        for model, block in data["models"].items():
            for entry in block["weights"]:
                if entry["status"] != "convertible":
                    continue
                up = entry["upstream"]
                layout = _layout(model, entry["tag"], up["converter"])
                if layout not in files:
                    path = folder / f"{'_'.join(map(str, layout))}.pth"
                    LAYOUTS[layout](path)
                    files[layout] = (path, sha256_of(path)[:8])
                path, prefix = files[layout]
                name = up["url"].rsplit("/", 1)[-1]  # the upstream file name, e.g. ..._20200130-047c8118.pth
                up.update(url=server.serve(name, path), sha256_prefix=prefix, sha256=None)
                names[model, entry["tag"]], prefixes[model, entry["tag"]] = name, prefix
        manifest = module_scratch / "weights_manifest.json"
        manifest.write_text(json.dumps(data, indent=1))
        yield Served(manifest, server, names, prefixes)


@dataclass(frozen=True)
class Loads:
    caches: Caches
    cold: dict[str, Any]
    warm: dict[str, Any]
    requests_cold: dict[str, int]
    requests_warm: dict[str, int]


@pytest.fixture(scope="module")
def loads(served, module_scratch) -> Loads:
    caches = Caches(module_scratch / "caches")
    tags = json.dumps(sorted(served.names))
    before = {n: served.server.count(n) for n in served.names.values()}
    cold = run_child(
        LOAD_ALL, child_env(caches, manifest=served.manifest), cwd=caches.root.parent, args=[tags], timeout=900
    )
    middle = {n: served.server.count(n) for n in served.names.values()}
    env = child_env(caches, manifest=served.manifest, offline=True)
    warm = run_child(RESOLVE_ALL, env, cwd=caches.root.parent, args=[tags], timeout=600)
    after = {n: served.server.count(n) for n in served.names.values()}
    return Loads(
        caches,
        cold,
        warm,
        {n: middle[n] - before[n] for n in before},
        {n: after[n] - middle[n] for n in before},
    )


def test_every_convertible_tag_loads_with_its_converters_settings(loads, served):
    manifest = load_manifest(REPO / "weights_manifest.json")
    assert len(loads.cold["results"]) == len(served.names) >= 15
    for outcome in loads.cold["results"]:
        assert outcome["ok"], f"{outcome['model']}:{outcome['tag']}: {outcome['error']}: {outcome['message']}"
        entry = manifest.entry(outcome["model"], outcome["tag"])
        default = fpn_zoo.get_model_config(outcome["model"])
        expected = {f: getattr(default, f) for f in outcome["value"]["settings"]}
        expected.update(
            {
                k: v
                for k, v in CONVERTERS[entry.upstream.converter]
                .options(entry.model, served.prefixes[entry.model, entry.tag])
                .items()
                if k in expected
            }
        )
        assert outcome["value"]["settings"] == expected, f"{entry.model}:{entry.tag}"
    assert loads.cold["converter_imported"]


def test_each_file_is_downloaded_once_and_the_second_run_is_offline(loads):
    assert set(loads.requests_cold.values()) == {1}, loads.requests_cold
    assert set(loads.requests_warm.values()) == {0}, loads.requests_warm
    for cold, warm in zip(loads.cold["results"], loads.warm["results"], strict=True):
        assert warm["ok"], f"{warm['model']}:{warm['tag']}: {warm['error']}: {warm['message']}"
        assert warm["value"]["folder"] == cold["value"]["folder"]
    assert not loads.warm["converter_imported"]  # offline and warm: not even imported


def test_tags_sharing_an_upstream_layout_load_the_same_tensors(loads, served):
    by_file: dict[str, set[str]] = {}
    for outcome in loads.cold["results"]:
        key = served.prefixes[outcome["model"], outcome["tag"]]
        by_file.setdefault(key, set()).add(outcome["value"]["digest"])
    assert all(len(digests) == 1 for digests in by_file.values())
    assert len(by_file) == len(LAYOUTS)


def test_the_downloaded_mmdetection_file_gives_mmdetections_detections(loads, served):
    model, tag = REPRESENTATIVE
    converted = loads.caches.fpn / "converted" / model / f"{tag}-{served.prefixes[model, tag]}"
    assert (converted / "model.safetensors").is_file()
    assert (loads.caches.checkpoints / served.names[model, tag]).is_file()  # torch's cache, under the upstream name
    reference = mmref.build_mmdet_model("faster_r50_fpn")
    mmref.randomise_for_detections(reference, seed=0, images=real_photos(2, PHOTO_SIZE))
    zoo = fpn_zoo.create_model(
        model, weights=converted, device="cpu", min_size=min(PHOTO_SIZE), max_size=max(PHOTO_SIZE)
    )
    photo = real_photos(1, PHOTO_SIZE)[0]
    expected = mmref.mmdet_predict(reference, photo)
    expected["labels"] = torch.tensor(COCO_CATEGORY_IDS)[expected["labels"]]
    with torch.no_grad():
        got = zoo([as_float(photo)])[0]
    assert_same_detections(expected, got, score_thresh=mmref.SCORE_THRESH)


# --------------------------------------------------------------------------------------------------------------------
# fpn-zoo publish-converted, from the same caches, to a stand-in Hub


@pytest.fixture
def fast_flops(monkeypatch):
    """Publishing counts FLOPs at 800x800 (a 10-second CPU forward); the figure is the manifest's business."""
    monkeypatch.setattr(
        "fpn_zoo.inspect_model.count_flops", lambda config, h, w, *, seed=0: FlopCount(1.0, (h, w), (h, w), 1000)
    )


@pytest.fixture
def warm_caches(loads, served, tmp_path, monkeypatch):
    """This process reads the caches the loads filled and a copy of the served manifest (which publishing rewrites).

    The caches are used in place: publishing only reads the converted folders (and records verifications).
    """
    for key, value in loads.caches.env().items():
        monkeypatch.setenv(key, value)
    manifest = tmp_path / "weights_manifest.json"
    shutil.copyfile(served.manifest, manifest)
    return manifest


def test_publish_converted_pins_every_entry_to_its_new_commit(warm_caches, served, fast_flops, tmp_path):
    from fpn_zoo.publish.converted import publish_converted

    manifest = warm_caches
    api = FakeApi(commit=None)  # each repository gets its own commit id
    done = publish_converted(
        "acme", work_dir=tmp_path / "exports", pattern="fpn_r50_v2_coco", manifest=manifest, api=api
    )
    assert [(d.model, d.tag, d.repo_id) for d in done] == [
        ("fpn_r50_v2_coco", "coco_tv_mask", "acme/fpn_r50_v2_coco.coco_tv_mask"),
        ("fpn_r50_v2_coco", "coco_tv", "acme/fpn_r50_v2_coco.coco_tv"),
    ]
    after = load_manifest(manifest)
    for d in done:
        entry = after.entry(d.model, d.tag)
        assert entry.status == "published" and entry.hub.repo_id == d.repo_id
        assert entry.hub.revision == d.result.commit and entry.hub.sha256 == sha256_of(
            d.export_dir / "model.safetensors"
        )
        assert [m.value for m in entry.metrics] == [47.4 if d.tag == "coco_tv_mask" else 46.7]  # the card's figure
        uploaded = api.uploads[d.repo_id]
        assert sorted(uploaded) == ["README.md", "config.json", "model.safetensors"]
        config = json.loads(uploaded["config.json"])
        assert config["model"]["box_head"] == "4conv1fc" and config["source"]["converter"] == "torchvision"
        assert "Faster R-CNN" in uploaded["README.md"].decode() or "Mask R-CNN" in uploaded["README.md"].decode()
    # Other models keep their convertible entries; a second run finds nothing left for this model.
    assert after.entry("fpn_r50_coco", "coco_tv").status == "convertible"
    assert (
        publish_converted("acme", work_dir=tmp_path / "exports", pattern="fpn_r50_v2_coco", manifest=manifest, api=api)
        == []
    )


def test_publish_converted_dry_run_writes_no_manifest_and_uploads_nothing(warm_caches, fast_flops, tmp_path, capsys):
    from fpn_zoo.cli import main

    manifest = warm_caches
    before = manifest.read_bytes()
    argv = ["publish-converted", "--org", "acme", "--work-dir", str(tmp_path / "x"), "--models", "panet_r50_coco"]
    assert main([*argv, "--manifest", str(manifest), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "acme/panet_r50_coco.coco_mmdet_1x: model.safetensors" in out and "drop --dry-run" in out
    assert manifest.read_bytes() == before
    assert (tmp_path / "x" / "panet_r50_coco.coco_mmdet_1x" / "README.md").is_file()
    # A rerun reuses that export; something else in its place is refused, not overwritten.
    assert main([*argv, "--manifest", str(manifest), "--dry-run"]) == 0
    (tmp_path / "x" / "panet_r50_coco.coco_mmdet_1x" / "config.json").write_text("{}")
    assert main([*argv, "--manifest", str(manifest), "--dry-run"]) == 2
    assert "nothing was overwritten" in capsys.readouterr().err


def test_a_file_of_another_layout_is_refused_and_leaves_nothing_in_the_caches(served, tmp_path, monkeypatch):
    """An entry whose server hands out a file for another model (here PAFPN weights under the R-50 FPN entry's name,
    with the right hash prefix): the conversion refuses it by name and no converted folder, finished or not, stays."""
    from fpn_zoo.converters import LayoutError

    data = json.loads(served.manifest.read_text())
    entry = next(e for e in data["models"]["fpn_r50_coco"]["weights"] if e["tag"] == "coco_mmdet_1x")
    pafpn = next(e for e in data["models"]["panet_r50_coco"]["weights"] if e["tag"] == "coco_mmdet_1x")
    entry["upstream"].update(url=pafpn["upstream"]["url"], sha256_prefix=pafpn["upstream"]["sha256_prefix"])
    manifest = tmp_path / "weights_manifest.json"
    manifest.write_text(json.dumps(data))
    caches = Caches(tmp_path / "caches")
    for key, value in {**caches.env(), "FPN_ZOO_MANIFEST": str(manifest)}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(LayoutError, match=r"converts to 'panet_r50_coco', not 'fpn_r50_coco'"):
        fpn_zoo.create_model("fpn_r50_coco", pretrained="coco_mmdet_1x", device="cpu")
    leftovers = [p for p in (caches.fpn / "converted").rglob("*") if p.is_file()]
    assert leftovers == []
