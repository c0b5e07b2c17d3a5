"""create_model with local weights: strict loading, fine-tuning heads, bad weights and bad options."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from model_helpers import SMALL, detect, model_with_detections
from safetensors.torch import save_file
from torchvision.ops.misc import FrozenBatchNorm2d

import fpn_zoo
from fpn_zoo.factory import WeightsNotAvailableError, resolve_device
from fpn_zoo.weights.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from fpn_zoo.weights.loading import WeightsMismatchError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An fpn_r50_coco with random weights and non-trivial BatchNorm statistics, exported to a folder."""
    model = model_with_detections("fpn_r50_coco")
    out = save_checkpoint(model.state_dict(), model.config, tmp_path_factory.mktemp("w") / "fpn_r50_coco")
    return model, out


def test_exported_folder_round_trips(exported):
    model, out = exported
    loaded = fpn_zoo.create_model("fpn_r50_coco", weights=out, device="cpu")
    assert loaded.config == model.config
    assert not loaded.training
    # Loading pretrained weights freezes backbone BatchNorm, as torchvision does.
    assert any(isinstance(m, FrozenBatchNorm2d) for m in loaded.backbone.body.modules())
    expected, got = detect(model), detect(loaded)
    assert len(expected["boxes"]) > 0
    torch.testing.assert_close(got["boxes"], expected["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-4, rtol=0)


def test_bare_safetensors_file_infers_class_count(exported, tmp_path):
    model, out = exported
    bare = tmp_path / "weights.safetensors"
    bare.write_bytes((out / "model.safetensors").read_bytes())
    loaded = fpn_zoo.create_model("fpn_r50_coco", weights=bare, device="cpu", **SMALL)
    assert loaded.config.num_classes == 91
    torch.testing.assert_close(detect(loaded)["scores"], detect(model)["scores"], atol=1e-4, rtol=0)


def test_num_classes_reinitialises_only_the_predictor(exported):
    model, out = exported
    with pytest.warns(UserWarning, match=r"dropped roi_heads\.box_predictor\.bbox_pred\.bias.*cls_score\.weight"):
        tuned = fpn_zoo.create_model("fpn_r50_coco", weights=out, num_classes=4, device="cpu")
    assert tuned.roi_heads.box_predictor.cls_score.out_features == 4
    assert tuned.roi_heads.box_predictor.bbox_pred.out_features == 16
    assert tuned.config.categories[0] == "__background__" and len(tuned.config.categories) == 4
    reference = model.state_dict()
    for key, value in tuned.state_dict().items():
        if key.startswith("roi_heads.box_predictor.") or key.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(value, reference[key], msg=key)
    assert all(not p.is_meta for p in tuned.parameters())


def test_same_num_classes_loads_without_warning(exported):
    _, out = exported
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fpn_zoo.create_model("fpn_r50_coco", weights=out, num_classes=91, device="cpu")


def test_weights_of_another_model_are_refused_by_name(exported):
    _, out = exported
    with pytest.raises(ValueError, match=r"exported for 'fpn_r50_coco', not 'panet_r50_coco'"):
        fpn_zoo.create_model("panet_r50_coco", weights=out, device="cpu")


def test_bare_weights_saved_for_another_model_are_refused_by_name(exported, tmp_path):
    _, out = exported
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes((out / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"saved for 'fpn_r50_coco', not 'panet_r50_coco'"):
        fpn_zoo.create_model("panet_r50_coco", weights=bare, device="cpu")


def test_foreign_weights_name_the_mismatched_tensors(exported, tmp_path):
    _, out = exported
    tensors = read_checkpoint(out).read_tensors()
    save_file(tensors, tmp_path / "foreign.safetensors")  # no fpn_zoo metadata, as from another tool
    with pytest.raises(WeightsMismatchError, match=r"missing \(backbone\.neck\.downsample_convs\.0\.bias") as err:
        fpn_zoo.create_model("panet_r50_coco", weights=tmp_path / "foreign.safetensors", device="cpu")
    assert "Nothing was loaded" in str(err.value)


def test_bare_file_ignores_an_unrelated_config_beside_it(exported, tmp_path):
    _, out = exported
    (tmp_path / "mine.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')  # e.g. another library's export
    model = fpn_zoo.create_model("fpn_r50_coco", weights=tmp_path / "mine.safetensors", device="cpu")
    assert model.config.name == "fpn_r50_coco"


def test_shape_mismatch_is_named(exported, tmp_path):
    _, out = exported
    tensors = read_checkpoint(out).read_tensors()
    tensors["backbone.neck.fpn_convs.0.weight"] = torch.zeros(8, 256, 3, 3)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(WeightsMismatchError, match=r"fpn_convs\.0\.weight: checkpoint \(8, 256, 3, 3\)"):
        fpn_zoo.create_model("fpn_r50_coco", weights=tmp_path / "model.safetensors", device="cpu")


def test_half_precision_file_gives_float32_model(exported, tmp_path):
    _, out = exported
    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in read_checkpoint(out).read_tensors().items()}
    save_file(tensors, tmp_path / "half.safetensors")
    model = fpn_zoo.create_model("fpn_r50_coco", weights=tmp_path / "half.safetensors", device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.pth", b"\x80\x04not really", r"not a \.safetensors file.*fpn-zoo convert"),
        ("garbage.safetensors", b"\x00\x01garbage", r"Cannot read weights file"),
    ],
)
def test_unusable_weight_files_are_refused(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        fpn_zoo.create_model("fpn_r50_coco", weights=path, device="cpu")


def test_missing_weights_and_empty_folder(tmp_path):
    with pytest.raises(CheckpointError, match=r"No weights at .*expected a \.safetensors file"):
        fpn_zoo.create_model("fpn_r50_coco", weights=tmp_path / "nope", device="cpu")
    with pytest.raises(CheckpointError, match=r"has no model\.safetensors"):
        fpn_zoo.create_model("fpn_r50_coco", weights=tmp_path, device="cpu")


def test_broken_config_json_is_reported(exported, tmp_path):
    _, out = exported
    (tmp_path / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"model": {"name": "fpn_r50_coco", "neck": "fpn"}}))
    with pytest.raises(CheckpointError, match=r"config\.json describes an invalid model"):
        fpn_zoo.create_model("fpn_r50_coco", weights=tmp_path, device="cpu")


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "4"])
def test_num_classes_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 1"):
        fpn_zoo.create_model("fpn_r50_coco", num_classes=bad, device="cpu")


