"""The training engine on tiny synthetic COCO data: train, resume exactly, refuse bad resumes, atomic checkpoints,
never overwrite a run, and say on the console what it does, what it measured and how to use the weights."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import MISSING, fields, replace
from pathlib import Path

import pytest
import torch
from cli_steps import printed_commands
from safetensors.torch import load_file

import fpn_zoo
from fpn_zoo.cli import main
from fpn_zoo.engine import checkpoints as ckpt_module
from fpn_zoo.engine.checkpoints import RunFolderError, latest_checkpoint
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
    # From Python the way out is named in keyword arguments.
    with pytest.raises(RunFolderError, match=r"fit\(resume=True\).*out='.*run-2'.*fit\(overwrite=True\)"):
        Trainer(config(data, out, iters=2)).fit()


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
    assert "Give exactly one of --epochs N and --iters N" in capsys.readouterr().err
    assert main(["train", "--model", MODEL, "--epochs", "1"]) == 2
    assert "Missing training settings: --out ..., --train-ann ..., --train-images ..." in capsys.readouterr().err


def test_config_validation_and_yaml(tmp_path):
    with pytest.raises(ValueError, match="Give exactly one of epochs=N and iters=N"):
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


def _cli_args(data, out: Path, *extra: str) -> list[str]:
    (train_ann, train_images), (val_ann, val_images) = data
    return [
        "train", "--model", MODEL, "--train-ann", str(train_ann), "--train-images", str(train_images),
        "--val-ann", str(val_ann), "--val-images", str(val_images), "--out", str(out), "--init", "scratch",
        "--iters", "2", "--min-size", "64", "--max-size", "96", "--lr", "0.01", "--workers", "0", "--no-progress",
        "--device", "cpu", *extra,
    ]  # fmt: skip


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_holding_a_run_is_refused_until_resumed_or_overwritten(
    data, tmp_path, single_thread, capsys, monkeypatch
):
    out = tmp_path / "runs" / "cells"
    assert main(_cli_args(data, out)) == 0, capsys.readouterr().err
    capsys.readouterr()
    before = _files(out)
    assert {"train_config.json", "log.jsonl", "final/model.safetensors"} <= before.keys()

    def no_model(*args, **kwargs):
        raise AssertionError("the refusal must come before any model is built")

    with monkeypatch.context() as m:
        m.setattr("fpn_zoo.engine.trainer.build_training_model", no_model)
        assert main(_cli_args(data, out)) == 2
        captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("fpn-zoo: error: "), captured.err
    error = errors[0]
    assert str(out) in error and "train_config.json" in error and "checkpoints/" in error and "final/" in error
    assert "--resume" in error and "--overwrite" in error
    assert _files(out) == before  # every file of the old run byte-identical: nothing written, moved or appended

    # The new folder it suggests is free: the same command with that --out runs as printed.
    suggested = re.search(r"start a new run with (--out (?:'[^']*'|[^\s,]+))", error)[1]
    assert shlex.split(suggested) == ["--out", str(tmp_path / "runs" / "cells-2")]
    assert main([*_cli_args(data, out), *shlex.split(suggested)]) == 0  # the last --out wins
    assert main(_cli_args(data, out)) == 2
    assert "--out " + str(tmp_path / "runs" / "cells-3") in capsys.readouterr().err  # the next free one
    capsys.readouterr()

    # --overwrite removes what the run wrote, says so, and keeps what it did not write.
    (out / "notes.txt").write_text("mine")
    (out / "final" / "README.md").write_text("mine too")
    assert main(_cli_args(data, out, "--overwrite", "--seed", "1")) == 0
    said = capsys.readouterr().out
    assert re.search(
        r"Overwriting the run in .*cells: removed train_config\.json, log\.jsonl, checkpoints/ .*final/", said
    )
    assert "kept final/README.md" in said
    assert (out / "notes.txt").read_text() == "mine" and (out / "final" / "README.md").read_text() == "mine too"
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records].count("final") == 1  # a fresh log, not the old one appended to
    assert json.loads((out / "train_config.json").read_text())["seed"] == 1

    assert main(_cli_args(data, out, "--resume", "--seed", "1")) == 0, capsys.readouterr().err
    assert "Resuming the run in" in capsys.readouterr().out
    assert main(_cli_args(data, tmp_path / "empty", "--resume")) == 2
    assert "holds no training run to continue" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(_cli_args(data, tmp_path / "empty")) == 0  # an empty folder is free


def test_console_shows_the_metrics_and_commands_that_run_as_printed(data, tmp_path, single_thread, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the printed eval and predict write to their default folders here
    out = tmp_path / "run"
    assert main(_cli_args(data, out)) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "evaluating 3 validation images at the end" in printed
    assert re.search(r"Evaluating 3 validation images: about [\d.]+ s \(estimated from the training steps'", printed)
    table = re.search(r"^epoch +[\d.]+/[\d.]+ +step 2/2 +loss +[\d.]+ +AP +[\d.]+ +AP50 +[\d.]+ +eval [\d.]+ s$",
                      printed, re.MULTILINE)  # fmt: skip
    assert table, printed
    assert "COCO box metrics in %: 3 images" in printed  # the final table
    record = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"eval"' in line][-1]
    assert record["seconds"] > 0 and record["train_loss"] > 0 and "AP50" in record["metrics"]  # fields added

    steps = printed_commands(printed)
    assert [argv[0] for argv in steps] == ["eval", "predict", "export"], printed
    for argv in steps:
        assert main(argv) == 0, (argv, capsys.readouterr().err)
    assert (tmp_path / "eval" / f"{MODEL}.json").is_file() and (tmp_path / "predictions").is_dir()
    assert (out / "export" / "README.md").is_file()


def test_evaluation_runs_as_eval_every_says(data, tmp_path, single_thread, monkeypatch):
    evaluated = []

    def record(self, last):
        evaluated.append((self.position.epoch, last))
        return None, 0.0

    monkeypatch.setattr(Trainer, "_evaluate", record)
    monkeypatch.setattr(Trainer, "_checkpoint", lambda self: None)  # 300 MB each: not what is tested here
    monkeypatch.setattr(Trainer, "_write_final", lambda self: self.out / "final")
    from fpn_zoo.data import write_synthetic_coco

    two = write_synthetic_coco(tmp_path / "two", num_images=2, num_classes=3, image_size=(64, 96), seed=0)
    tiny = (two, data[1])  # 2 training images in batches of 2: one step per epoch
    Trainer(config(tiny, tmp_path / "iters", iters=3)).fit()
    assert evaluated == [(3, True)]  # a run in steps: at the end only
    evaluated.clear()
    Trainer(config(tiny, tmp_path / "epochs", iters=None, epochs=3, eval_every=2)).fit()
    assert evaluated == [(2, False), (3, True)]  # every 2 epochs, and at the end
    with pytest.raises(ValueError, match="eval_every must be an integer >= 1"):
        config(data, tmp_path, eval_every=0)


def test_every_train_flag_shows_help_and_its_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    options = text[text.index("options:") :].splitlines()[1:]
    entries: list[str] = []
    for line in options:
        if line.startswith("  -"):
            entries.append(line.strip())
        elif line.strip() and entries:
            entries[-1] += " " + line.strip()
    flags = {entry.split()[0].rstrip(","): entry for entry in entries}
    assert len(flags) >= 30 and "--eval-every" in flags and "--overwrite" in flags
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    for flag, entry in flags.items():
        if flag == "-h":
            continue
        described = re.sub(r"^\S+( [A-Z_]+| \{[^}]*\})?\s+", "", entry)  # the flag and its metavar
        assert described and "default" in described, entry
        name = flag.removeprefix("--").replace("-", "_")
        shown = re.search(r"\(default: ([^);]+)", described)
        if defaults.get(name) is not None and shown and name not in ("jitter", "sync_bn", "progress"):
            assert shown[1].split(":")[0] == str(defaults[name]), (flag, shown[1])  # the real default
