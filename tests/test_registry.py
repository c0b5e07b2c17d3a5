"""Registry and configuration: names, duplicates, validation, manifest consistency."""

from __future__ import annotations

import dataclasses

import pytest

import fpn_zoo
from fpn_zoo.config import BACKBONES, VARIANTS, ModelConfig
from fpn_zoo.registry import register_model
from fpn_zoo.weights.manifest import load_manifest, weights_status


def test_every_pair_and_the_variants_are_registered_by_the_naming_rule():
    names = fpn_zoo.list_models()
    grid = {f"{n}_{b}_coco" for n in ("fpn", "panet", "bifpn", "augfpn") for b in BACKBONES}
    variants = {f"{n}_{b}_{v}_coco" for v, variant in VARIANTS.items() for n, b in variant.pairs}
    assert variants == {"fpn_r50_v2_coco"}
    assert set(names) == grid | variants and len(names) == 21
    for name in names:
        config = fpn_zoo.get_model_config(name)
        suffix = f"_{config.variant}" if config.variant else ""
        assert name == f"{config.neck}_{config.backbone}{suffix}_{config.dataset}"
        assert config.num_classes == 91 and config.categories[1] == "person" and config.categories[12] == "N/A"


def test_a_variant_is_its_options_on_the_plain_pair():
    v2 = fpn_zoo.get_model_config("fpn_r50_v2_coco")
    plain = fpn_zoo.get_model_config("fpn_r50_coco").replace(**VARIANTS["v2"].options)
    assert dataclasses.replace(v2, name=plain.name, variant=None) == plain
    with pytest.raises(TypeError, match="part of the model name"):
        v2.replace(variant=None)
    with pytest.raises(ValueError, match="must be 'fpn_r50_v2_coco'"):
        register_model(dataclasses.replace(v2, name="fpn_r50_coco_v2"))


def test_pattern_filter():
    assert fpn_zoo.list_models("bifpn_*") == [n for n in fpn_zoo.list_models() if n.startswith("bifpn_")]
    assert fpn_zoo.list_models("*_r101_*") == [
        "augfpn_r101_coco",
        "bifpn_r101_coco",
        "fpn_r101_coco",
        "panet_r101_coco",
    ]
    assert fpn_zoo.list_models("nothing*") == []


def test_backbone_table_maps_to_timm():
    assert {k: v.timm_name for k, v in BACKBONES.items()} == {
        "r50": "resnet50",
        "r101": "resnet101",
        "convnext_t": "convnext_tiny",
        "convnext_s": "convnext_small",
        "convnext_b": "convnext_base",
    }


def test_registering_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered under the name 'fpn_r50_coco'"):
        register_model(fpn_zoo.get_model_config("fpn_r50_coco"))
    with pytest.raises(ValueError, match=r"must be 'fpn_r50_coco'"):
        register_model(ModelConfig(name="my_model", backbone="r50", neck="fpn"))


def test_unknown_name_error_lists_close_names():
    with pytest.raises(KeyError) as err:
        fpn_zoo.get_model_config("bifpn_convnext_tiny_coco")
    assert "Did you mean: bifpn_convnext_t_coco" in err.value.args[0]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"neck": "unet"}, r"neck='unet' is not valid; choose from \('fpn', 'panet', 'bifpn', 'augfpn'\)"),
        ({"backbone": "r18"}, r"backbone='r18' is not valid"),
        ({"num_classes": 0}, r"num_classes must be an integer >= 1"),
        ({"categories": ("a", "b")}, r"categories has 2 names but num_classes is 91"),
        ({"neck_channels": 0}, r"neck_channels must be a positive integer"),
        ({"trainable_backbone_layers": 6}, r"trainable_backbone_layers must be an integer in \[0, 5\]"),
        ({"box_score_thresh": 1.5}, r"box_score_thresh must lie in \[0, 1\]"),
        ({"bifpn_fusion": "mean"}, r"bifpn_fusion='mean' is not valid"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(fpn_zoo.get_model_config("fpn_r50_coco"), **changes)


def test_config_json_round_trip_and_unknown_keys():
    config = fpn_zoo.get_model_config("bifpn_convnext_t_coco").replace(num_classes=3, bifpn_repeats=2)
    assert config.categories == ("__background__", "class_1", "class_2")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"Unknown model config keys \['colour'\]"):
        ModelConfig.from_dict({**config.to_dict(), "colour": 1})


def test_manifest_never_claims_unpublished_weights():
    manifest = load_manifest()
    assert set(manifest.models) == set(fpn_zoo.list_models()), "every registered model has a manifest entry"
    for name, entries in manifest.models.items():
        for entry in entries:
            assert entry.status != "published", f"{name}: nothing is published yet"
            assert (entry.status == "not_trained") == (name not in fpn_zoo.list_models(pretrained=True))
    assert "convertible" in weights_status("fpn_r50_coco")
    assert "not_trained" in weights_status("augfpn_r50_coco")


def test_checkout_reads_the_root_manifest():
    from pathlib import Path

    from fpn_zoo.weights.manifest import MANIFEST_PATH

    assert (Path(__file__).resolve().parents[1] / "weights_manifest.json").resolve() == MANIFEST_PATH


def test_repository_has_no_symlinks():
    """torch.hub unpacks GitHub zips with zipfile, which writes a symlink as a text file holding its target."""
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    listing = subprocess.run(["git", "ls-files", "-s"], cwd=repo, capture_output=True, text=True)
    if listing.returncode != 0:
        import pytest

        pytest.skip("not a git checkout")
    assert [line for line in listing.stdout.splitlines() if line.startswith("120000")] == []