def test_unknown_model_suggests_close_names():
    with pytest.raises(KeyError, match=r"Unknown model 'fpn_r5_coco'\. Did you mean: fpn_r50_coco"):
        fpn_zoo.create_model("fpn_r5_coco")


def test_unknown_and_identity_overrides_are_refused():
    with pytest.raises(TypeError, match=r"Unknown option 'min_sise'.*Valid options: .*min_size"):
        fpn_zoo.create_model("fpn_r50_coco", min_sise=3)
    with pytest.raises(TypeError, match=r"'neck' is part of the model name"):
        fpn_zoo.create_model("fpn_r50_coco", neck="bifpn")
    with pytest.raises(ValueError, match=r"min_size \(900\) must not exceed max_size \(800\)"):
        fpn_zoo.create_model("fpn_r50_coco", min_size=900, max_size=800)


def test_pretrained_without_weights_explains_the_options():
    with pytest.raises(
        WeightsNotAvailableError,
        match=r"'bifpn_r50_coco' has no pretrained weights yet.*Not trained yet.*pretrained_backbone=True",
    ):
        fpn_zoo.create_model("bifpn_r50_coco", pretrained=True)
    with pytest.raises(
        WeightsNotAvailableError, match=r"no weights tagged 'imagenet'. Its weights: coco_mmdet_mask_ms3x"
    ):
        fpn_zoo.create_model("fpn_r50_coco", pretrained="imagenet")
    with pytest.raises(ValueError, match="either weights=PATH or pretrained=True"):
        fpn_zoo.create_model("fpn_r50_coco", pretrained=True, weights="x")
    with pytest.raises(TypeError, match="pretrained must be True/False or a weights tag"):
        fpn_zoo.create_model("fpn_r50_coco", pretrained=1)


def test_device_resolution():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected
    assert next(fpn_zoo.create_model("fpn_r50_coco", **SMALL).parameters()).device.type == expected
    with pytest.raises(ValueError, match=r"Invalid device 'tpu0'"):
        resolve_device("tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            resolve_device("mps")
    with pytest.raises(ValueError, match=r"Invalid device 'tpu'"):
        resolve_device("tpu")


def test_trainable_layers_without_pretrained_weights_warns_like_torchvision():
    with pytest.warns(UserWarning, match=r"trainable_backbone_layers=2 has no effect"):
        model = fpn_zoo.create_model("fpn_r50_coco", trainable_backbone_layers=2, device="cpu")
    assert all(p.requires_grad for p in model.parameters())
