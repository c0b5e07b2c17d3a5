"""The training engine on tiny synthetic COCO data: train, resume exactly, refuse bad resumes, atomic checkpoints."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import fpn_zoo
from fpn_zoo.cli import main
from fpn_zoo.engine import checkpoints as ckpt_module
from fpn_zoo.engine.checkpoints import latest_checkpoint
from fpn_zoo.engine.optim import build_scheduler, peak_lr
from fpn_zoo.engine.train_config import TrainConfig
from fpn_zoo.engine.trainer import ResumeError, Trainer

MODEL = "fpn_r50_coco"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from fpn_zoo.data import write_synthetic_coco

    root = tmp_path_factory.mktemp("data")
    train = write_synthetic_coco(root / "train", num_images=6, num_classes=3, image_size=(64, 96), seed=0)
    val = write_synthetic_coco(root / "val", num_images=3, num_classes=3, image_size=(64, 96), seed=1)
    return train, val


def config(data, out: Path, **changes) -> TrainConfig:
    (train_ann, train_images), (val_ann, val_images) = data
    base = TrainConfig(
        model=MODEL,
        train_ann=str(train_ann),
        train_images=str(train_images),
        val_ann=str(val_ann),
        val_images=str(val_images),
        out=str(out),
        init="scratch",
        iters=4,
        batch_size=2,
        lr=0.01,
        min_size=64,
        max_size=96,
        workers=0,
        log_every=1,
        checkpoint_every=2,
        progress=False,
        device="cpu",
    )
    return replace(base, **changes)


def final_state(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "final" / "model.safetensors")


def test_train_writes_final_weights_logs_and_metrics(data, tmp_path, single_thread):
    out = tmp_path / "run"
    final = Trainer(config(data, out)).fit()
    model = fpn_zoo.create_model(MODEL, weights=final, device="cpu")
    assert model.config.categories[0] == "__background__" and model.config.num_classes == 4  # 3 classes + bg
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    assert [r["global_step"] for r in train] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and "loss_classifier" in r and r["images_per_s"] > 0 for r in train)
    evals = [r for r in records if r["event"] == "eval"]
    assert evals and "AP50" in json.dumps(evals[-1])
    assert latest_checkpoint(out).name == "step_00000004"
    # The run's final folder goes to the Hub in one more command.
    assert main(["export", "--model", MODEL, "--checkpoint", str(final), "--out", str(tmp_path / "export")]) == 0
    assert (tmp_path / "export" / "README.md").is_file()


def test_resume_continues_exactly(data, tmp_path, single_thread, monkeypatch):
    straight = tmp_path / "straight"
    Trainer(config(data, straight)).fit()

    interrupted = tmp_path / "interrupted"
    trainer = Trainer(config(data, interrupted))
    real_step = trainer._step

    def killed_after_two(images, targets):
        if trainer.position.global_step == 2:
            raise KeyboardInterrupt  # a kill mid-epoch (3 steps per epoch) after the step-2 checkpoint
        return real_step(images, targets)

    trainer._step = killed_after_two
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert latest_checkpoint(interrupted).name == "step_00000002"
    Trainer(config(data, interrupted)).fit(resume=True)

    a, b = final_state(straight), final_state(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_resume_with_other_settings_is_refused(data, tmp_path, single_thread):
    out = tmp_path / "run"
    Trainer(config(data, out, iters=2)).fit()
    with pytest.raises(ResumeError, match=r"lr: 0\.01 -> 0\.02"):
        Trainer(config(data, out, iters=2, lr=0.02)).fit(resume=True)
    with pytest.raises(ResumeError, match=r"model: 'fpn_r50_coco' -> 'panet_r50_coco'"):
        Trainer(config(data, out, iters=2, model="panet_r50_coco")).fit(resume=True)
    with pytest.raises(ResumeError, match=r"holds no training run"):
        Trainer(config(data, tmp_path / "empty", iters=2)).fit(resume=True)


def test_a_failed_checkpoint_write_keeps_the_previous_latest(data, tmp_path, single_thread, monkeypatch):
    out = tmp_path / "run"
    trainer = Trainer(config(data, out))
    real_save = torch.save
    calls = {"n": 0}

    def disk_full_on_second_checkpoint(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt_module.torch, "save", disk_full_on_second_checkpoint)
    with pytest.raises(OSError, match="No space left"):
        trainer.fit()
    latest = latest_checkpoint(out)
    assert latest.name == "step_00000002"
    assert fpn_zoo.create_model(MODEL, weights=latest, device="cpu") is not None  # complete and loadable
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".step_")]  # no half-written folder


def test_train_command_line(data, tmp_path, single_thread, capsys):
    (train_ann, train_images), _ = data
    out = tmp_path / "cli"
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(f"model: {MODEL}\nmin_size: 64\nmax_size: 96\niters: 2\nlr: 0.01\n")
    code = main(
        [
            "train", "--config", str(yaml_file), "--train-ann", str(train_ann), "--train-images",
            str(train_images), "--out", str(out), "--init", "scratch", "--workers", "0", "--no-progress",
            "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "Final weights" in capsys.readouterr().out
    assert (out / "final" / "config.json").is_file()
    assert main(["train", "--model", MODEL, "--train-ann", str(train_ann), "--train-images", "x", "--out", "o"]) == 2
    assert "Give exactly one of epochs and iters" in capsys.readouterr().err


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(ValueError, match="Give exactly one of epochs and iters"):
        TrainConfig(model=MODEL, train_ann="a", train_images="i", out="o")
    with pytest.raises(ValueError, match=r"optimizer must be one of \('sgd', 'adamw'\)"):
        TrainConfig(model=MODEL, train_ann="a", train_images="i", out="o", epochs=1, optimizer="adam")
    with pytest.raises(ValueError, match=r"Unknown training settings \['epoch'\]"):
        TrainConfig.from_dict({"model": MODEL, "train_ann": "a", "train_images": "i", "out": "o", "epoch": 1})
    cfg = TrainConfig(model=MODEL, train_ann="a", train_images="i", out="o", epochs=1, batch_size=4)
    assert peak_lr(cfg, world_size=2) == pytest.approx(0.01)  # torchvision: 0.02 per 16 images
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.differences(replace(cfg, workers=8)) == []  # workers do not change what is computed


def test_schedule_warms_up_then_steps():
    cfg = TrainConfig(
        model=MODEL, train_ann="a", train_images="i", out="o", iters=100, lr=1.0, warmup_iters=10,
        lr_steps=(0.5, 0.8),
    )  # fmt: skip
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = build_scheduler(optimizer, cfg, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.001) and lrs[10] == pytest.approx(1.0)
    assert lrs[49] == pytest.approx(1.0) and lrs[50] == pytest.approx(0.1) and lrs[80] == pytest.approx(0.01)
