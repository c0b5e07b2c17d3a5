"""COCO evaluation: pycocotools scoring, results format, label mapping, the eval command, and torchrun sharding."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fpn_zoo import voice
from fpn_zoo.engine import eval_command
from fpn_zoo.engine.evaluate import (
    STAT_NAMES,
    EvalResult,
    LabelMapping,
    coco_evaluate,
    evaluate_detections_file,
    evaluate_model,
    format_metrics,
    match_label_space,
    merge_shards,
    predict_dataset,
)
from fpn_zoo.labels import COCO_CATEGORIES

# Real data by path, never copied into the repository: $FPN_ZOO_SHARED, else the checkout's sibling `shared/`.
DATA = Path(os.environ.get("FPN_ZOO_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"
BCCD_VAL = DATA / "bccd" / "annotations" / "instances_val.json"
BCCD_IMAGES = DATA / "bccd" / "images"
COCO128 = DATA / "coco128" / "annotations" / "instances_train2017.json"
COCO128_IMAGES = DATA / "coco128" / "images"
needs_data = pytest.mark.skipif(not BCCD_VAL.is_file() or not COCO128.is_file(), reason="shared data not present")
pytestmark = needs_data


def _coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def bccd() -> COCO:
    return _coco(BCCD_VAL)


def _gt_as_results(gt: COCO, *, shift: float = 0.0) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [a["bbox"][0] + shift, *a["bbox"][1:]],
         "score": 1.0}
        for a in gt.dataset["annotations"]
    ]  # fmt: skip


def _perturbed(gt: COCO) -> list[dict]:
    """Shifted boxes, every 7th dropped, scores that rank some worse boxes first: AP well below 100 per class."""
    rows = []
    for i, a in enumerate(gt.dataset["annotations"]):
        if i % 7 == 0:
            continue
        x, y, w, h = a["bbox"]
        dx = (i % 5) * 0.15 * w
        rows.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x + dx, y, w, h],
                     "score": 1.0 - (i % 5) * 0.1 + (i % 3) * 0.12})  # fmt: skip
    return rows


# -- scoring ---------------------------------------------------------------------------------------------------------


def test_ground_truth_scores_100(bccd):
    result = coco_evaluate(bccd, _gt_as_results(bccd))
    assert result.num_images == 87 and result.num_detections == len(bccd.dataset["annotations"]) == 1137
    for name in ("AP", "AP50", "AP75", "AR100"):  # AR1, AR10 cap the detections below the ~13 cells per image
        assert getattr(result, name) == pytest.approx(100.0), name
    assert result.per_class == pytest.approx({"RBC": 100.0, "WBC": 100.0, "Platelets": 100.0})
    assert result.cocoeval_seconds > 0


def test_ground_truth_does_not_get_mutated_or_reordered(bccd):
    results = _gt_as_results(bccd)
    before = json.dumps(results)
    coco_evaluate(bccd, results)
    assert json.dumps(results) == before  # loadRes adds area/id/iscrowd to what it gets: we hand it copies


def test_perturbed_scores_less_and_per_class_matches_pycocotools(bccd):
    results = _perturbed(bccd)
    result = coco_evaluate(bccd, results)
    assert 0 < result.AP < 90 and result.AP50 < 100
    for cat_id, name in ((1, "RBC"), (2, "WBC"), (3, "Platelets")):
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval(bccd, bccd.loadRes([dict(r) for r in results]), iouType="bbox")
            evaluator.params.catIds = [cat_id]
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        assert result.per_class[name] == pytest.approx(evaluator.stats[0] * 100, abs=1e-9), name
    assert len(set(result.per_class.values())) == 3  # the three classes really differ


def test_image_ids_restrict_the_evaluation(bccd):
    ids = sorted(bccd.getImgIds())[:5]
    result = coco_evaluate(bccd, _gt_as_results(bccd), image_ids=ids)
    n_boxes = len(bccd.getAnnIds(imgIds=ids))
    assert (result.num_images, result.num_detections, result.AP) == (5, n_boxes, pytest.approx(100.0))


def test_empty_detections_give_zeros_not_a_crash(bccd):
    result = coco_evaluate(bccd, [])
    assert result.num_detections == 0 and result.num_images == 87
    for name in STAT_NAMES:
        assert getattr(result, name) in (0.0, None), name  # None only where BCCD has no ground truth
    assert result.AP == 0.0 and result.AR100 == 0.0
    assert result.per_class == {"RBC": 0.0, "WBC": 0.0, "Platelets": 0.0}
    result = coco_evaluate(str(BCCD_VAL), [], image_ids=[0])  # a path works too
    assert result.num_images == 1


def test_undefined_metrics_are_none_and_json_null(bccd):
    result = coco_evaluate(bccd, _gt_as_results(bccd))
    undefined = [n for n in STAT_NAMES if getattr(result, n) is None]
    data = json.loads(json.dumps(result.to_dict()))
    assert all(data["metrics"][n] is None for n in undefined)
    assert data["units"].startswith("percent") and data["num_images"] == 87
    assert set(data["timing_seconds"]) == {"inference", "data", "gather", "cocoeval", "overhead"}


def test_format_metrics_lists_every_number_and_class(bccd):
    result = coco_evaluate(bccd, _perturbed(bccd))
    text = format_metrics(result)
    assert text.startswith("COCO box metrics in %: 87 images")
    for word in (*STAT_NAMES, "RBC", "WBC", "Platelets", f"{result.per_class['WBC']:.1f}", "Time: COCOeval"):
        assert word in text
    timed = dataclasses.replace(result, inference_seconds=3.0, data_seconds=0.5)
    assert "3.00 s forward passes" in format_metrics(timed)
    absent = dataclasses.replace(result, per_class={**result.per_class, "toaster": None})
    assert "no ground truth, AP n/a: toaster" in format_metrics(absent)


# -- results validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ({"image_id": 0}, "expected a list"),
        ([{"image_id": 0, "category_id": 1, "bbox": [0, 0, 1, 1]}], "lacks ['score']"),
        ([{"image_id": 0, "category_id": 1, "bbox": [0, 0, 1], "score": 1}], "not 4 finite numbers"),
        ([{"image_id": 0, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 1}], "negative width"),
        ([{"image_id": "0", "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}], "non-integer"),
        ([{"image_id": 0, "category_id": 1, "bbox": [0, 0, 1, 1], "score": float("nan")}], "not a finite number"),
        ([[0, 1, 0, 0, 1, 1, 0.5]], "is a list, not an object"),
    ],
)
def test_malformed_results_are_refused(bccd, results, message):
    with pytest.raises(ValueError, match=r"malformed|expected a list") as err:
        coco_evaluate(bccd, results)
    assert message in str(err.value)


def test_unknown_ids_are_refused_with_counts(bccd, tmp_path):
    rows = _gt_as_results(bccd)[:10]
    rows += [{"image_id": 9999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}] * 3
    rows += [{"image_id": 0, "category_id": 7, "bbox": [0, 0, 5, 5], "score": 0.5}] * 2
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError) as err:
        evaluate_detections_file(path, BCCD_VAL)
    text = str(err.value)
    assert "3 detection(s)" in text and "1 image id(s) not in the annotation file: [9999]" in text
    assert "2 detection(s)" in text and "1 category id(s) not in the annotation file: [7]" in text
    assert "[1, 2, 3]" in text  # the valid category ids


def test_detections_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such detections file"):
        evaluate_detections_file(tmp_path / "missing.json", BCCD_VAL)
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        evaluate_detections_file(bad, BCCD_VAL)
    bad.write_text("[]")
    with pytest.raises(FileNotFoundError, match="No such annotation file"):
        evaluate_detections_file(bad, tmp_path / "nope.json")
    assert evaluate_detections_file(bad, BCCD_VAL).AP == 0.0  # an empty file is valid: no detections


def test_detections_file_round_trip(bccd, tmp_path):
    results = _perturbed(bccd)
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(results))
    assert evaluate_detections_file(path, BCCD_VAL).metrics == coco_evaluate(bccd, results).metrics


# -- sharding --------------------------------------------------------------------------------------------------------


def test_merge_shards_keeps_one_copy_of_padded_images():
    # DistributedSampler over 5 images and 2 ranks: rank 0 gets 0, 2, 4 and rank 1 gets 1, 3 and image 0 again.
    a, b = {"image_id": 0, "k": "a"}, {"image_id": 0, "k": "b"}
    rank0 = {0: [a, b], 2: [], 4: [{"image_id": 4}]}
    rank1 = {1: [{"image_id": 1}], 3: [], 0: [a, b]}
    merged = merge_shards([rank0, rank1])
    assert list(merged) == [0, 1, 2, 3, 4]
    assert merged[0] == [a, b]  # the whole image once, not its detections twice
    assert sum(len(v) for v in merged.values()) == 4


# -- prediction: results format and label mapping ------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco128_ds():
    from fpn_zoo.data import CocoDetection

    return CocoDetection(COCO128, COCO128_IMAGES)


@pytest.fixture(scope="module")
def bccd_ds():
    from fpn_zoo.data import CocoDetection

    return CocoDetection(BCCD_VAL, BCCD_IMAGES)


class OracleModel(nn.Module):
    """Answers each image with its ground truth, as a detector would: xyxy boxes in the pixels of the image it was
    fed, labels in its own label space. Relies on being called on the dataset in order (no sampler)."""

    def __init__(self, dataset, label_of, categories=None) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # predict_dataset finds the device from the parameters
        self.gt, self.image_ids, self.label_of = dataset.coco, list(dataset.image_ids), label_of
        if categories is not None:
            self.config = argparse.Namespace(categories=tuple(categories))

    def forward(self, images):
        outputs = []
        for image in images:
            info = self.gt.imgs[self.image_ids.pop(0)]
            anns = [a for a in self.gt.imgToAnns[info["id"]] if not a["iscrowd"]]
            xywh = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
            boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
            scale = torch.tensor([image.shape[2] / info["width"], image.shape[1] / info["height"]] * 2)
            labels = torch.tensor([self.label_of(a["category_id"]) for a in anns], dtype=torch.int64)
            outputs.append({"boxes": boxes * scale, "labels": labels, "scores": torch.ones(len(anns))})
        return outputs


def _assert_boxes_are_ground_truth(gt: COCO, results: list[dict], tol: float) -> None:
    by_key = {}
    for r in results:
        by_key.setdefault((r["image_id"], r["category_id"]), []).append(r["bbox"])
    anns = [a for a in gt.dataset["annotations"] if not a["iscrowd"]]
    assert len(results) == len(anns)
    for a in anns:
        found = by_key[(a["image_id"], a["category_id"])]
        assert any(all(abs(u - v) <= tol for u, v in zip(box, a["bbox"], strict=True)) for box in found), a


def test_coco91_model_labels_are_coco_category_ids(coco128_ds):
    """coco128 keeps COCO's non-contiguous ids 1..90; a COCO-91 model's label 18 is category 18 ('dog')."""
    mapping = match_label_space(COCO_CATEGORIES, coco128_ds)
    assert mapping.drop_unmapped and len(mapping.category_ids) == 91
    assert mapping.category_ids[18] == 18 and mapping.category_ids[90] == 90 and mapping.category_ids[12] is None
    model = OracleModel(coco128_ds, label_of=lambda cid: cid, categories=COCO_CATEGORIES)
    results = predict_dataset(model, coco128_ds, batch_size=4, progress=False)
    assert {r["category_id"] for r in results} == {a["category_id"] for a in coco128_ds.coco.dataset["annotations"]}
    _assert_boxes_are_ground_truth(coco128_ds.coco, results, tol=1e-3)
    result = coco_evaluate(coco128_ds.coco, results)
    assert result.num_images == 128
    assert result.metrics["AP"] == pytest.approx(100.0)  # crowd regions are ignored, not missed
    assert result.per_class["dog"] == pytest.approx(100.0)
    assert result.per_class["hair drier"] is None  # not in coco128


def test_contiguous_labels_map_back_to_category_ids_and_resized_boxes_scale_back():
    from torchvision.transforms import v2

    from fpn_zoo.data import CocoDetection

    # The 4 coco8 images, fed at about half size: boxes must come back in original pixels.
    ds = CocoDetection(COCO128.with_name("instances_coco8_val.json"), COCO128_IMAGES, transforms=v2.Resize(211))
    assert ds[0][0].shape[1:] != ds[0][1]["orig_size"]
    model = OracleModel(ds, label_of=ds.category_id_to_label.__getitem__, categories=ds.categories)
    results = predict_dataset(model, ds, progress=False)
    assert max(ds.category_id_to_label) == 90 and len(ds.categories) == 81  # label 80 is category 90
    _assert_boxes_are_ground_truth(ds.coco, results, tol=1.0)  # a resize to ~211 px rounds to within a pixel
    ap50 = coco_evaluate(ds.coco, results).AP50
    assert ap50 == pytest.approx(100.0)


def test_labels_without_category_id_are_an_error(bccd_ds):
    model = OracleModel(bccd_ds, label_of=lambda cid: cid)  # no config: the dataset's mapping is trusted
    mapping = LabelMapping((None, 1, 2))  # a model with fewer slots than the data has labels
    with pytest.raises(ValueError, match=r"predicted labels \[3\] that have no category id"):
        predict_dataset(model, bccd_ds, label_mapping=mapping, progress=False)
    model = OracleModel(bccd_ds, label_of=lambda cid: cid)
    with pytest.warns(UserWarning, match=r"Dropped \d+ detection\(s\) with labels \[3\]"):
        mapping = LabelMapping((None, 1, 2), drop_unmapped=True)
        results = predict_dataset(model, torch.utils.data.Subset(bccd_ds, range(10)), label_mapping=mapping)
    assert {r["category_id"] for r in results} == {1, 2}


def test_match_label_space(bccd_ds, coco128_ds):
    assert match_label_space(bccd_ds.categories, bccd_ds) == LabelMapping((None, 1, 2, 3))
    with pytest.raises(ValueError, match=r"model \['person', 'bicycle'.*dataset \['RBC', 'WBC', 'Platelets'\]"):
        match_label_space(COCO_CATEGORIES, bccd_ds)
    with pytest.raises(ValueError, match="do not match"):
        match_label_space(("__background__", "WBC", "RBC", "Platelets"), bccd_ds)  # same names, other order
    with pytest.raises(ValueError, match="do not match"):
        match_label_space(bccd_ds.categories, coco128_ds)


# -- a real (random) model end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_bccd_model(bccd_ds):
    from model_helpers import model_with_detections

    return model_with_detections("fpn_r50_coco", num_classes=4, categories=bccd_ds.categories)


def test_random_model_end_to_end(bccd_ds, random_bccd_model, single_thread):
    subset = torch.utils.data.Subset(bccd_ds, [0, 1, 2])
    ids = [bccd_ds.image_ids[i] for i in range(3)]
    model = random_bccd_model.train()
    results = predict_dataset(model, subset, batch_size=2, progress=False)
    assert model.training  # put back as it was
    assert 0 < len(results) <= 3 * 100 and {r["image_id"] for r in results} <= set(ids)
    assert {r["category_id"] for r in results} <= {1, 2, 3}
    for r in results:
        x, y, w, h = r["bbox"]
        assert min(x, y, w, h) >= 0 and x + w <= 640 + 1e-3 and y + h <= 480 + 1e-3 and 0 <= r["score"] <= 1
    result = coco_evaluate(bccd_ds.coco, results, image_ids=ids)
    assert (result.num_images, result.num_detections) == (3, len(results))
    assert all(v is None or math.isfinite(v) for v in result.metrics.values())
    assert set(result.per_class) == {"RBC", "WBC", "Platelets"}

    full = evaluate_model(model, subset, batch_size=2, progress=False)
    assert full.metrics == result.metrics and full.per_class == result.per_class
    assert full.detections == sorted(results, key=lambda r: r["image_id"])
    assert full.inference_seconds > 0 and full.data_seconds >= 0 and full.cocoeval_seconds > 0
    assert isinstance(full, EvalResult) and full.num_images == 3


# -- fpn-zoo eval ----------------------------------------------------------------------------------------------------

_RUNNER = """
import argparse, sys
from fpn_zoo.engine import eval_command
parser = argparse.ArgumentParser(prog="fpn-zoo")
eval_command.add_parser(parser.add_subparsers(dest="command", required=True))
sys.exit(eval_command.run(parser.parse_args(sys.argv[1:])))
"""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fpn-zoo")
    eval_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["eval", *argv])


def test_eval_command_detections_mode(bccd, tmp_path, capsys):
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(_perturbed(bccd)))
    out = tmp_path / "m" / "metrics.json"
    assert eval_command.run(_parse(["--detections", str(dets), "--ann", str(BCCD_VAL), "--out", str(out)])) == 0
    assert "COCO box metrics in %: 87 images" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert record["metrics"] == coco_evaluate(bccd, _perturbed(bccd)).metrics
    assert record["detections_file"] == str(dets)
    with pytest.raises(ValueError, match="drop --model"):
        eval_command.run(_parse(["--detections", str(dets), "--ann", str(BCCD_VAL), "--model", "fpn_r50_coco"]))


def test_eval_command_never_replaces_an_earlier_evaluation_unasked(bccd, tmp_path, capsys, monkeypatch):
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(_perturbed(bccd)))
    out = tmp_path / "metrics.json"
    argv = ["--detections", str(dets), "--ann", str(BCCD_VAL), "--out", str(out)]
    assert eval_command.run(_parse(argv)) == 0
    first = out.read_bytes()
    refused = pytest.raises(FileExistsError, match=rf"--out {out} would replace {out} .*--overwrite")
    with refused, voice.cli_voice("fpn-zoo eval", {"--out", "--overwrite"}):
        eval_command.run(_parse(argv))
    assert out.read_bytes() == first
    assert eval_command.run(_parse([*argv, "--overwrite"])) == 0
    # Model mode's default location is eval/<model>.json; a used one moves to eval/<model>-2.json, said on the console.
    monkeypatch.chdir(tmp_path)
    model_args = _parse(["--model", "fpn_r50_coco", "--ann", str(BCCD_VAL), "--images", str(BCCD_IMAGES)])
    assert eval_command._claim(model_args) == Path("eval/fpn_r50_coco.json")
    Path("eval").mkdir()
    Path("eval/fpn_r50_coco.detections.json").write_text("[]")
    capsys.readouterr()
    assert eval_command._claim(model_args) == Path("eval/fpn_r50_coco-2.json")
    assert "writing to eval/fpn_r50_coco-2.json instead" in capsys.readouterr().out


def test_eval_command_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="missing --images"):
        eval_command.run(_parse(["--model", "fpn_r50_coco", "--ann", str(BCCD_VAL)]))
    with pytest.raises(FileNotFoundError, match="No such image folder"):
        eval_command.run(_parse(["--model", "fpn_r50_coco", "--ann", str(BCCD_VAL), "--images", str(tmp_path / "x")]))
    with pytest.raises(ValueError, match=r"must be a \.json file"):
        eval_command.run(_parse(["--model", "fpn_r50_coco", "--ann", str(BCCD_VAL), "--images", str(BCCD_IMAGES),
                                 "--out", str(tmp_path / "out")]))  # fmt: skip
    with pytest.raises(KeyError, match="fpn_r5_coco"):
        eval_command.run(_parse(["--model", "fpn_r5_coco", "--ann", str(BCCD_VAL), "--images", str(BCCD_IMAGES)]))
    with pytest.raises(SystemExit):
        _parse(["--detections", "d.json", "--ann", "a.json", "--batch-size", "0"])


def test_eval_command_refuses_a_model_of_another_label_space(tmp_path):
    args = _parse(["--model", "fpn_r50_coco", "--ann", str(BCCD_VAL), "--images", str(BCCD_IMAGES),
                   "--out", str(tmp_path / "m.json"), "--device", "cpu"])  # fmt: skip
    with pytest.raises(ValueError, match=r"model \['person'.*dataset \['RBC', 'WBC', 'Platelets'\]"):
        eval_command.run(args)
    assert not (tmp_path / "m.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bccd_five(tmp_path_factory, bccd, random_bccd_model):
    """An odd number of BCCD images (5: DistributedSampler pads 2 shards to 3 + 3) and a checkpoint for them."""
    root = tmp_path_factory.mktemp("bccd5")
    data = dict(bccd.dataset)
    data["images"] = sorted(bccd.dataset["images"], key=lambda i: i["id"])[:5]
    keep = {i["id"] for i in data["images"]}
    data["annotations"] = [a for a in bccd.dataset["annotations"] if a["image_id"] in keep]
    ann = root / "val5.json"
    ann.write_text(json.dumps(data))
    random_bccd_model.save_pretrained(root / "ckpt")
    return ann, root / "ckpt"


def test_eval_command_torchrun_matches_one_process(bccd_five, tmp_path, single_thread):
    """Two gloo processes on the CPU give exactly the one-process metrics and detections (padding de-duplicated)."""
    ann, ckpt = bccd_five
    common = ["--model", "fpn_r50_coco", "--weights", str(ckpt), "--ann", str(ann), "--images", str(BCCD_IMAGES),
              "--device", "cpu", "--batch-size", "1", "--no-progress"]  # fmt: skip
    # Batch size 1 and one thread everywhere: the shards batch images differently, and float sums may depend on both.
    single = tmp_path / "single.json"
    assert eval_command.run(_parse([*common, "--out", str(single)])) == 0

    script = tmp_path / "run_eval.py"
    script.write_text(_RUNNER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    two = tmp_path / "two.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), "eval", *common, "--out", str(two)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("COCO box metrics") == 1  # only rank 0 prints

    a, b = json.loads(single.read_text()), json.loads(two.read_text())
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert b["num_images"] == 5 and b["num_detections"] == a["num_detections"] > 0
    assert b["metrics"] == a["metrics"] and b["per_class"] == a["per_class"]
    assert any(v for v in a["metrics"].values())  # not a trivial all-zero comparison
    dets_a = json.loads(Path(a["detections_file"]).read_text())
    dets_b = json.loads(Path(b["detections_file"]).read_text())
    assert dets_b == dets_a
