"""The training loop: one process or many (torchrun), resumable exactly, logging JSON lines and a progress bar.

Reproducibility: the data order depends only on ``(seed, epoch)`` (a ``DistributedSampler``, also with one
process) and each sample's augmentation only on ``(seed, epoch, index)``
([`SeededSamples`][fpn_zoo.engine.trainer.SeededSamples]), never on the number of data-loading workers or on where a run
was interrupted. A resume restores model, optimiser, scheduler, scaler, EMA and RNG states, rebuilds the epoch's batches
and skips those already done without loading them, so an interrupted run continues exactly as an uninterrupted one
would.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from fpn_zoo.engine.checkpoints import latest_checkpoint, read_training_state, write_checkpoint
from fpn_zoo.engine.model_init import build_training_model
from fpn_zoo.engine.optim import build_optimizer, build_scheduler
from fpn_zoo.engine.train_config import TrainConfig

logger = logging.getLogger(__name__)


class ResumeError(ValueError):
    """A ``--resume`` that cannot continue the run in the folder (another model or config, no checkpoint)."""


class SeededSamples(Dataset):
    """A dataset whose sample ``i`` in epoch ``e`` is drawn with the RNG seeded from ``(seed, e, i)``.

    Random augmentation then depends neither on the worker that loads a sample nor on which samples were loaded
    before it, which is what makes a resumed run equal to an uninterrupted one.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + self.epoch) * 1_000_003 + index)
            return self.dataset[index]


