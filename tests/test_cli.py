"""Tests for the ``fpn-zoo`` command line, run in-process through ``main`` on tiny images.

``predict`` runs with ``--min-size/--max-size`` of at most 128 so that a randomly initialised ResNet-50 detector
runs in about a second on a 2-core CPU; ``--score-thr 0`` keeps its (meaningless) detections so that drawing and
the JSON record are exercised.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_steps import printed_commands
from PIL import Image

import fpn_zoo
from fpn_zoo.cli import main
from fpn_zoo.labels import COCO_CATEGORIES

FAST = ["--min-size", "64", "--max-size", "96", "--device", "cpu"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fpn-zoo: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


def _image(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_list_table(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "backbone", "neck", "params", "(M)", "weights", "(default", "first)"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert sorted(rows) == fpn_zoo.list_models()
    assert rows["fpn_r50_coco"][:6] == ["fpn_r50_coco", "r50", "(resnet50)", "fpn", "41.76", "coco_mmdet_mask_ms3x,"]
    assert rows["fpn_r50_coco"][-1] == "coco_tv"
    assert rows["bifpn_convnext_t_coco"][1:5] == ["convnext_t", "(convnext_tiny)", "bifpn", "45.34"]
    assert " ".join(rows["bifpn_convnext_t_coco"][5:]) == "none (random init; see `info`)"
    assert lines[-1].startswith("21 models")


def test_list_pretrained(capsys):
    code, out, _ = _run(capsys, "list", "--pretrained", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == fpn_zoo.list_models(pretrained=True)
    assert {r["name"]: r["default_weights"] for r in rows}["fpn_r50_v2_coco"] == "coco_tv_mask"
    assert all(r["weights"] for r in rows)
    code, out, _ = _run(capsys, "list", "--pretrained", "bifpn")
    assert (code, out.splitlines()[0]) == (0, "No model matches 'bifpn' with weights; `fpn-zoo list` shows all 21.")


def test_list_json(capsys):
    code, out, _ = _run(capsys, "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 21
    assert [r["name"] for r in rows] == fpn_zoo.list_models()
    keys = {"name", "backbone", "timm_backbone", "neck", "num_params", "weights", "default_weights"}
    assert all(set(r) == keys for r in rows)
    by_name = {r["name"]: r for r in rows}
    # torchvision's FasterRCNN_ResNet50_FPN_Weights.COCO_V1 meta gives the same count for the same network.
    assert by_name["fpn_r50_coco"]["num_params"] == 41_755_286
    assert by_name["augfpn_convnext_b_coco"]["timm_backbone"] == "convnext_base"
    # Each neck adds parameters on top of the same backbone, so the counts differ between necks.
    assert len({by_name[f"{n}_r50_coco"]["num_params"] for n in ("fpn", "panet", "bifpn", "augfpn")}) == 4


@pytest.mark.parametrize(
    ("pattern", "count", "fragment"),
    [("bifpn_*", 5, "bifpn_"), ("*_convnext_?_coco", 12, "_convnext_"), ("r101", 4, "_r101_")],  # plain word: substring
)
def test_list_pattern(capsys, pattern, count, fragment):
    code, out, _ = _run(capsys, "list", "--json", pattern)
    assert code == 0
    names = [r["name"] for r in json.loads(out)]
    assert len(names) == count
    assert all(fragment in name for name in names)


def test_list_pattern_without_match(capsys):
    code, out, _ = _run(capsys, "list", "yolo_*")
    assert code == 0
    assert "No model matches 'yolo_*'" in out
    code, out, _ = _run(capsys, "list", "--json", "yolo_*")
    assert (code, json.loads(out)) == (0, [])


@pytest.fixture(scope="module")
def info_128() -> dict:
    """``info --json`` at 128x128, computed once: a FLOP count is one forward pass."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["info", "fpn_r50_coco", "--json", "--input-size", "128x128"]) == 0
    return json.loads(buffer.getvalue())


