"""The fast-path accuracy check scores every path with COCOeval and pairs their detections box by box."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from model_helpers import model_with_detections

from fpn_zoo.bench.fast_check import compare_detections, main

DATA = Path(os.environ.get("FPN_ZOO_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "bccd"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"BCCD data not found at {DATA}")


def _row(box: list[float], score: float, category: int = 1, image: int = 1) -> dict:
    return {"image_id": image, "category_id": category, "bbox": box, "score": score}


def test_detections_pair_by_class_and_overlap():
    plain = [_row([0, 0, 10, 10], 0.9), _row([50, 50, 10, 10], 0.8), _row([0, 0, 10, 10], 0.7, category=2)]
    other = [_row([0, 0, 10, 10.2], 0.91), _row([0, 0, 10, 10], 0.6, category=3), _row([52, 52, 10, 10], 0.8)]
    d = compare_detections(plain, other)
    assert (d.plain, d.other, d.twins) == (3, 3, 1)  # the shifted box (IoU 0.68) and the class-2 box find no twin
    assert (d.plain_without_twin, d.plain_without_twin_top_score) == (2, 0.8)
    assert (d.other_without_twin, d.other_without_twin_top_score) == (2, 0.8)
    assert d.max_score_diff == pytest.approx(0.01) and d.max_corner_diff_px == pytest.approx(0.2)


def test_the_check_reports_an_unchanged_fp32_fast_path(tmp_path, single_thread):
    data = json.loads((DATA / "annotations" / "instances_val.json").read_text())
    data["images"] = sorted(data["images"], key=lambda i: i["id"])[:2]
    keep = {i["id"] for i in data["images"]}
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    ann = tmp_path / "val2.json"
    ann.write_text(json.dumps(data))
    categories = ("__background__", *(c["name"] for c in sorted(data["categories"], key=lambda c: c["id"])))
    model = model_with_detections("fpn_r50_coco", num_classes=len(categories), categories=categories)
    model.save_pretrained(tmp_path / "weights")
    out = tmp_path / "fast.json"
    args = ["--model", "fpn_r50_coco", "--weights", str(tmp_path / "weights"), "--ann", str(ann),
            "--images", str(DATA / "images"), "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(args) == 0

    report = json.loads(out.read_text())
    fast = report["paths"]["fast"]
    assert report["images"] == 2 and report["paths"]["plain"]["detections"] > 0
    assert abs(fast["AP_change"]) < 1e-3 and fast["detections"] == report["paths"]["plain"]["detections"]
    boxes = fast["boxes"]
    assert boxes["twins"] >= 0.9 * boxes["plain"] and boxes["max_score_diff"] < 1e-3
    assert "| fast |" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit):  # an earlier report is never replaced unasked
        main(args)
