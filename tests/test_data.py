"""Tests for fpn_zoo.data: COCO loading and validation, transforms, the grouped batch sampler, collate, synthetic data.

Real data (BCCD, coco128) is read from ``../shared/data`` (or ``$FPN_ZOO_SHARED/data``); those tests skip when it is
absent. Every malformed-annotation case is written on the fly into ``tmp_path`` from a small synthetic dataset.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler
from torchvision import tv_tensors

from fpn_zoo.data import (
    BOX_TOLERANCE,
    COLOURS,
    PROBLEM_KINDS,
    CocoDetection,
    DatasetError,
    DatasetWarning,
    GroupedBatchSampler,
    ShrinkToFit,
    build_eval_transforms,
    build_train_transforms,
    collate_detection,
    create_aspect_ratio_groups,
    write_synthetic_coco,
)
from fpn_zoo.labels import COCO_CATEGORIES

pytest.importorskip("pycocotools", reason="CocoDetection needs pycocotools: pip install pycocotools")

SHARED = Path(os.environ.get("FPN_ZOO_SHARED", Path(__file__).resolve().parents[2] / "shared"))
BCCD = SHARED / "data" / "bccd"
COCO128 = SHARED / "data" / "coco128"
needs_bccd = pytest.mark.skipif(not BCCD.is_dir(), reason=f"BCCD data not found at {BCCD}")
needs_coco128 = pytest.mark.skipif(not COCO128.is_dir(), reason=f"coco128 data not found at {COCO128}")

H, W = 64, 96  # synthetic image size


@pytest.fixture(scope="module")
def coco128() -> CocoDetection:
    if not COCO128.is_dir():
        pytest.skip(f"coco128 data not found at {COCO128}")
    return CocoDetection(COCO128 / "annotations" / "instances_train2017.json", COCO128 / "images")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_coco(root, num_images=6, image_size=(H, W), seed=1, category_ids=(3, 7, 11), crowd=True)


def _colour_at(image: torch.Tensor, x: float, y: float) -> tuple[int, ...]:
    return tuple(round(v * 255) for v in image[:, int(y), int(x)].tolist())


# -------------------------------------------------------------------------------------------------------- real data


@needs_coco128
def test_coco128_category_mapping_round_trip(coco128: CocoDetection) -> None:
    ds = coco128
    # COCO's 80 used ids out of 1..90 become contiguous labels 1..80 in id order: COCO-91 minus the "N/A" slots.
    assert ds.categories == tuple(c for c in COCO_CATEGORIES if c != "N/A")
    assert len(ds.label_to_category_id) == len(ds.categories) == 81
    assert ds.label_to_category_id[0] is None and ds.label_to_category_id[-1] == 90
    ids = ds.label_to_category_id[1:]
    assert list(ids) == sorted(ids) and ids != tuple(range(1, 81))  # really non-contiguous
    for label, category_id in enumerate(ds.label_to_category_id[1:], start=1):
        assert ds.category_id_to_label[category_id] == label
        assert COCO_CATEGORIES[category_id] == ds.categories[label] == ds.coco.cats[category_id]["name"]
    # A target's labels map back to the image's own (non-crowd) annotations, box by box.
    index = ds.image_ids.index(30)
    _, target = ds[index]
    anns = [a for a in ds.coco.imgToAnns[30] if not a["iscrowd"]]
    assert [ds.label_to_category_id[k] for k in target["labels"].tolist()] == [a["category_id"] for a in anns]
    expected = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
    torch.testing.assert_close(target["boxes"], expected)


@needs_coco128
def test_coco128_crowd_excluded_and_counted(coco128: CocoDetection) -> None:
    ds = coco128
    assert ds.report.ok and ds.report.notes["crowd_annotations"] == 10
    assert ds.report.num_annotations == 939  # crowd annotations stay in .coco for COCOeval
    assert sum(a["iscrowd"] for a in ds.coco.dataset["annotations"]) == 10
    crowd_images = sorted({a["image_id"] for a in ds.coco.dataset["annotations"] if a["iscrowd"]})
    for image_id in crowd_images[:3]:
        _, target = ds[ds.image_ids.index(image_id)]
        non_crowd = [a for a in ds.coco.imgToAnns[image_id] if not a["iscrowd"]]
        assert len(target["labels"]) == len(target["boxes"]) == len(non_crowd)
    assert "crowd" in ds.report.summary()


@needs_coco128
def test_coco128_negatives_kept(coco128: CocoDetection) -> None:
    ds = coco128
    assert len(ds) == 128 and ds.report.notes["images_without_boxes"] == 2
    boxed = {a["image_id"] for a in ds.coco.dataset["annotations"] if not a["iscrowd"]}
    negatives = [i for i, image_id in enumerate(ds.image_ids) if image_id not in boxed]
    assert len(negatives) == 2
    image, target = ds[negatives[0]]
    assert image.dtype == torch.float32 and image.shape[0] == 3
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64


@needs_bccd
@pytest.mark.parametrize(("split", "num_images", "num_boxes"), [("train", 205, 2804), ("val", 87, 1137)])
def test_bccd_loads(split: str, num_images: int, num_boxes: int) -> None:
    ds = CocoDetection(BCCD / "annotations" / f"instances_{split}.json", BCCD / "images")
    assert len(ds) == len(ds.image_ids) == num_images
    assert ds.categories == ("__background__", "RBC", "WBC", "Platelets")
    assert ds.label_to_category_id == (None, 1, 2, 3) and ds.category_id_to_label == {1: 1, 2: 2, 3: 3}
    assert ds.report.ok and ds.report.num_annotations == num_boxes
    assert ds.aspect_ratios() == [640 / 480] * num_images
    image, target = ds[0]
    assert image.shape == (3, 480, 640) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert target["orig_size"] == (480, 640) and target["image_id"] == ds.image_ids[0]
    assert len(target["boxes"]) == len(ds.coco.imgToAnns[ds.image_ids[0]]) > 0
    assert set(target["labels"].tolist()) <= {1, 2, 3}


# ------------------------------------------------------------------------------------------------- synthetic data


def test_synthetic_loads_with_noncontiguous_ids(synthetic: tuple[Path, Path]) -> None:
    ds = CocoDetection(*synthetic)
    assert ds.categories == ("__background__", "red", "green", "blue")
    assert ds.label_to_category_id == (None, 3, 7, 11)
    assert ds.category_id_to_label == {3: 1, 7: 2, 11: 3}
    assert ds.report.ok
    assert ds.report.notes["crowd_annotations"] == 1 and ds.report.notes["images_without_boxes"] == 1
    seen_labels = set()
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, H, W) and target["orig_size"] == (H, W)
        for (x1, y1, x2, y2), label in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True):
            # Learnable: the colour inside every box is its category's colour.
            assert _colour_at(image, (x1 + x2) / 2, (y1 + y2) / 2) == COLOURS[label - 1][1]
            seen_labels.add(label)
    assert seen_labels == {1, 2, 3}
    assert ds[len(ds) - 1][1]["boxes"].shape == (0, 4)  # the last image is the negative


def test_synthetic_is_deterministic_and_checks_arguments(tmp_path: Path) -> None:
    a, _ = write_synthetic_coco(tmp_path / "a", num_images=3, seed=5)
    b, _ = write_synthetic_coco(tmp_path / "b", num_images=3, seed=5)
    assert a.read_text() == b.read_text()
    ann, images = write_synthetic_coco(tmp_path / "jpg", num_images=3, image_format="jpg", num_classes=8)
    assert len(CocoDetection(ann, images)) == 3
    for bad in ({"num_images": 1}, {"num_classes": 9}, {"category_ids": (1, 1, 2)}, {"image_size": (16, 64)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            write_synthetic_coco(tmp_path / "bad", **bad)


# ------------------------------------------------------------------------------------------- malformed annotations


def _fresh(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    ann_file, image_dir = write_synthetic_coco(tmp_path / "data", num_images=6, image_size=(H, W), seed=2)
    return json.loads(ann_file.read_text()), image_dir


def _anns_of(data: dict[str, Any], image_id: int) -> int:
    return sum(a["image_id"] == image_id for a in data["annotations"])


def _image_bad_entry(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    del data["images"][0]["width"]
    return 1, _anns_of(data, data["images"][0]["id"])


def _duplicate_image_id(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["images"].append({**data["images"][1], "file_name": data["images"][2]["file_name"]})
    return 0, 0  # the added copy goes; the first entry and its annotations stay


def _image_file_missing(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["images"][1]["file_name"] = "missing.png"
    return 1, _anns_of(data, data["images"][1]["id"])


def _image_unreadable(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    (image_dir / "broken.png").write_bytes(b"not an image at all")
    data["images"][2]["file_name"] = "broken.png"
    return 1, _anns_of(data, data["images"][2]["id"])


def _image_size_mismatch(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["images"][3]["width"] = W + 8
    return 1, _anns_of(data, data["images"][3]["id"])


def _category_bad_entry(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    del data["categories"][1]["name"]
    return 0, sum(a["category_id"] == data["categories"][1]["id"] for a in data["annotations"])


def _duplicate_category_id(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["categories"].append({"id": data["categories"][0]["id"], "name": "again"})
    return 0, 0


def _annotation_bad_entry(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    anns = data["annotations"]
    del anns[0]["bbox"]
    anns[1]["bbox"] = [1, 2, 3]
    anns[2]["category_id"] = "1"
    return 0, 3


def _duplicate_annotation_id(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    return 0, 1


def _annotation_unknown_image(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["annotations"][0]["image_id"] = 999
    return 0, 1


def _annotation_unknown_category(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["annotations"][0]["category_id"] = 999
    return 0, 1


def _box_degenerate(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["annotations"][0]["bbox"][2] = 0
    data["annotations"][1]["bbox"][3] = -4
    return 0, 2


def _box_outside_image(data: dict[str, Any], image_dir: Path) -> tuple[int, int]:
    data["annotations"][0]["bbox"] = [W - 5.0, 0.0, 20.0, 10.0]
    return 0, 1


# kind -> (mutation, count); a mutation returns (images it makes invalid, annotations dropped in all).
CASES: dict[str, tuple[Callable[[dict[str, Any], Path], tuple[int, int]], int]] = {
    "image_bad_entry": (_image_bad_entry, 1),
    "duplicate_image_id": (_duplicate_image_id, 1),
    "image_file_missing": (_image_file_missing, 1),
    "image_unreadable": (_image_unreadable, 1),
    "image_size_mismatch": (_image_size_mismatch, 1),
    "category_bad_entry": (_category_bad_entry, 1),
    "duplicate_category_id": (_duplicate_category_id, 1),
    "annotation_bad_entry": (_annotation_bad_entry, 3),
    "duplicate_annotation_id": (_duplicate_annotation_id, 1),
    "annotation_unknown_image": (_annotation_unknown_image, 1),
    "annotation_unknown_category": (_annotation_unknown_category, 1),
    "box_degenerate": (_box_degenerate, 2),
    "box_outside_image": (_box_outside_image, 1),
}


def test_every_problem_kind_is_tested() -> None:
    assert set(CASES) == set(PROBLEM_KINDS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_malformed_annotations(kind: str, tmp_path: Path) -> None:
    data, image_dir = _fresh(tmp_path)
    num_images, num_anns = len(data["images"]), len(data["annotations"])
    mutate, count = CASES[kind]
    bad_images, dropped_anns = mutate(data, image_dir)
    ann_file = tmp_path / "bad.json"
    ann_file.write_text(json.dumps(data))

    with pytest.raises(DatasetError) as info:
        CocoDetection(ann_file, image_dir)
    message = str(info.value)
    assert f"{kind}: {count} " in message and "e.g." in message and "fix:" in message
    assert "on_invalid='skip'" in message
    assert info.value.report is not None and info.value.report.problems == {kind: count}

    with pytest.warns(DatasetWarning, match=f"{kind}: {count} ") as caught:
        ds = CocoDetection(ann_file, image_dir, on_invalid="skip")
    assert "dropped" in str(caught[0].message)
    assert ds.report.problems == {kind: count} and ds.report.dropped
    assert len(ds) == len(ds.image_ids) == ds.report.num_images == num_images - bad_images
    assert len(ds.coco.dataset["annotations"]) == ds.report.num_annotations == num_anns - dropped_anns
    for i in range(len(ds)):  # what is left loads
        image, target = ds[i]
        assert image.shape[1:] == target["orig_size"]


def test_problems_are_all_counted_at_once(tmp_path: Path) -> None:
    data, image_dir = _fresh(tmp_path)
    _box_degenerate(data, image_dir)
    _image_file_missing(data, image_dir)
    data["annotations"][-1]["category_id"] = 999
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError) as info:
        CocoDetection(tmp_path / "bad.json", image_dir)
    assert set(info.value.report.problems) >= {"box_degenerate", "image_file_missing", "annotation_unknown_category"}


@pytest.mark.parametrize("on_invalid", ["error", "skip"])
def test_not_coco_is_refused_in_both_modes(on_invalid: str, tmp_path: Path) -> None:
    data, image_dir = _fresh(tmp_path)
    del data["annotations"]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"missing top-level keys \['annotations'\]"):
        CocoDetection(tmp_path / "bad.json", image_dir, on_invalid=on_invalid)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        CocoDetection(tmp_path / "broken.json", image_dir, on_invalid=on_invalid)


def test_bad_arguments(tmp_path: Path, synthetic: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="choose from"):
        CocoDetection(*synthetic, on_invalid="drop")
    with pytest.raises(FileNotFoundError, match="No annotation file"):
        CocoDetection(tmp_path / "none.json", synthetic[1])
    with pytest.raises(FileNotFoundError, match="not a directory"):
        CocoDetection(synthetic[0], tmp_path / "none")


def test_skip_that_leaves_nothing_is_an_error(tmp_path: Path) -> None:
    data, image_dir = _fresh(tmp_path)
    for image in data["images"]:
        image["file_name"] = "gone.png"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.warns(DatasetWarning), pytest.raises(DatasetError, match="no valid image left"):
        CocoDetection(tmp_path / "bad.json", image_dir, on_invalid="skip")


def test_small_overhang_is_clipped_and_defaults_filled(tmp_path: Path) -> None:
    data, image_dir = _fresh(tmp_path)
    ann = data["annotations"][0]
    _, y, w, h = ann["bbox"]
    ann["bbox"] = [W - w + 0.5, y, w, h]  # half a pixel past the right edge: within BOX_TOLERANCE
    del data["annotations"][1]["iscrowd"], data["annotations"][1]["area"]
    (tmp_path / "a.json").write_text(json.dumps(data))
    ds = CocoDetection(tmp_path / "a.json", image_dir)
    assert BOX_TOLERANCE == 1.0 and ds.report.ok
    assert ds.report.notes["boxes_clipped"] == 1 and ds.report.notes["defaults_filled"] == 1
    _, target = ds[ds.image_ids.index(ann["image_id"])]
    assert float(target["boxes"][:, 2].max()) == W  # clipped in the target ...
    assert ds.coco.anns[ann["id"]]["bbox"][0] == W - w + 0.5  # ... the ground truth stays as the file has it
    filled = ds.coco.anns[data["annotations"][1]["id"]]
    assert filled["iscrowd"] == 0 and filled["area"] == filled["bbox"][2] * filled["bbox"][3]


def test_truncated_image_fails_on_load_naming_the_file(tmp_path: Path) -> None:
    ann_file, image_dir = write_synthetic_coco(tmp_path, num_images=2, image_format="jpg")
    path = image_dir / "000001.jpg"
    path.write_bytes(path.read_bytes()[:-200])  # the header survives, the last pixels do not
    ds = CocoDetection(ann_file, image_dir)  # construction reads headers only (documented)
    with pytest.raises(DatasetError, match=r"000001\.jpg"):
        ds[0]
    path.unlink()
    unchecked = CocoDetection(ann_file, image_dir, check_images=False)
    with pytest.raises(DatasetError, match="is gone"):
        unchecked[0]


# ----------------------------------------------------------------------------------------------------- transforms


def test_flip_mirrors_boxes_and_pixels(synthetic: tuple[Path, Path]) -> None:
    plain = CocoDetection(*synthetic)
    flipped = CocoDetection(*synthetic, transforms=build_train_transforms(hflip=1.0))
    for i in range(len(plain) - 1):
        image, target = plain[i]
        image_f, target_f = flipped[i]
        assert type(image_f) is torch.Tensor and type(target_f["boxes"]) is torch.Tensor
        torch.testing.assert_close(image_f, image.flip(-1))
        expected = target["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor([W, 0, W, 0])
        torch.testing.assert_close(target_f["boxes"], expected)
        assert torch.equal(target_f["labels"], target["labels"])
        for (x1, y1, x2, y2), label in zip(target_f["boxes"].tolist(), target_f["labels"].tolist(), strict=True):
            assert _colour_at(image_f, (x1 + x2) / 2, (y1 + y2) / 2) == COLOURS[label - 1][1]


def test_jitter_changes_pixels_not_boxes(synthetic: tuple[Path, Path]) -> None:
    torch.manual_seed(0)
    plain = CocoDetection(*synthetic)
    jittered = CocoDetection(*synthetic, transforms=build_train_transforms(hflip=0.0, jitter=True))
    image, target = plain[0]
    image_j, target_j = jittered[0]
    assert image_j.dtype == torch.float32 and float(image_j.min()) >= 0.0 and float(image_j.max()) <= 1.0
    assert not torch.equal(image_j, image)
    assert torch.equal(target_j["boxes"], target["boxes"]) and torch.equal(target_j["labels"], target["labels"])


def test_shrink_drops_boxes_that_vanish_with_their_labels() -> None:
    image = tv_tensors.Image(torch.rand(3, 200, 400))
    boxes = tv_tensors.BoundingBoxes(
        [[0.0, 0.0, 2.0, 2.0], [40.0, 20.0, 240.0, 120.0]], format="XYXY", canvas_size=(200, 400)
    )
    target = {"boxes": boxes, "labels": torch.tensor([1, 2]), "image_id": 7, "orig_size": (200, 400)}
    out, t = build_eval_transforms(min_size=50, max_size=100)(image, target)
    assert out.shape == (3, 50, 100)
    assert t["boxes"].tolist() == [[10.0, 5.0, 60.0, 30.0]] and t["labels"].tolist() == [2]
    assert t["image_id"] == 7 and t["orig_size"] == (200, 400)
    small = tv_tensors.Image(torch.rand(3, 20, 30))
    assert ShrinkToFit(min_size=800, max_size=1333)(small) is small  # never enlarges


def test_transform_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"hflip .* \[0, 1\]"):
        build_train_transforms(hflip=1.5)
    with pytest.raises(ValueError, match="max_size"):
        ShrinkToFit(max_size=0)


# -------------------------------------------------------------------------------------------------------- sampler


def test_aspect_ratio_groups() -> None:
    # torchvision's bins for k=3: 2 ** linspace(-1, 1, 7) = 0.5, 0.63, 0.79, 1, 1.26, 1.59, 2 (bisect_right).
    assert create_aspect_ratio_groups([0.4, 0.5, 0.7, 1.0, 4 / 3, 1.6, 2.5], k=3) == [0, 1, 2, 4, 5, 6, 7]
    assert create_aspect_ratio_groups([0.75, 1.0, 1.5], k=0) == [0, 1, 1]
    with pytest.raises(ValueError, match="k"):
        create_aspect_ratio_groups([1.0], k=-1)
    with pytest.raises(ValueError, match="positive finite"):
        create_aspect_ratio_groups([1.0, 0.0])


def _random_groups(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return create_aspect_ratio_groups([rng.choice([0.75, 1.0, 4 / 3, 16 / 9]) for _ in range(n)])


@pytest.mark.parametrize(("n", "batch_size"), [(50, 4), (7, 3), (3, 8), (12, 1), (1, 2)])
def test_grouped_sampler_yields_each_index_once_grouped(n: int, batch_size: int) -> None:
    groups = _random_groups(n)
    sampler = RandomSampler(range(n), generator=torch.Generator().manual_seed(0))
    batches = list(GroupedBatchSampler(sampler, groups, batch_size))
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert len(batches) == len(GroupedBatchSampler(sampler, groups, batch_size)) == math.ceil(n / batch_size)
    full = sum(groups.count(g) // batch_size for g in set(groups))
    for batch in batches[:full]:  # batches made while drawing: full and one aspect-ratio group each
        assert len(batch) == batch_size and len({groups[i] for i in batch}) == 1
    rest = [i for b in batches[full:] for i in b]
    assert [groups[i] for i in rest] == sorted(groups[i] for i in rest)  # leftovers in group order
    assert all(len(b) == batch_size for b in batches[:-1])


def test_grouped_sampler_is_deterministic_and_drop_last() -> None:
    groups = _random_groups(30)

    def batches(seed: int, **kwargs: Any) -> list[list[int]]:
        sampler = RandomSampler(range(30), generator=torch.Generator().manual_seed(seed))
        return list(GroupedBatchSampler(sampler, groups, 4, **kwargs))

    assert batches(1) == batches(1) != batches(2)
    dropped = batches(1, drop_last=True)
    assert dropped == batches(1)[:-1] and len(dropped) == 7
    assert len(GroupedBatchSampler(range(30), groups, 4, drop_last=True)) == 7


def test_grouped_sampler_on_distributed_sampler() -> None:
    n, batch_size = 51, 4
    groups = _random_groups(n, seed=3)
    ranks = [DistributedSampler(range(n), num_replicas=2, rank=r, shuffle=True, seed=0) for r in range(2)]
    samplers = [GroupedBatchSampler(s, groups, batch_size) for s in ranks]
    per_rank = [list(s) for s in samplers]
    # Same step count on every rank (DDP would hang otherwise), and together they cover the dataset.
    assert len(per_rank[0]) == len(per_rank[1]) == len(samplers[0]) == math.ceil(26 / batch_size)
    assert {i for batches in per_rank for b in batches for i in b} == set(range(n))
    for sampler in samplers:
        sampler.set_epoch(1)
    assert [list(s) for s in samplers] != per_rank  # set_epoch reaches the DistributedSampler


def test_grouped_sampler_errors() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        GroupedBatchSampler(range(3), [0, 0, 0], 0)
    with pytest.raises(IndexError, match="group_ids has 2 entries"):
        list(GroupedBatchSampler(SequentialSampler(range(3)), [0, 0], 2))


# -------------------------------------------------------------------------------------------------------- collate


def test_collate_with_dataloader(synthetic: tuple[Path, Path]) -> None:
    ds = CocoDetection(*synthetic, transforms=build_train_transforms())
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_detection)
    images, targets = next(iter(loader))
    assert isinstance(images, list) and isinstance(targets, list) and len(images) == len(targets) == 4
    assert all(im.shape == (3, H, W) for im in images)
    assert [t["image_id"] for t in targets] == ds.image_ids[:4]
    with pytest.raises(ValueError, match="empty batch"):
        collate_detection([])
    with pytest.raises(ValueError, match=r"Sample 1 .* 3-tuple"):
        collate_detection([(images[0], targets[0]), (images[0], targets[0], None)])