def test_info_json_with_flops(info_128):
    info = info_128
    assert info["name"] == "fpn_r50_coco"
    assert info["timm_backbone"] == "resnet50"
    assert info["backbone_channels"] == [256, 512, 1024, 2048]
    assert info["backbone_strides"] == [4, 8, 16, 32]
    assert info["pyramid_channels"] == 256
    assert info["pyramid_strides"] == [4, 8, 16, 32, 64]
    assert "RPN" in info["head"] and "MultiScaleRoIAlign 7x7 (sampling_ratio 2, unaligned)" in info["head"]
    assert info["inference"] == {
        "roi_align_aligned": False,
        "roi_align_sampling_ratio": 2,
        "round_anchors": True,
        "anchor_strides": "from_image",
        "box_delta_clamp": "upper",
        "rpn_min_box_size": 1e-3,
        "box_min_size": 1e-2,
        "frozen_bn_eps": 1e-5,
    }
    runs_with = {e["tag"]: e["runs_with"] for e in info["weights"]}
    assert runs_with["coco_tv"] == {"frozen_bn_eps": 0.0}  # torchvision's COCO_V1 file, recognised by its hash
    assert runs_with["coco_mmdet_1x"]["roi_align_aligned"] is True
    assert info["num_params"] == 41_755_286
    assert math.isfinite(info["gflops"]) and info["gflops"] > 0
    assert info["flops"]["input_size"] == info["flops"]["padded_size"] == [128, 128]
    assert info["flops"]["method"] == (
        "GFLOPs counted with torch.utils.flop_counter (2 FLOPs per multiply-add) at 128x128, random weights"
    )
    assert info["dataset"] == "coco"
    assert info["num_classes"] == 91 == len(info["categories"])
    assert info["categories"][:3] == ["__background__", "person", "bicycle"]
    assert "convertible" in info["weights_status"]


def test_info_text_flops_grow_with_image_and_report_padding(capsys, info_128):
    code, out, _ = _run(capsys, "info", "fpn_r50_coco", "--input-size", "50x70")
    assert code == 0
    assert "GFLOPs counted with torch.utils.flop_counter (2 FLOPs per multiply-add) at 50x70, random weights" in out
    assert "padded to 64x96 by the model" in out
    gflops = float(out.split("GFLOPs")[1].split()[0])
    assert 0 < gflops < info_128["gflops"]


def test_info_text_no_flops(capsys):
    code, out, _ = _run(capsys, "info", "augfpn_r50_coco", "--no-flops")
    assert code == 0
    assert out.splitlines()[0] == "augfpn_r50_coco"
    assert "timm resnet50" in out
    assert "C2-C5 channels 256/512/1024/2048" in out
    assert "AugFPN" in out and "Soft RoI Selection" in out
    assert "GFLOPs       not counted" in out
    assert "91 class slots" in out and "person, bicycle" in out
    assert "not_trained" in out and "No COCO weights yet" in out
    code, out, _ = _run(capsys, "info", "bifpn_r50_coco", "--no-flops", "--json")
    assert json.loads(out)["gflops"] is None


@pytest.mark.parametrize("command", [["info", "fpn_r5_coco"], ["predict", "--model", "fpn_r5_coco"]])
def test_unknown_model_suggests_names(capsys, tmp_path, command):
    code, out, err = _run(capsys, *command, *(["--out", str(tmp_path / "o")] if command[0] == "predict" else []))
    assert code == 2
    assert out == ""
    _assert_one_line_error(err, "Unknown model 'fpn_r5_coco'.", "Did you mean: fpn_r50_coco")
    assert not err.startswith('fpn-zoo: error: "')  # the message itself, not KeyError's quoted repr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("size", ["0x5", "abc", "4097x100", "800", "-1x5", "12.5x3"])
def test_info_rejects_bad_input_size(capsys, size):
    code, out, err = _run(capsys, "info", "fpn_r50_coco", f"--input-size={size}")
    assert code == 2
    assert out == ""
    _assert_one_line_error(err, "--input-size", repr(size))


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    _assert_one_line_error(capsys.readouterr().err, "required")
    assert main(["list", "--bogus"]) == 2
    _assert_one_line_error(capsys.readouterr().err, "--bogus")
    assert main(["--help"]) == 0
    assert "predict" in capsys.readouterr().out


