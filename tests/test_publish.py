"""Export folders, model cards, publishing to the Hub (with a stand-in ``HfApi``) and the ZooDetector Hub mixin.

The Hub itself is unreachable here, and uploading is ``huggingface_hub``'s job: these tests replace ``HfApi``'s
``create_repo``/``create_branch``/``upload_folder`` with fakes that return what the Hub returns (``RepoUrl``,
``CommitInfo``) and record what they were asked to upload, then check everything fpn_zoo does around that: the
validation before any network call, the one commit's files, and the manifest entry pinned to the commit.

FLOP counts (one 800x800 CPU forward pass, ~9 s) are replaced by a stand-in; tests assert they are requested at
800x800 for the exported architecture. ``tests/test_manifest.py`` checks the real counts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from cli_steps import printed_commands
from fake_hub import COMMIT, FakeApi, route_hfapi
from huggingface_hub import HfApi, ModelCard
from model_helpers import detect, model_with_detections

import fpn_zoo
from fpn_zoo.cli import main
from fpn_zoo.inspect_model import FlopCount, count_parameters
from fpn_zoo.publish import ExportError, UploadError, card_metrics, export_checkpoint, plan_publish, publish_export
from fpn_zoo.weights import hub_mixin
from fpn_zoo.weights.checkpoint import save_checkpoint
from fpn_zoo.weights.hub_download import HubFile
from fpn_zoo.weights.loading import WeightsMismatchError
from fpn_zoo.weights.manifest import MANIFEST_PATH, Metric, load_manifest, parse_manifest

FAKE_GFLOPS = 123.456
BCCD = ("__background__", "RBC", "WBC", "Platelets")
METRICS = [
    {"dataset": "COCO val2017", "metric": "box_ap", "value": 36.9, "source": "measured by fpn_zoo, 5000 images"},
    {"dataset": "COCO val2017", "metric": "box_ap50", "value": 58.1, "source": "measured by fpn_zoo | same run"},
    {"dataset": "BCCD val", "metric": "box_ap", "value": 61.0, "source": "measured by fpn_zoo", "date": "2026-11-21"},
]


@pytest.fixture(scope="module", autouse=True)
def fast_flops():
    """The FLOP count stands in for one 9-second CPU forward pass; calls are recorded."""
    calls = []

    def fake(config, height, width, *, seed=0):
        calls.append((config, height, width))
        return FlopCount(FAKE_GFLOPS, (height, width), (height, width), 1000)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("fpn_zoo.inspect_model.count_flops", fake)
        yield calls


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A random fpn_r50_coco with non-trivial BatchNorm statistics, saved as a checkpoint with provenance."""
    model = model_with_detections("fpn_r50_coco")
    folder = tmp_path_factory.mktemp("src") / "fpn_r50_coco"
    save_checkpoint(model.state_dict(), model.config, folder, extra={"source": {"trained_by": "tests"}})
    return model.eval(), folder


@pytest.fixture(scope="module")
def bccd_source(source, tmp_path_factory):
    """The same network with a 4-slot class predictor, as a fine-tune on BCCD would leave it."""
    model, _ = source
    state = dict(model.state_dict())
    g = torch.Generator().manual_seed(1)
    for name, rows in (("cls_score", 4), ("bbox_pred", 16)):
        state[f"roi_heads.box_predictor.{name}.weight"] = torch.randn(rows, 1024, generator=g)
        state[f"roi_heads.box_predictor.{name}.bias"] = torch.randn(rows, generator=g)
    config = model.config.replace(num_classes=4, categories=BCCD)
    return save_checkpoint(state, config, tmp_path_factory.mktemp("bccd") / "ckpt")


@pytest.fixture(scope="module")
def manifest_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("manifest") / "weights_manifest.json"
    shutil.copyfile(MANIFEST_PATH, path)
    return path


@pytest.fixture
def manifest(manifest_template, tmp_path):
    path = tmp_path / "weights_manifest.json"
    shutil.copyfile(manifest_template, path)
    return path