@dataclass
class Position:
    """Where a run is: epochs completed, steps done in the current epoch, steps done in all."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Runs `TrainConfig` to the end: ``Trainer(config).fit(resume=...)`` returns the ``final/`` folder.

    Examples:
        >>> cfg = TrainConfig(model="fpn_r50_coco", train_ann="a.json", train_images="img", out="run", epochs=1)
        >>> Trainer(cfg).fit()  # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig) -> None:
        from fpn_zoo.data import CocoDetection, build_train_transforms
        from fpn_zoo.engine.distributed import init_distributed

        self.config = config
        # The device choice goes through init_distributed: under torchrun it picks the backend (NCCL needs CUDA) and
        # the local rank's GPU.
        self.dist = init_distributed(config.device)
        self.device = self.dist.device
        self.out = Path(config.out)
        self.is_main = self.dist.rank == 0
        self.train_set = CocoDetection(
            config.train_ann,
            config.train_images,
            transforms=build_train_transforms(hflip=config.hflip, jitter=config.jitter),
        )
        self.val_set = (
            CocoDetection(config.val_ann, config.val_images) if config.val_ann and config.val_images else None
        )
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = build_training_model(config, self.train_set.categories, self.device)
        self.ema = self._build_ema()
        self.module = self._wrap(self.model)
        self.batches_per_epoch = len(self._batch_sampler(0))
        self.total_steps = config.iters or config.epochs * self.batches_per_epoch  # type: ignore[operator]
        self.optimizer = build_optimizer(self.model, config, self.dist.world_size)
        self.scheduler = build_scheduler(self.optimizer, config, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.position = Position()

    # -- setup -----------------------------------------------------------------------------------------------------

    def _build_ema(self) -> torch.optim.swa_utils.AveragedModel | None:
        if self.config.ema_decay is None:
            return None
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        return AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.config.ema_decay), use_buffers=True)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.world_size == 1:
            return model
        if self.config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _batch_sampler(self, epoch: int) -> Any:
        from fpn_zoo.data import GroupedBatchSampler, create_aspect_ratio_groups

        # A DistributedSampler also with one process: the order depends on (seed, epoch) only.
        sampler = DistributedSampler(
            self.train_set, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=self.config.seed
        )
        sampler.set_epoch(epoch)
        if self.config.aspect_ratio_group_factor < 0:
            return BatchSampler(sampler, self.config.batch_size, drop_last=False)
        groups = create_aspect_ratio_groups(self.train_set.aspect_ratios(), k=self.config.aspect_ratio_group_factor)
        return GroupedBatchSampler(sampler, groups, self.config.batch_size)

    def _loader(self, epoch: int, skip: int) -> DataLoader:
        from fpn_zoo.data import collate_detection

        samples = SeededSamples(self.train_set, self.config.seed)
        samples.epoch = epoch
        batches = list(self._batch_sampler(epoch))[skip:]  # skipped batches are never loaded
        return DataLoader(
            samples,
            batch_sampler=batches,
            num_workers=self.config.workers,
            collate_fn=collate_detection,
            pin_memory=self.device.type == "cuda",
            # Its own generator: a loader draws a worker seed when iterated, which would otherwise shift the global
            # RNG (and so the RPN's and RoI heads' sampling) differently in a resumed run.
            generator=torch.Generator().manual_seed(self.config.seed + epoch),
        )

    # -- checkpoints -----------------------------------------------------------------------------------------------

    def _training_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": _rng_state(),
            "position": vars(self.position).copy(),
        }

    def _checkpoint(self) -> None:
        if self.is_main:
            path = write_checkpoint(
                self.out, self.position.global_step, self.model.state_dict(), self.model.config, self._training_state()
            )
            self._log({"event": "checkpoint", "path": str(path), **vars(self.position)})
        self._barrier()

    def _resume(self) -> None:
        saved_config = self.out / "train_config.json"
        if not saved_config.is_file():
            raise ResumeError(f"--resume: {self.out} holds no training run (no train_config.json).")
        previous = TrainConfig.from_dict(json.loads(saved_config.read_text()))
        changes = self.config.differences(previous)
        if changes:
            raise ResumeError(
                f"--resume refused: the run in {self.out} was started with other settings ({'; '.join(changes)}). "
                "Resume with the same settings, or start a new run in another --out folder."
            )
        folder = latest_checkpoint(self.out)
        if folder is None:
            raise ResumeError(f"--resume: {self.out} has no checkpoint yet; start the run again without --resume.")
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(folder / "model.safetensors", device=str(self.device)))
        state = read_training_state(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        _set_rng_state(state["rng"])
        self.position = Position(**state["position"])
        self._log({"event": "resume", "from": str(folder), **vars(self.position)})

    # -- the loop --------------------------------------------------------------------------------------------------

    def fit(self, *, resume: bool = False) -> Path:
        """Train to the end (or continue the run in ``out`` with ``resume``); returns the ``final/`` folder."""
        if resume:
            self._resume()
        elif self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.config.save(self.out / "train_config.json")
        epochs = math.ceil(self.total_steps / self.batches_per_epoch)
        progress = self._progress_bar()
        while self.position.global_step < self.total_steps:
            self._train_epoch(self.position.epoch, progress)
            if self.position.step_in_epoch >= self.batches_per_epoch:  # a whole epoch: checkpoint, evaluate
                self.position = Position(self.position.epoch + 1, 0, self.position.global_step)
                self._checkpoint()
                self._evaluate(self.position.epoch)
            if self.position.epoch >= epochs:
                break
        if progress is not None:
            progress.close()
        if self.position.step_in_epoch:  # an --iters run ending mid-epoch
            self._checkpoint()
            self._evaluate(self.position.epoch + 1)
        return self._write_final()

    def _train_epoch(self, epoch: int, progress: Any) -> None:
        self.module.train()
        loader = self._loader(epoch, skip=self.position.step_in_epoch)
        window_start, window_images = time.perf_counter(), 0
        for images, targets in loader:
            if self.position.global_step >= self.total_steps:
                return
            images = [im.to(self.device, non_blocking=True) for im in images]
            targets = [{k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            losses = self._step(images, targets)
            self.position.step_in_epoch += 1
            self.position.global_step += 1
            window_images += len(images) * self.dist.world_size
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{losses['loss']:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if self.position.global_step % self.config.log_every == 0 or self.position.global_step == 1:
                elapsed = time.perf_counter() - window_start
                self._log(
                    {
                        "event": "train",
                        **vars(self.position),
                        "lr": self.scheduler.get_last_lr()[0],
                        **losses,
                        "images_per_s": window_images / elapsed if elapsed > 0 else None,
                    }
                )
                window_start, window_images = time.perf_counter(), 0
            if self.position.global_step % self.config.checkpoint_every == 0:
                self._checkpoint()

    def _step(self, images: list[torch.Tensor], targets: list[dict[str, Any]]) -> dict[str, float]:
        amp = self.config.amp
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            loss_dict = self.module(images, targets)
        loss = sum(loss_dict.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"Loss is {loss.item()} at step {self.position.global_step} "
                f"({ {k: round(v.item(), 4) for k, v in loss_dict.items()} }). "
                "Lower the learning rate (--lr), enable --clip-grad-norm, or check the annotations."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return {"loss": loss.item(), **{k: v.item() for k, v in loss_dict.items()}}

    # -- evaluation, logs, final export ------------------------------------------------------------------------------

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _evaluate(self, epoch: int) -> None:
        if self.val_set is None:
            return
        from fpn_zoo.engine.evaluate import evaluate_model

        result = evaluate_model(
            self._eval_model(),
            self.val_set,
            batch_size=self.config.batch_size,
            device=self.device,
            num_workers=self.config.workers,
            distributed=self.dist.world_size > 1,
            progress=self.config.progress,
        )
        if result is not None:
            self._log({"event": "eval", "epoch": epoch, "step": self.position.global_step, **result.to_dict()})

    def _write_final(self) -> Path:
        from fpn_zoo.weights.checkpoint import save_checkpoint

        final = self.out / "final"
        if self.is_main:
            model = self._eval_model()
            save_checkpoint(
                model.state_dict(),
                self.model.config,
                final,
                extra={
                    "training": {"run": str(self.out), "steps": self.position.global_step, "ema": self.ema is not None}
                },
            )
            self._log({"event": "final", "path": str(final)})
        self._barrier()
        return final

    def _progress_bar(self) -> Any:
        if not (self.is_main and self.config.progress):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_steps, initial=self.position.global_step, desc=self.config.model, unit="step")

    def _log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            torch.distributed.barrier()