def test_predict_writes_png_and_json_without_overwriting_same_stems(capsys, tmp_path):
    images = [_image(tmp_path / "a" / "img.png"), _image(tmp_path / "b" / "img.png", seed=1)]
    images.append(_image(tmp_path / "c" / "IMG.png", width=40, height=30, seed=2))
    out_dir = tmp_path / "out"
    code, out, err = _run(
        capsys,
        "predict",
        *map(str, images),
        "--model",
        "fpn_r50_coco",
        "--out",
        str(out_dir),
        "--score-thr",
        "0",
        "--random-init",
        *FAST,
    )
    assert code == 0, err
    assert "RANDOMLY INITIALISED" in err and "meaningless" in err
    stems = ["img", "img_1", "IMG_2"]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{s}.{e}" for s in stems for e in ("json", "png"))
    assert len(out.splitlines()) == 3
    for image, stem in zip(images, stems, strict=True):
        record = json.loads((out_dir / f"{stem}.json").read_text())
        assert set(record) == {"image", "width", "height", "model", "weights", "score_thr", "detections"}
        assert record["image"] == str(image)
        with Image.open(image) as src:
            assert (record["width"], record["height"]) == src.size
            original = np.asarray(src.convert("RGB"))
        assert record["model"] == "fpn_r50_coco"
        assert record["weights"] is None
        detections = record["detections"]
        assert detections, "score threshold 0 keeps the random model's detections"
        assert f"{image}: {len(detections)} detection(s)" in out
        for det in detections:
            assert set(det) == {"box", "score", "label", "label_name"}
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= record["width"] and 0 <= y1 <= y2 <= record["height"]
            assert 0.0 <= det["score"] <= 1.0
            assert det["label_name"] == COCO_CATEGORIES[det["label"]]
        with Image.open(out_dir / f"{stem}.png") as drawn:
            assert drawn.size == (record["width"], record["height"])
            assert not np.array_equal(np.asarray(drawn.convert("RGB")), original)  # boxes were drawn


def test_predict_missing_image_fails_before_writing(capsys, tmp_path):
    out_dir = tmp_path / "out"
    missing = tmp_path / "nope.jpg"
    code, out, err = _run(capsys, "predict", str(missing), "--model", "fpn_r50_coco", "--out", str(out_dir), *FAST)
    assert (code, out) == (2, "")
    _assert_one_line_error(err, f"Image '{missing}' does not exist")
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("option", "fragment"),
    [(["--score-thr", "1.5"], "--score-thr"), (["--score-thr", "x"], "--score-thr"), (["--device", "tpu"], "tpu")],
)
def test_predict_rejects_bad_options(capsys, tmp_path, option, fragment):
    image = _image(tmp_path / "img.png")
    code, _, err = _run(capsys, "predict", str(image), "--model", "fpn_r50_coco", "--out", str(tmp_path / "o"), *option)
    assert code == 2
    _assert_one_line_error(err, fragment)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_predict_cuda_without_cuda(capsys, tmp_path):
    image = _image(tmp_path / "img.png")
    code, _, err = _run(capsys, "predict", str(image), "--model", "fpn_r50_coco", "--device", "cuda")
    assert code == 2
    _assert_one_line_error(err, "CUDA is not available")


def test_predict_without_images_uses_sample(capsys, tmp_path):
    argv = ["predict", "--model", "fpn_r50_coco", "--out", str(tmp_path), "--min-size", "128", "--max-size", "128"]
    code, out, err = _run(capsys, *argv, "--random-init")
    assert code == 0, err
    assert "No image given: running on the packaged sample image" in out
    record = json.loads((tmp_path / "astronaut.json").read_text())
    assert Path(record["image"]).name == "astronaut.jpg"
    assert (record["width"], record["height"]) == (512, 512)
    assert record["score_thr"] == 0.5
    assert all(d["score"] >= 0.5 for d in record["detections"])
    assert (tmp_path / "astronaut.png").is_file()