@pytest.fixture(scope="module")
def plain_export(source, tmp_path_factory):
    """An export without tag or metrics."""
    _, folder = source
    return export_checkpoint("fpn_r50_coco", folder, tmp_path_factory.mktemp("exp") / "plain")


@pytest.fixture(scope="module")
def bccd_export(bccd_source, tmp_path_factory, manifest_template):
    metrics = tmp_path_factory.mktemp("metrics") / "metrics.json"
    metrics.write_text(json.dumps(METRICS))
    out = tmp_path_factory.mktemp("exp") / "bccd"
    return export_checkpoint(
        "fpn_r50_coco", bccd_source, out, tag="bccd", metrics_file=metrics, license="Apache-2.0",
        datasets=["acme/bccd"], manifest=manifest_template,
    )  # fmt: skip


# --- export and model card ---------------------------------------------------------------------------------------


def test_export_round_trips_tensors_outputs_and_provenance(source, plain_export, fast_flops):
    model, folder = source
    out = plain_export.out_dir
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = fpn_zoo.create_model("fpn_r50_coco", weights=out, device="cpu")
    assert loaded.config == model.config
    reference = fpn_zoo.create_model("fpn_r50_coco", weights=folder, device="cpu").state_dict()
    exported = loaded.state_dict()
    assert exported.keys() == reference.keys()
    assert all(torch.equal(exported[k], reference[k]) for k in reference)
    expected, got = detect(model), detect(loaded)
    assert len(expected["boxes"]) > 0
    torch.testing.assert_close(got["boxes"], expected["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-4, rtol=0)
    config = json.loads((out / "config.json").read_text())
    assert config["source"] == {"trained_by": "tests"}  # the source's provenance survives
    assert config["export"]["checkpoint"] == {
        "file": "model.safetensors",
        "sha256": sha256(folder / "model.safetensors"),
    }
    assert plain_export.sha256 == sha256(out / "model.safetensors")
    assert (model.config, 800, 800) in fast_flops


def test_card_without_metrics_says_so_and_has_no_model_index(plain_export):
    path = plain_export.out_dir / "README.md"
    card = ModelCard.load(path)
    assert card.data.library_name == "fpn-zoo"
    assert card.data.pipeline_tag == "object-detection"
    assert {"object-detection", "fpn", "resnet50", "pytorch"} <= set(card.data.tags)
    assert not card.data.eval_results and card_metrics(card) == ()
    assert "model-index" not in path.read_text()
    assert card.data.license is None and "| Licence | not stated |" in card.text
    assert "No metrics were measured for these weights" in card.text
    assert f"sha256 `{plain_export.sha256}`" in card.text
    assert f"{count_parameters(fpn_zoo.get_model_config('fpn_r50_coco')):,}" in card.text
    assert "123.46 at 800x800" in card.text
    assert 'torch.hub.load("fpn-zoo/fpn-zoo", "fpn_r50_coco", weights="hf-hub:YOUR-ORG/YOUR-REPO")' in card.text
    assert 'fpn_zoo.create_model("fpn_r50_coco", weights="hf-hub:YOUR-ORG/YOUR-REPO")' in card.text
    assert "num_classes=K" in card.text
    assert "person, bicycle, car" in card.text and "91 class slots" in card.text


def test_card_model_index_holds_exactly_the_given_metrics_and_a_custom_label_space(bccd_export):
    card = ModelCard.load(bccd_export.out_dir / "README.md")
    given = {Metric(**m) for m in METRICS}
    assert set(card_metrics(card)) == given and len(card_metrics(card)) == len(METRICS)
    assert card.data.model_name == "fpn_r50_coco"
    assert card.data.license == "apache-2.0" and card.data.datasets == ["acme/bccd"]
    assert "measured by fpn_zoo \\| same run" in card.text  # a pipe in a source does not break the table
    assert "| measured by fpn_zoo | 2026-11-21 |" in card.text and "| not recorded |" in card.text
    assert "No metrics were measured" not in card.text
    assert "4 class slots" in card.text and "custom label space of 3 object classes" in card.text
    assert "RBC, WBC, Platelets" in card.text and "91" not in card.text.split("## Label space")[1][:300]
    assert 'pretrained="bccd", num_classes=K' in card.text
    config = json.loads((bccd_export.out_dir / "config.json").read_text())
    assert config["model"]["categories"] == list(BCCD)
    assert config["export"]["tag"] == "bccd" and config["export"]["license"] == "Apache-2.0"


def test_tag_takes_metrics_and_licence_from_the_manifest_entry(source, tmp_path, manifest_template):
    _, folder = source
    result = export_checkpoint("fpn_r50_coco", folder, tmp_path / "e", tag="coco_tv", manifest=manifest_template)
    entry = load_manifest(manifest_template).entry("fpn_r50_coco", "coco_tv")
    card = ModelCard.load(tmp_path / "e" / "README.md")
    assert card_metrics(card) == entry.metrics == result.metrics and len(entry.metrics) == 1
    assert card.data.license == "bsd-3-clause"
    assert "not measured by fpn_zoo" in card.text  # the upstream's claim keeps its label


def test_export_refuses_bad_inputs(source, bccd_source, tmp_path, manifest_template):
    _, folder = source
    with pytest.raises(ValueError, match="exported for 'fpn_r50_coco', not 'panet_r50_coco'"):
        export_checkpoint("panet_r50_coco", folder, tmp_path / "o")
    with pytest.raises(ExportError, match="lowercase letters"):
        export_checkpoint("fpn_r50_coco", folder, tmp_path / "o", tag="COCO")
    with pytest.raises(ExportError, match="own folder"):
        export_checkpoint("fpn_r50_coco", folder, folder)
    with pytest.raises(ExportError, match="label space 'coco-91'"):
        export_checkpoint("fpn_r50_coco", bccd_source, tmp_path / "o", tag="coco_tv", manifest=manifest_template)
    bad = tmp_path / "m.json"
    for content, message in [
        ([{"dataset": "d", "metric": "m", "value": 1.0}], "expected the keys"),
        ([{"dataset": "d", "metric": "m", "value": 1.0, "source": "s", "when": "x"}], "expected the keys"),
        ([{"dataset": "d", "metric": "m", "value": 1.0, "source": "s", "date": "21/11/2026"}], "YYYY-MM-DD"),
        ([{"dataset": "d", "metric": "m", "value": "high", "source": "s"}], "finite number"),
        ([{"dataset": "d", "metric": "m", "value": 1, "source": " "}], "non-empty strings"),
        ({"box_ap": 1}, "JSON list"),
    ]:
        bad.write_text(json.dumps(content))
        with pytest.raises(ExportError, match=message):
            export_checkpoint("fpn_r50_coco", folder, tmp_path / "o", metrics_file=bad)
    assert not (tmp_path / "o").exists()  # every check runs before anything is written


# --- publish -----------------------------------------------------------------------------------------------------


def test_publish_uploads_one_commit_and_pins_it_in_the_manifest(bccd_export, manifest):
    before = json.loads(manifest.read_text())
    api = FakeApi()
    result = publish_export(bccd_export.out_dir, "acme/fpn_r50_bccd", manifest=manifest, api=api)
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "acme/fpn_r50_bccd", "private": None, "exist_ok": True}
    assert sorted(api.uploaded) == ["README.md", "config.json", "model.safetensors"]
    assert hashlib.sha256(api.uploaded["model.safetensors"]).hexdigest() == bccd_export.sha256
    card = api.uploaded["README.md"].decode()
    assert 'weights="hf-hub:acme/fpn_r50_bccd"' in card and "YOUR-ORG" not in card
    assert result.commit == COMMIT

    text = manifest.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2) + "\n"
    parse_manifest(data, manifest)
    entry = load_manifest(manifest).entry("fpn_r50_coco", "bccd")
    assert entry.status == "published" and entry.available
    assert entry.hub.repo_id == "acme/fpn_r50_bccd" and entry.hub.filename == "model.safetensors"
    assert entry.hub.revision == COMMIT
    assert (entry.hub.sha256, entry.hub.size) == (bccd_export.sha256, bccd_export.size)
    assert set(entry.metrics) == {Metric(**m) for m in METRICS}
    assert entry.license == "Apache-2.0" and entry.gflops == 123.46 and entry.gflops_input_size == (800, 800)
    assert entry.num_params == count_parameters(fpn_zoo.get_model_config("fpn_r50_coco").replace(num_classes=4))
    assert entry.label_space == "fpn_r50_coco-bccd" and entry.categories == BCCD
    # Appended: the default entry is still torchvision's, and nothing else in the file changed.
    assert load_manifest(manifest).entry("fpn_r50_coco").tag == "coco_mmdet_mask_ms3x"
    expected = copy.deepcopy(before)
    expected["label_spaces"]["fpn_r50_coco-bccd"] = list(BCCD)
    expected["models"]["fpn_r50_coco"]["weights"].append(result.entry)
    assert data == expected


