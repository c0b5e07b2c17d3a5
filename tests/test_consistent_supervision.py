"""AugFPN's consistent supervision: auxiliary losses on the raw laterals in training, nothing at all at inference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import roi_align

import fpn_zoo
from fpn_zoo.heads.consistent_supervision import AuxiliaryBoxHead, ConsistentSupervisionRoIHeads
from fpn_zoo.heads.small_boxes import FilteredRoIHeads
from fpn_zoo.weights.checkpoint import save_checkpoint
from fpn_zoo.weights.loading import WeightsMismatchError

MAIN_LOSSES = {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
AUX_LOSSES = {f"loss_aux_{kind}_p{level}" for kind in ("classifier", "box_reg") for level in (2, 3, 4, 5)}
AUX_PREFIX = "roi_heads.aux_head."

pytestmark = pytest.mark.usefixtures("single_thread")


def small_augfpn(**overrides) -> fpn_zoo.ZooDetector:
    """augfpn_r50_coco at 96-128 px with a shrunk RPN and RoI sampler (64 RoIs per image), seeded."""
    torch.manual_seed(0)
    model = fpn_zoo.create_model("augfpn_r50_coco", device="cpu", min_size=96, max_size=128, num_classes=4, **overrides)
    model.rpn._pre_nms_top_n = dict(training=200, testing=100)
    model.rpn._post_nms_top_n = dict(training=100, testing=50)
    model.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    return model


def batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 90, 120, generator=g), torch.rand(3, 100, 80, generator=g)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [50.0, 30.0, 115.0, 85.0]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.tensor([[5.0, 40.0, 70.0, 95.0]]), "labels": torch.tensor([2])},
    ]
    return images, targets


@pytest.fixture(scope="module")
def trained_step():
    """One training forward of a small augfpn model, with what its RoI heads saw and sampled."""
    model = small_augfpn().train()
    seen: dict = {"samples": []}

    def before_roi_heads(_module, args):
        seen["features"], seen["proposals"], seen["image_shapes"], seen["targets"] = args
        seen["rng"] = torch.get_rng_state()

    model.roi_heads.register_forward_pre_hook(before_roi_heads)
    select = model.roi_heads.select_training_samples

    def spy(proposals, targets):
        seen["samples"].append(select(proposals, targets))
        return seen["samples"][-1]

    model.roi_heads.select_training_samples = spy
    losses = model(*batch())
    del model.roi_heads.select_training_samples
    return model, losses, seen


def test_training_losses_are_main_plus_eight_weighted_aux_terms(trained_step):
    model, losses, seen = trained_step
    assert set(losses) == MAIN_LOSSES | AUX_LOSSES
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values()), losses
    assert len(seen["samples"]) == 1, "RoIs must be sampled once and shared by the main and auxiliary heads"
    raw = seen["features"].raw_laterals  # the neck's raw laterals reach the RoI heads
    assert raw is not None and len(raw) == 4

    # Independent computation: RoIAlign at each lateral's own scale (1/4 ... 1/32, the main pooler's settings:
    # 7x7, sampling ratio 2, unaligned), the auxiliary head, cross-entropy and smooth L1 (beta 1/9 over the number
    # of sampled RoIs, as the main head's torchvision loss), times alpha = 0.25.
    assert model.config.consistent_supervision_weight == 0.25
    proposals, _, labels, regression_targets = seen["samples"][0]
    labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
    positive = torch.where(labels > 0)[0]
    assert len(positive) > 0 and (labels == 0).any()
    aux = model.roi_heads.aux_head
    for i, lateral in enumerate(raw):
        assert lateral.shape[-1] * 2 ** (i + 2) == 128  # padded 128-px batch: stride 4 ... 32
        pooled = roi_align(lateral, proposals, (7, 7), spatial_scale=1 / 2 ** (i + 2), sampling_ratio=2)
        logits, deltas = aux.box_predictor(aux.box_head(pooled))
        cls = F.cross_entropy(logits, labels)
        deltas = deltas.reshape(len(deltas), -1, 4)[positive, labels[positive]]
        reg = F.smooth_l1_loss(deltas, regression_targets[positive], beta=1 / 9, reduction="sum") / len(labels)
        assert reg > 0
        torch.testing.assert_close(losses[f"loss_aux_classifier_p{i + 2}"], 0.25 * cls, atol=1e-6, rtol=0)
        torch.testing.assert_close(losses[f"loss_aux_box_reg_p{i + 2}"], 0.25 * reg, atol=1e-6, rtol=0)


def test_main_losses_are_torchvisions(trained_step):
    model, losses, seen = trained_step
    torch.set_rng_state(seen["rng"])  # the same RoI sampling
    _, expected = RoIHeads.forward(
        model.roi_heads, seen["features"], seen["proposals"], seen["image_shapes"], seen["targets"]
    )
    assert set(expected) == {"loss_classifier", "loss_box_reg"}
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value, atol=0, rtol=0)


def test_aux_loss_trains_the_aux_head_laterals_and_backbone_only():
    model = small_augfpn().train()
    losses = model(*batch())
    sum(v for k, v in losses.items() if k.startswith("loss_aux_")).backward()
    neck = model.backbone.neck

    def grads(module):
        return [p.grad for p in module.parameters() if p.requires_grad]

    for part in (model.roi_heads.aux_head, neck.lateral_convs, model.backbone.body):
        assert all(g is not None and torch.isfinite(g).all() for g in grads(part))
    for conv in (*neck.lateral_convs, model.roi_heads.aux_head.box_head.fc6):
        assert conv.weight.grad.abs().sum() > 0
    # The raw laterals are taken before residual feature augmentation and the top-down sum; the main head is separate.
    untouched = (
        neck.fpn_convs,
        neck.high_lateral_conv,
        neck.high_lateral_conv_attention,
        model.rpn,
        model.roi_heads.box_roi_pool,
        model.roi_heads.box_head,
        model.roi_heads.box_predictor,
    )
    for part in untouched:
        assert all(g is None for g in grads(part)), type(part).__name__


def detect(model: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    with torch.no_grad():
        return model(batch()[0])


def test_inference_ignores_the_aux_head():
    with_aux = small_augfpn(box_score_thresh=0.0)
    without = small_augfpn(box_score_thresh=0.0, consistent_supervision_weight=0.0)
    assert isinstance(with_aux.roi_heads, ConsistentSupervisionRoIHeads)
    assert type(without.roi_heads) is FilteredRoIHeads
    # Built last, the aux head leaves the inference weights of a seed unchanged.
    state, plain = with_aux.state_dict(), without.state_dict()
    assert set(state) - set(plain) == {k for k in state if k.startswith(AUX_PREFIX)} != set()
    for key, value in plain.items():
        torch.testing.assert_close(state[key], value, atol=0, rtol=0, msg=key)
    with torch.no_grad():
        for model in (with_aux, without):  # peaky class logits, so that there are detections to compare
            model.roi_heads.box_predictor.cls_score.weight.mul_(20)

    calls = []
    for module in with_aux.roi_heads.aux_head.modules():
        module.register_forward_pre_hook(lambda m, _args: calls.append(type(m).__name__))
    expected = detect(without)
    got = detect(with_aux)
    with torch.no_grad():
        for p in with_aux.roi_heads.aux_head.parameters():
            p.normal_(0, 10)
    got_random = detect(with_aux)
    assert calls == []
    assert sum(len(d["boxes"]) for d in expected) > 0
    for exp, *others in zip(expected, got, got_random, strict=True):
        for other in others:
            assert set(other) == {"boxes", "labels", "scores"}
            for key in exp:
                torch.testing.assert_close(other[key], exp[key], atol=0, rtol=0)


def test_roi_head_settings_carry_over():
    with_aux = fpn_zoo.create_model("augfpn_r50_coco", device="meta", box_score_thresh=0.3, box_nms_thresh=0.4)
    plain = fpn_zoo.create_model(
        "augfpn_r50_coco", device="meta", box_score_thresh=0.3, box_nms_thresh=0.4, consistent_supervision_weight=0
    )
    a, b = with_aux.roi_heads, plain.roi_heads
    assert a.weight == 0.25
    for attr in ("score_thresh", "nms_thresh", "detections_per_img"):
        assert getattr(a, attr) == getattr(b, attr)
    assert vars(a.proposal_matcher) == vars(b.proposal_matcher)
    assert vars(a.fg_bg_sampler) == vars(b.fg_bg_sampler)
    assert vars(a.box_coder) == vars(b.box_coder)
    head = a.aux_head
    assert head.output_size == tuple(a.box_roi_pool.output_size) == (7, 7)
    assert head.sampling_ratio == a.box_roi_pool.sampling_ratio == 2
    main = {k: v.shape for k, v in a.state_dict().items() if k.startswith(("box_head.", "box_predictor."))}
    assert {k: v.shape for k, v in head.state_dict().items()} == main  # same architecture, separate weights
    assert create_weight(0.5).roi_heads.weight == 0.5


def create_weight(weight: float) -> fpn_zoo.ZooDetector:
    return fpn_zoo.create_model("augfpn_r50_coco", device="meta", consistent_supervision_weight=weight)


@pytest.mark.parametrize("name", [n for n in fpn_zoo.list_models() if not n.startswith("augfpn_")])
def test_other_necks_have_no_aux_head(name):
    model = fpn_zoo.create_model(name, device="meta")
    assert type(model.roi_heads) is FilteredRoIHeads
    assert not any(k.startswith(AUX_PREFIX) for k in model.state_dict())


def test_other_necks_train_without_aux_losses():
    torch.manual_seed(0)
    model = fpn_zoo.create_model("fpn_r50_coco", device="cpu", min_size=96, max_size=128, num_classes=4).train()
    model.roi_heads.fg_bg_sampler.batch_size_per_image = 64
    assert set(model(*batch())) == MAIN_LOSSES


def test_weight_zero_switches_it_off():
    model = small_augfpn(consistent_supervision_weight=0.0).train()
    assert type(model.roi_heads) is FilteredRoIHeads
    assert not any(k.startswith(AUX_PREFIX) for k in model.state_dict())
    assert set(model(*batch())) == MAIN_LOSSES


@pytest.mark.parametrize("bad", [-0.25, math.nan, math.inf, True, "0.25", None])
def test_invalid_weights_are_refused(bad):
    with pytest.raises(ValueError, match=r"consistent_supervision_weight must be a finite number >= 0"):
        create_weight(bad)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True])
def test_roi_heads_refuse_weights_that_are_not_positive(bad):
    heads = create_weight(0).roi_heads
    with pytest.raises(ValueError, match=r"weight must be a finite number > 0"):
        ConsistentSupervisionRoIHeads.from_roi_heads(heads, in_channels=256, weight=bad)


def test_training_with_the_neck_in_eval_mode_is_refused():
    model = small_augfpn().train()
    model.backbone.eval()  # the neck returns no raw laterals
    with pytest.raises(RuntimeError, match=r"needs the neck's raw laterals.*model\.train\(\)"):
        model(*batch())


def test_checkpoints_keep_the_aux_head(tmp_path):
    """Exports hold the aux head (fine-tuning resumes it); a checkpoint without it loads only with weight 0."""
    model = small_augfpn()
    with torch.no_grad():
        model.roi_heads.aux_head.box_predictor.cls_score.bias.fill_(0.5)  # not a fresh initialisation
    folder = tmp_path / "augfpn"
    try:
        save_checkpoint(model.state_dict(), model.config, folder)
        loaded = fpn_zoo.create_model("augfpn_r50_coco", weights=folder, device="cpu")
        assert loaded.config.consistent_supervision_weight == 0.25
        torch.testing.assert_close(loaded.roi_heads.aux_head.state_dict(), model.roi_heads.aux_head.state_dict())

        inference_only = {k: v for k, v in model.state_dict().items() if not k.startswith(AUX_PREFIX)}
        save_checkpoint(inference_only, model.config, folder)  # overwritten: one 230 MB file at a time
        with pytest.raises(WeightsMismatchError, match=r"8 missing \(roi_heads\.aux_head\."):
            fpn_zoo.create_model("augfpn_r50_coco", weights=folder, device="cpu")
        plain = fpn_zoo.create_model("augfpn_r50_coco", weights=folder, device="cpu", consistent_supervision_weight=0)
        assert type(plain.roi_heads) is FilteredRoIHeads
    finally:
        for file in folder.glob("*"):  # pytest keeps the last runs' temporary folders
            file.unlink()


def test_aux_head_pools_every_box_on_every_level():
    head = AuxiliaryBoxHead(8, 3)
    laterals = [torch.rand(2, 8, 64 // 2**i, 96 // 2**i) for i in range(4)]
    boxes = [
        torch.tensor([[0.0, 0.0, 100.0, 120.0], [30.0, 20.0, 60.0, 50.0]]),
        torch.tensor([[8.0, 8.0, 200.0, 90.0]]),
    ]
    pooled = head.pool(laterals, boxes, [(256, 384), (250, 380)])
    assert pooled.shape == (4 * 3, 8, 7, 7)
    for i, lateral in enumerate(laterals):
        expected = roi_align(lateral, boxes, (7, 7), 1 / 2 ** (i + 2), 2)
        torch.testing.assert_close(pooled[3 * i : 3 * (i + 1)], expected, atol=0, rtol=0)


def test_fine_tuning_start_reinitialises_both_predictors(tmp_path):
    from fpn_zoo.weights.checkpoint import save_checkpoint

    model = fpn_zoo.create_model("augfpn_r50_coco", device="cpu", min_size=96, max_size=128)
    folder = save_checkpoint(model.state_dict(), model.config, tmp_path / "augfpn")
    with pytest.warns(UserWarning, match=r"roi_heads\.aux_head\.box_predictor\.cls_score\.weight"):
        tuned = fpn_zoo.create_model("augfpn_r50_coco", weights=folder, num_classes=4, device="cpu")
    assert tuned.roi_heads.box_predictor.cls_score.out_features == 4
    assert tuned.roi_heads.aux_head.box_predictor.cls_score.out_features == 4
    torch.testing.assert_close(
        tuned.roi_heads.aux_head.box_head.fc6.weight, model.roi_heads.aux_head.box_head.fc6.weight
    )  # everything but the class-specific layers is kept