def test_predict_without_weights_refuses_with_the_choices(capsys, tmp_path):
    code, _, err = _run(capsys, "predict", "--model", "bifpn_r50_coco", "--out", str(tmp_path / "o"))
    assert code == 2
    _assert_one_line_error(err, "bifpn_r50_coco has no trained weights", "fpn-zoo train --help", "--weights PATH")
    assert "--random-init" in err and not (tmp_path / "o").exists()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_predict_never_replaces_earlier_results_unasked(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = _image(tmp_path / "img.png")
    argv = ["predict", str(image), "--model", "fpn_r50_coco", "--random-init", "--score-thr", "0", *FAST]
    assert _run(capsys, *argv)[0] == 0
    first = _files(tmp_path / "predictions")
    # The default folder is used: the next free numbered one, said on the console.
    code, out, err = _run(capsys, *argv)
    assert code == 0, err
    assert "predictions holds earlier results" in out and "writing to predictions-2" in out
    assert _files(tmp_path / "predictions") == first and (tmp_path / "predictions-2" / "img.json").is_file()
    # A folder the user named: refused, naming the files and the choices, nothing touched.
    code, out, err = _run(capsys, *argv, "--out", "predictions")
    assert code == 2
    _assert_one_line_error(err, "--out predictions would replace", "img.png", "--overwrite", "--out predictions-3")
    assert _files(tmp_path / "predictions") == first
    code, _, err = _run(capsys, *argv, "--out", "predictions", "--overwrite")
    assert code == 0, err


def test_predict_pretrained_accepts_a_dataset_for_its_default_tag(capsys, tmp_path):
    # `--pretrained coco` on a model whose tags are coco_*: the best of them (the fetch itself fails offline here).
    from fpn_zoo.weights.manifest import load_manifest

    entry = load_manifest().entry("fpn_r50_coco", "coco")
    assert entry is not None and entry is load_manifest().default_entry("fpn_r50_coco")
    code, _, err = _run(capsys, "predict", "--model", "fpn_r50_coco", "--pretrained", "nope", "--out", str(tmp_path))
    assert code == 2
    _assert_one_line_error(err, "no weights tagged 'nope'", "coco_mmdet_mask_ms3x", "coco_tv", "--pretrained TAG")


def test_convert_refuses_non_checkpoint(capsys, tmp_path):
    bad = tmp_path / "x.pth"
    bad.write_text("hello\n")
    code, out, err = _run(capsys, "convert", "--from", "torchvision", str(bad), "--out", str(tmp_path / "out"))
    assert code == 2
    assert out == ""
    _assert_one_line_error(err, str(bad))
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_convert_refuses_unsupported_model(capsys, tmp_path):
    src = tmp_path / "x.pth"
    src.write_bytes(b"")
    argv = ["convert", "--from", "torchvision", str(src), "--model", "bifpn_r50_coco", "--out", str(tmp_path / "o")]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    _assert_one_line_error(err, "bifpn_r50_coco", "fpn_r50_coco", "fpn_r50_v2_coco")
    argv = ["convert", "--from", "mmdet", str(src), "--out", str(tmp_path / "o")]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    _assert_one_line_error(err, "is empty (0 bytes)")
    assert not (tmp_path / "o").exists()


def test_convert_prints_next_steps_that_run_as_printed(capsys, tmp_path, monkeypatch):
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    src = tmp_path / "tv.pth"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), src)
    out_dir = tmp_path / "fpn_r50_coco"
    code, out, err = _run(capsys, "convert", "--from", "torchvision", str(src), "--out", str(out_dir))
    assert code == 0, err
    assert str(out_dir / "model.safetensors") in out and str(out_dir / "config.json") in out
    assert "Recognised tv.pth: torchvision Faster R-CNN v1, ResNet-50, FPN" in out and "-> fpn_r50_coco" in out
    steps = printed_commands(out)
    assert [argv[0] for argv in steps] == ["info", "predict"]
    monkeypatch.chdir(tmp_path)  # predict writes ./predictions
    code, info, err = _run(capsys, *steps[0])
    assert code == 0, err
    assert "inference    RoIAlign aligned=False sampling_ratio=2" in info
    code, _, err = _run(capsys, *steps[1])
    assert code == 0, err
    assert "RANDOMLY INITIALISED" not in err
    assert json.loads((tmp_path / "predictions" / "astronaut.json").read_text())["weights"] == str(out_dir)


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "fpn-zoo"
    found = str(script) if script.is_file() else shutil.which("fpn-zoo")
    return [found] if found else [sys.executable, "-m", "fpn_zoo.cli"]