def test_publish_replaces_an_entry_in_place_and_reuses_its_label_space(source, tmp_path, manifest):
    _, folder = source
    export_checkpoint("fpn_r50_coco", folder, tmp_path / "e", tag="coco_tv", manifest=manifest)
    api = FakeApi()
    publish_export(tmp_path / "e", "acme/fpn_r50_coco", revision="v2", manifest=manifest, api=api)
    assert ("create_branch", {"repo_id": "acme/fpn_r50_coco", "branch": "v2", "exist_ok": True}) in api.calls
    assert api.calls[-1][1]["revision"] == "v2"
    manifest_now = load_manifest(manifest)
    entries = manifest_now.entries("fpn_r50_coco")
    assert [e.tag for e in entries] == [e.tag for e in load_manifest(MANIFEST_PATH).entries("fpn_r50_coco")]
    entry = manifest_now.entry("fpn_r50_coco", "coco_tv")
    assert entry.tag == "coco_tv" and entry.status == "published" and entry.label_space == "coco-91"
    assert entry.upstream is None and entry.source == "torchvision fasterrcnn_resnet50_fpn COCO_V1"
    assert len(manifest_now.label_spaces) == 1


def test_publishing_over_a_not_trained_entry_does_not_keep_its_recipe(plain_export, manifest):
    data = json.loads(manifest.read_text())
    data["models"]["fpn_r50_coco"]["weights"].append(copy.deepcopy(data["models"]["augfpn_r50_coco"]["weights"][0]))
    manifest.write_text(json.dumps(data, indent=2) + "\n")
    plan = plan_publish(plain_export.out_dir, "acme/fpn_r50_coco", tag="coco", manifest=manifest)
    assert plan.entry["recipe"] == "See the model card: https://huggingface.co/acme/fpn_r50_coco"
    assert plan.entry["source"] == "trained_by: tests"  # the checkpoint's own provenance
    assert plan.entry["metrics"] == [] and plan.entry["license"] is None  # the card states none


