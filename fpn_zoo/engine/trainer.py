"""The training loop: one process or many (torchrun), resumable exactly, logging JSON lines and a progress bar.

Reproducibility: the data order depends only on ``(seed, epoch)`` (a ``DistributedSampler``, also with one
process) and each sample's augmentation only on ``(seed, epoch, index)``
([`SeededSamples`][fpn_zoo.engine.trainer.SeededSamples]), never on the number of data-loading workers or on where a run
was interrupted. A resume restores model, optimiser, scheduler, scaler, EMA and RNG states, rebuilds the epoch's batches
and skips those already done without loading them, so an interrupted run continues exactly as an uninterrupted one
would.

The run talks on the main process: what it will do, a table line per epoch (loss, COCO AP and AP50, the time the
evaluation took, and beforehand its estimated cost) and the final metrics. It evaluates every epoch of a run given in
epochs, only at the end of one given in steps, or every ``eval_every`` epochs, and never changes a folder that holds
another run unless told to resume or to overwrite it
([`check_run_folder`][fpn_zoo.engine.checkpoints.check_run_folder]).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from fpn_zoo.engine import train_console
from fpn_zoo.engine.checkpoints import (
    CONFIG_FILE,
    ResumeError,
    check_run_folder,
    latest_checkpoint,
    read_training_state,
    remove_run,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from fpn_zoo.engine.model_init import build_training_model
from fpn_zoo.engine.optim import build_optimizer, build_scheduler
from fpn_zoo.engine.train_config import TrainConfig
from fpn_zoo.voice import in_cli, option

__all__ = ["Position", "ResumeError", "SeededSamples", "Trainer"]  # ResumeError lives in checkpoints

logger = logging.getLogger(__name__)


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
            on_invalid=config.on_invalid,
        )
        self.val_set = (
            CocoDetection(config.val_ann, config.val_images, on_invalid=config.on_invalid)
            if config.val_ann and config.val_images
            else None
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
        # For the console: the mean loss since the last table line, and seconds per image of training and evaluation.
        self._loss = [0.0, 0]  # sum, steps
        self._train_time = [0.0, 0]  # seconds, images of this process
        self._eval_s_per_image: float | None = None

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
            "rng": rng_state(),
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
        folder = latest_checkpoint(self.out)
        if folder is None:  # check_run_folder refuses this case; the folder changed since
            raise ResumeError(f"{self.out} has no checkpoint to resume from.")
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(folder / "model.safetensors", device=str(self.device)))
        state = read_training_state(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        set_rng_state(state["rng"])
        self.position = Position(**state["position"])
        self._log({"event": "resume", "from": str(folder), **vars(self.position)})
        self._say(f"Resuming the run in {self.out} from {folder.name} (epoch {self.position.epoch}).")

    # -- the loop --------------------------------------------------------------------------------------------------

    def fit(self, *, resume: bool = False, overwrite: bool = False) -> Path:
        """Train to the end and return the ``final/`` folder.

        Args:
            resume: Continue the run in ``config.out`` from its latest checkpoint (with the same settings).
            overwrite: Replace the run in ``config.out``: the files it wrote are removed first, and said so.

        Raises:
            RunFolderError: ``config.out`` holds a run and neither ``resume`` nor ``overwrite`` is set, or
                ``resume`` finds no run to continue (``ResumeError``); the message says which option to pass.
        """
        check_run_folder(self.config, resume=resume, overwrite=overwrite)
        self._barrier()  # every process has read the folder before the main one changes it
        if resume:
            self._resume()
        elif self.is_main:
            if overwrite:
                removed, kept = remove_run(self.out)
                note = f"; kept {', '.join(kept)} (not written by a training run)" if kept else ""
                self._say(f"Overwriting the run in {self.out}: removed {', '.join(removed) or 'nothing'}{note}.")
            self.out.mkdir(parents=True, exist_ok=True)
            self.config.save(self.out / CONFIG_FILE)
        self._say(self._plan())
        epochs = math.ceil(self.total_steps / self.batches_per_epoch)
        progress = self._progress_bar()
        while self.position.global_step < self.total_steps:
            self._train_epoch(self.position.epoch, progress)
            if self.position.step_in_epoch >= self.batches_per_epoch:  # a whole epoch: checkpoint, evaluate, report
                self.position = Position(self.position.epoch + 1, 0, self.position.global_step)
                self._checkpoint()
                self._end_of_epoch(last=self.position.global_step >= self.total_steps)
            if self.position.epoch >= epochs:
                break
        if progress is not None:
            progress.close()
        if self.position.step_in_epoch:  # an --iters run ending mid-epoch
            self._checkpoint()
            self._end_of_epoch(last=True)
        final = self._write_final()
        if not in_cli():  # the command line prints its own next steps
            self._say(f"Final weights: {final} (fpn_zoo.create_model({self.config.model!r}, weights={str(final)!r}))")
        return final

    def _train_epoch(self, epoch: int, progress: Any) -> None:
        self.module.train()
        loader = self._loader(epoch, skip=self.position.step_in_epoch)
        window_start, window_images = time.perf_counter(), 0
        step_start = window_start
        for images, targets in loader:
            if self.position.global_step >= self.total_steps:
                return
            images = [im.to(self.device, non_blocking=True) for im in images]
            targets = [{k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            losses = self._step(images, targets)
            self.position.step_in_epoch += 1
            self.position.global_step += 1
            window_images += len(images) * self.dist.world_size
            self._loss = [self._loss[0] + losses["loss"], self._loss[1] + 1]
            now = time.perf_counter()  # loading included: it is part of an evaluation's time too
            self._train_time = [self._train_time[0] + now - step_start, self._train_time[1] + len(images)]
            step_start = now
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
                f"Lower the learning rate ({option('lr', placeholder='LR')}), clip the gradients "
                f"({option('clip_grad_norm', placeholder='NORM')}), or check the annotations."
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

    def _end_of_epoch(self, *, last: bool) -> None:
        """Evaluate when due, print the epoch's table line, and the final metrics at the end of the run."""
        every = self.config.evaluation_interval
        due = last or (self.position.step_in_epoch == 0 and every is not None and self.position.epoch % every == 0)
        result, seconds = self._evaluate(last) if due and self.val_set is not None else (None, None)
        if self.config.epochs is not None or seconds is not None or last:  # --iters runs: at evaluations only
            self._say(self._table_line(result, seconds))
            self._loss = [0.0, 0]
        if last and result is not None:
            from fpn_zoo.engine.evaluate import format_metrics

            self._say(format_metrics(result))

    def _evaluate(self, last: bool) -> tuple[Any, float]:
        from fpn_zoo.engine.evaluate import evaluate_model

        self._say(self._eval_estimate(last))
        start = time.perf_counter()
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the training's random state stays as if it had not run
            result = evaluate_model(
                self._eval_model(),
                self.val_set,  # type: ignore[arg-type]
                batch_size=self.config.batch_size,
                device=self.device,
                num_workers=self.config.workers,
                distributed=self.dist.world_size > 1,
                progress=self.config.progress,
            )
        seconds = time.perf_counter() - start
        self._eval_s_per_image = seconds / self._eval_images_per_process()
        if result is not None:
            self._log(
                {
                    "event": "eval",
                    "epoch": self.position.epoch + (1 if self.position.step_in_epoch else 0),  # the one in progress
                    "step": self.position.global_step,
                    **result.to_dict(),
                    "seconds": round(seconds, 3),
                    "train_loss": self._loss[0] / self._loss[1] if self._loss[1] else None,  # since the last line
                }
            )
        return result, seconds

    # -- the console (main process only) ----------------------------------------------------------------------------

    def _eval_images_per_process(self) -> int:
        return max(1, math.ceil(len(self.val_set) / self.dist.world_size))  # type: ignore[arg-type]

    def _plan(self) -> str:
        val_images = None if self.val_set is None else len(self.val_set)
        return train_console.plan_line(
            self.config.model, self.out, self.total_steps, self.batches_per_epoch, val_images,
            self.config.evaluation_interval,
        )  # fmt: skip

    def _eval_estimate(self, last: bool) -> str:
        return train_console.eval_estimate(
            len(self.val_set), self.dist.world_size, self._eval_images_per_process(),  # type: ignore[arg-type]
            self._train_time, self._eval_s_per_image, last=last,
        )  # fmt: skip

    def _table_line(self, result: Any, seconds: float | None) -> str:
        metrics = None if self.val_set is None else (result.metrics if result is not None else {})
        mean_loss = self._loss[0] / self._loss[1] if self._loss[1] else None
        return train_console.table_line(
            self.position, self.total_steps, self.batches_per_epoch, mean_loss, metrics, seconds
        )

    def _say(self, text: str) -> None:
        if not self.is_main:
            return
        from tqdm.auto import tqdm

        tqdm.write(text, file=sys.stdout)  # above an open progress bar, not through it
        sys.stdout.flush()

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