def test_console_script_runs():
    ok = subprocess.run([*_console_script(), "list", "fpn_r50_*"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[1].split()[:5] == ["fpn_r50_coco", "r50", "(resnet50)", "fpn", "41.76"]
    bad = subprocess.run([*_console_script(), "info", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    _assert_one_line_error(bad.stderr, "Unknown model 'nope'")


# --- download, predict --pretrained ------------------------------------------------------------------------------


def test_download_reports_the_verified_file_and_what_to_copy(capsys, tmp_path, monkeypatch):
    """A published entry served from a Hugging Face cache filled beforehand: the path an offline machine takes."""
    import hashlib

    from huggingface_hub import constants

    from fpn_zoo.weights.manifest import MANIFEST_PATH

    commit = "c" * 40
    snapshot = tmp_path / "hf" / "models--acme--fpn_r50_coco" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"stand-in weights: download does not load them")
    (snapshot / "config.json").write_text("{}\n")
    data = json.loads(MANIFEST_PATH.read_text())
    data["models"]["fpn_r50_coco"]["weights"].append({
        **data["models"]["fpn_r50_coco"]["weights"][0],
        "tag": "acme", "status": "published", "upstream": None,
        "hub": {
            "repo_id": "acme/fpn_r50_coco", "filename": "model.safetensors", "revision": commit,
            "sha256": hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest(),
            "size": (snapshot / "model.safetensors").stat().st_size,
        },
    })  # fmt: skip
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(data))
    monkeypatch.setenv("FPN_ZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("FPN_ZOO_CACHE", str(tmp_path / "fpn_zoo"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    code, out, err = _run(capsys, "download", "fpn_r50_coco", "--tag", "acme")
    assert code == 0, err
    assert f"fpn_r50_coco (tag acme, published): verified weights at {snapshot / 'model.safetensors'}" in out
    assert f"HF_HUB_CACHE={tmp_path / 'hf'}" in out and "models--acme--fpn_r50_coco" in out
    assert f"FPN_ZOO_CACHE={tmp_path / 'fpn_zoo'}" in out and "HF_HUB_OFFLINE=1" in out


def test_download_errors_are_one_line(capsys, tmp_path, monkeypatch):
    from huggingface_hub import constants

    code, _, err = _run(capsys, "download", "augfpn_r50_coco")
    assert code == 2
    _assert_one_line_error(err, "'augfpn_r50_coco' has no pretrained weights yet")
    code, _, err = _run(capsys, "download", "fpn_r50_coco", "--tag", "nope")
    assert code == 2
    _assert_one_line_error(err, "no weights tagged 'nope'", "coco_tv")
    # Offline with empty caches: the convertible entry cannot be fetched (WeightsDownloadError, a RuntimeError).
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("FPN_ZOO_CACHE", str(tmp_path / "fpn_zoo"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    code, _, err = _run(capsys, "download", "fpn_r50_coco")
    assert code == 2
    _assert_one_line_error(err, "HF_HUB_OFFLINE=1 forbids downloading", "fpn-zoo download")


def test_predict_pretrained_option(capsys, tmp_path):
    out = str(tmp_path / "o")
    code, _, err = _run(capsys, "predict", "--model", "augfpn_r50_coco", "--pretrained", "--out", out, *FAST)
    assert code == 2
    _assert_one_line_error(err, "'augfpn_r50_coco' has no pretrained weights yet")
    code, _, err = _run(capsys, "predict", "--model", "fpn_r50_coco", "--pretrained", "img.jpg", "--out", out)
    assert code == 2
    _assert_one_line_error(err, "--pretrained 'img.jpg' is not a weights tag")
    code, _, err = _run(capsys, "predict", "--model", "fpn_r50_coco", "--pretrained", "--weights", "w", "--out", out)
    assert code == 2
    _assert_one_line_error(err, "not allowed with argument")
    assert not (tmp_path / "o").exists()