def test_dry_run_prints_the_plan_and_writes_nothing(bccd_export, manifest, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dry run touched the Hub")

    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(HfApi, name, refuse)
    stat, content = manifest.stat(), manifest.read_bytes()
    files = sorted(p.name for p in bccd_export.out_dir.iterdir())
    argv = ["publish", str(bccd_export.out_dir), "--repo-id", "acme/x", "--dry-run", "--manifest", str(manifest)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "nothing uploaded, nothing written" in out
    assert f"sha256 {bccd_export.sha256}" in out and f"{bccd_export.size:,} bytes" in out
    assert '"revision": "<commit id of the upload>"' in out and "new label space 'fpn_r50_coco-bccd'" in out
    assert manifest.read_bytes() == content and manifest.stat().st_mtime_ns == stat.st_mtime_ns
    assert sorted(p.name for p in bccd_export.out_dir.iterdir()) == files


def test_publish_cli_through_hfapi(bccd_export, manifest, capsys, monkeypatch):
    api = FakeApi()
    route_hfapi(monkeypatch, api)
    argv = ["publish", str(bccd_export.out_dir), "--repo-id", "acme/x", "--private", "--manifest", str(manifest)]
    assert main(argv) == 0, capsys.readouterr().err
    assert f"commit {COMMIT}" in capsys.readouterr().out
    assert api.calls[0][1]["private"] is True
    assert load_manifest(manifest).entry("fpn_r50_coco", "bccd").hub.revision == COMMIT


def test_publish_refuses_bad_inputs_before_any_upload(bccd_export, tmp_path, manifest):
    api = FakeApi()
    out = bccd_export.out_dir
    for kwargs, error in [
        ({"revision": "a" * 40}, "not a branch name"),
        ({"revision": "refs/pr/1"}, "not a branch name"),
        ({"repo_id": "no-namespace"}, "ORG/NAME"),
        ({"tag": "coco"}, "exported for tag 'bccd'"),
    ]:
        with pytest.raises(ExportError, match=error):
            publish_export(out, kwargs.pop("repo_id", "acme/x"), manifest=manifest, api=api, **kwargs)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(out / "config.json", partial)
    with pytest.raises(ExportError, match=r"missing model.safetensors, README.md"):
        plan_publish(partial, "acme/x", manifest=manifest)
    stale = tmp_path / "stale"
    shutil.copytree(out, stale)
    readme = stale / "README.md"
    readme.write_text(readme.read_text().replace(bccd_export.sha256, "0" * 64))
    with pytest.raises(ExportError, match="weights changed after the card"):
        plan_publish(stale, "acme/x", manifest=manifest)
    foreign = tmp_path / "foreign"
    shutil.copytree(out, foreign)
    config = json.loads((foreign / "config.json").read_text())
    config["model"]["name"], config["model"]["neck"] = "panet_r50_coco", "panet"
    (foreign / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsMismatchError, match="panet_r50_coco"):
        plan_publish(foreign, "acme/x", manifest=manifest)
    assert api.calls == []


def test_failed_upload_leaves_the_manifest_alone(bccd_export, manifest):
    import httpx2  # huggingface_hub's HTTP client: its errors wrap one of these responses
    from huggingface_hub.errors import HfHubHTTPError

    class Refusing(FakeApi):
        def upload_folder(self, **kwargs):
            response = httpx2.Response(403, request=httpx2.Request("POST", "https://huggingface.co/api/models/acme/x"))
            raise HfHubHTTPError("403 Forbidden: you cannot write to acme", response=response)

    content = manifest.read_bytes()
    with pytest.raises(UploadError, match=r"Uploading .* failed: 403 Forbidden"):
        publish_export(bccd_export.out_dir, "acme/x", manifest=manifest, api=Refusing())
    assert manifest.read_bytes() == content


def test_export_refuses_to_replace_an_export_and_prints_a_publish_step_that_runs(
    bccd_source, tmp_path, capsys, monkeypatch
):
    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(HfApi, name, lambda *a, **k: pytest.fail("the printed dry run touched the Hub"))
    out = tmp_path / "export"
    argv = ["export", "--model", "fpn_r50_coco", "--checkpoint", str(bccd_source), "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    (step,) = printed_commands(printed)
    assert step[:2] == ["publish", str(out)] and "--tag" in step and "--dry-run" in step
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(step) == 0, capsys.readouterr().err  # as printed
    assert "nothing uploaded, nothing written" in capsys.readouterr().out
    # A second export into the same folder is refused, naming the files; --overwrite replaces them.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"--out {out} would replace" in err and "model.safetensors" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([*argv, "--overwrite"]) == 0, capsys.readouterr().err


def test_cli_errors_are_one_line(bccd_export, capsys):
    argv = ["publish", str(bccd_export.out_dir), "--repo-id", "acme/x", "--revision", "a" * 40, "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fpn-zoo: error: --revision") and "\n" not in err
    assert main(["export", "--model", "fpn_r50_coco", "--checkpoint", "nowhere", "--out", "x"]) == 2
    assert capsys.readouterr().err.startswith("fpn-zoo: error: No weights at 'nowhere'")


# --- ZooDetector.save_pretrained / from_pretrained / push_to_hub ------------------------------------------------


def test_the_hub_methods_are_added_above_the_model(source):
    """fpn_zoo.ZooDetector is the model of fpn_zoo.detector plus the mixin; the model class has no I/O methods."""
    from fpn_zoo import detector

    model, _ = source
    assert fpn_zoo.ZooDetector is hub_mixin.ZooDetector and issubclass(fpn_zoo.ZooDetector, detector.ZooDetector)
    assert isinstance(model, fpn_zoo.ZooDetector) and isinstance(model, detector.ZooDetector)
    assert not any(hasattr(detector.ZooDetector, m) for m in ("from_pretrained", "save_pretrained", "push_to_hub"))


@pytest.fixture(scope="module")
def saved(source, tmp_path_factory):
    model, _ = source
    folder = tmp_path_factory.mktemp("saved") / "fpn_r50_coco"
    assert model.save_pretrained(folder) is None
    return model, folder


def test_save_pretrained_from_pretrained_round_trip(saved, fast_flops):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "not counted here" in (folder / "README.md").read_text()  # save_pretrained skips the slow FLOP count
    loaded = fpn_zoo.ZooDetector.from_pretrained(folder, device="cpu")
    assert isinstance(loaded, fpn_zoo.ZooDetector) and not loaded.training
    assert loaded.config == model.config
    torch.testing.assert_close(detect(loaded)["scores"], detect(model)["scores"], atol=1e-4, rtol=0)


def test_from_pretrained_is_strict(saved, tmp_path):
    _, folder = saved
    with pytest.raises(ValueError, match="strict=False"):
        fpn_zoo.ZooDetector.from_pretrained(folder, num_classes=5, device="cpu")
    with pytest.warns(UserWarning, match="re-initialised the class-specific predictor"):
        tuned = fpn_zoo.ZooDetector.from_pretrained(folder, strict=False, num_classes=5, device="cpu")
    assert tuned.roi_heads.box_predictor.cls_score.out_features == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same class count loads without any warning
        fpn_zoo.ZooDetector.from_pretrained(folder, strict=False, device="cpu")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.safetensors").symlink_to(folder / "model.safetensors")
    with pytest.raises(ValueError, match="no config\\.json"):
        fpn_zoo.ZooDetector.from_pretrained(bare)
    with pytest.raises(ValueError, match="neither a local folder nor a Hub repository id"):
        fpn_zoo.ZooDetector.from_pretrained("not a repo")


def test_from_pretrained_downloads_through_the_verified_fetch(saved, monkeypatch):
    _, folder = saved
    calls = []

    def fetch(repo_id, filename, revision, **kwargs):
        calls.append((repo_id, filename, revision, kwargs))
        return HubFile(folder / filename, COMMIT, "0" * 64)

    monkeypatch.setattr(hub_mixin, "fetch_hub_file", fetch)
    model = fpn_zoo.ZooDetector.from_pretrained("acme/fpn_r50_coco", revision="v1", local_files_only=True, device="cpu")
    assert model.config.name == "fpn_r50_coco"
    hub = {"token": None, "cache_dir": None, "local_files_only": True}
    assert calls == [
        ("acme/fpn_r50_coco", "model.safetensors", "v1", {**hub, "force_download": False}),
        ("acme/fpn_r50_coco", "config.json", COMMIT, hub),  # pinned to the commit the weights came from
    ]
    with pytest.raises(ValueError, match="Two revisions"):
        fpn_zoo.ZooDetector.from_pretrained("hf-hub:acme/fpn_r50_coco@v1", revision="v2")


def test_push_to_hub_is_one_commit_of_the_export(source, monkeypatch):
    model, _ = source
    api = FakeApi()
    route_hfapi(monkeypatch, api)
    metric = Metric("BCCD val", "box_ap", 61.0, "measured by tests")
    info = model.push_to_hub("acme/fpn_r50_coco", branch="dev", model_card_kwargs={"metrics": [metric]})
    assert info.oid == COMMIT
    assert [name for name, _ in api.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert sorted(api.uploaded) == ["README.md", "config.json", "model.safetensors"]
    card = ModelCard(api.uploaded["README.md"].decode())
    assert card_metrics(card) == (metric,) and 'weights="hf-hub:acme/fpn_r50_coco"' in card.text
