"""Training: L1 + Adam recipes of the papers, EMA, bf16 autocast, exact resume, torchrun/DDP.

A run lives in one folder:
  ``state.pt``          full training state (weights, EMA, optimizer, schedule, step), written atomically;
  ``last.safetensors``  the weights to use now (the EMA when enabled), loadable by ``litesr.load_model``;
  ``best.safetensors``  the best weights by validation PSNR; ``best.json`` its scores;
  ``metrics.jsonl``     one JSON line per log/validation event; ``config.yaml`` the resolved config.
A run killed at any moment (even SIGKILL) resumes with ``--resume`` from its last checkpoint, and a resumed run
computes exactly what the uninterrupted run would have (data sampling is a function of the step, see
``litesr.data.training``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from . import compat
from .checkpoint import create_model, read_state_dict, save_model, to_official_keys
from .errors import DivergedError
from .io import atomic_path
from .progress import Progress, duration, progress_mode
from .train_config import ConfigError, TrainConfig, packaged_configs  # noqa: F401 (litesr.train's API)


# --------------------------------------------------------------------------------------------- the parts of a run


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))


#: Signals that stop a run cleanly (finish the step, checkpoint): Ctrl-C, a scheduler's TERM, a closed terminal.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

#: ``loss`` config values → loss functions.
PIXEL_LOSSES = {"l1": torch.nn.functional.l1_loss, "l2": torch.nn.functional.mse_loss}


def lr_lambda(config: TrainConfig):
    """Multiplier of the base lr at a step: linear warm-up, then multistep decay or cosine to ``min_lr``."""

    def factor(step: int) -> float:
        if config.warmup_iters and step < config.warmup_iters:
            return (step + 1) / config.warmup_iters
        if config.schedule == "cosine":
            span = max(1, config.iters - config.warmup_iters)
            t = min(1.0, (step - config.warmup_iters) / span)
            floor = config.min_lr / config.lr
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
        return config.gamma ** sum(step >= m for m in config.milestones)

    return factor


def warmed_up_ema(decay: float):
    """EMA update for ``AveragedModel`` whose decay ramps as (1+n)/(10+n) up to ``decay``.

    A fixed 0.999 from step 1 keeps ~55 % of the random initial weights after 600 steps; the ramp makes the
    average follow the recent ~10 % of training early on and settle at ``decay`` later (as timm's ModelEma does).
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(averaged[0]):
            compat.foreach_lerp_(averaged, current, 1.0 - d)
        else:  # integer buffers (BatchNorm's num_batches_tracked): follow the model
            for a, c in zip(averaged, current):
                a.copy_(c)

    return update


def init_from(model: nn.Module, path: str) -> list[str]:
    """Copy every tensor of ``path`` whose key and shape match (a x4 body into a x2 model); return skipped keys.

    ``path`` is a weights file, or a name from litesr's weights table (``elan-light-x4``, ``elan-light-x4-291``;
    ``elan-light_x4`` as well)."""
    from .pretrained import weights_path

    path = weights_path(path)[0]
    source, _ = to_official_keys(read_state_dict(path))
    own = model.state_dict()
    usable = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(k for k in own if k not in usable)


def freeze_all_but(model: nn.Module, patterns: list[str]) -> list[nn.Module]:
    """Freeze every parameter whose name matches none of ``patterns`` (nothing when there are none); return the
    BatchNorm layers left with no trainable parameter, whose running statistics must stay as they are."""
    import re

    if not patterns:
        return []
    regexes = [re.compile(p) for p in patterns]
    trained = 0
    for name, param in model.named_parameters():
        param.requires_grad_(any(r.search(name) for r in regexes))
        trained += param.requires_grad
    if not trained:
        raise ConfigError(f"train_only {patterns} matches no parameter of {type(model).__name__} "
                          f"(names look like {next(iter(dict(model.named_parameters())))!r})")
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and not any(p.requires_grad for p in m.parameters())]


class RunLog:
    """Where a run's records go: one JSON line each in ``metrics.jsonl`` and, when tensorboard is installed, their
    numbers as scalars under ``tb/``. Built with the trainer, so that :meth:`Trainer.validate` logs at any time;
    nothing is written before the first record or :meth:`open` (a start that fails leaves no run folder), and a
    closed log opens again at its next record. ``enabled=False`` (processes other than the main one) writes nothing.
    """

    def __init__(self, out: Path, enabled: bool = True) -> None:
        self.out, self.enabled = out, enabled
        self._tb: Any = None
        self._opened = False

    def open(self) -> None:
        """Open the tensorboard writer (tensorboard is optional: without it only metrics.jsonl is written)."""
        if self._opened or not self.enabled:
            return
        self._opened = True
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tb"))
        except Exception:  # tensorboard is optional
            self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        self.open()
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        self._tb, self._opened = None, False


@dataclass
class _LogWindow:
    """The steps since the last log line: when they began, at which step, and their loss summed on the device (no
    sync per step)."""

    start: float
    step: int
    loss_sum: torch.Tensor
    count: int = 0

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum, self.count = self.loss_sum + loss, self.count + 1


# --------------------------------------------------------------------------------------------- the run


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False, progress: bool = True) -> None:
        from .device import native_bf16, pick_device

        self.config = config
        self.dist = Distributed.from_env()
        self.out = Path(config.out)
        self.progress = progress
        device = pick_device(config.device)
        if self.dist.world_size > 1:
            if device.type == "cuda":
                device = torch.device("cuda", self.dist.local_rank)
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        self.device = device
        self.device_defaults = config.fill_device_defaults(device.type)  # batch/patch unset: what fits the device
        if config.batch_size % self.dist.world_size:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by {self.dist.world_size} processes")
        self.amp = config.precision == "bf16" or (config.precision == "auto" and native_bf16(device))

        torch.manual_seed(config.seed)
        self.model = create_model(config.arch, config.scale, **config.model_config).to(device)
        if config.init_weights and not resume:  # a resumed run takes every weight from its checkpoint
            self.skipped_init = init_from(self.model, config.init_weights)
        self.frozen_norms = freeze_all_but(self.model, config.train_only)
        self.ema = None
        if config.ema_decay:
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(self.model, multi_avg_fn=warmed_up_ema(config.ema_decay), use_buffers=True)
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=config.lr,
                                          betas=config.betas,
                                          weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(config))
        self.step = 0
        self.stopped_by: int | None = None  # the signal that stopped the run early, if one did
        self.best_psnr = -math.inf
        self.train_seconds = 0.0  # wall time spent in training steps, over all resumed runs
        if resume:
            self._load_state()
        elif (self.out / "state.pt").exists():
            raise ConfigError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        self.log = RunLog(self.out, enabled=self.dist.is_main)
        self.net: nn.Module = self.model
        if self.dist.world_size > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)

    # ------------------------------------------------------------------ data

    def _loader(self):
        from torch.utils.data import DataLoader

        from .data.training import PatchDataset, StepSampler, load_hr_folders, load_paired_folders

        c = self.config
        if c.train_lr_data:
            if len(c.train_data) != 1:
                raise ConfigError("train_lr_data pairs with exactly one train_data HR folder")
            pairs = load_paired_folders(c.train_data[0], c.train_lr_data, c.scale, cache_dir=c.cache_dir)
        else:
            self.left_out: list[str] = []
            pairs = load_hr_folders(c.train_data, c.scale, min_hr_size=c.patch_size, cache_dir=c.cache_dir,
                                    hr_scales=c.hr_scales, left_out=self.left_out)
        dataset = PatchDataset(pairs, c.scale, c.patch_size, c.repeat, augment=True, seed=c.seed)
        per_rank = c.batch_size // self.dist.world_size
        sampler = StepSampler(per_rank, self.dist.rank, self.dist.world_size, start_step=self.step)
        loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, num_workers=c.workers,
                            persistent_workers=c.workers > 0, pin_memory=self.device.type == "cuda",
                            worker_init_fn=_leave_stop_signals_to_the_trainer,
                            prefetch_factor=4 if c.workers > 0 else None)
        return loader, len(pairs)

    # ------------------------------------------------------------------ checkpoints

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_psnr": self.best_psnr,
            "train_seconds": self.train_seconds,
            "torch_rng": torch.get_rng_state(),
            "config": json.dumps(self.config.to_dict()),
        }

    def _load_state(self) -> None:
        path = self.out / "state.pt"
        if not path.exists():
            raise ConfigError(f"--resume: no checkpoint at {path}")
        state = torch.load(path, map_location=self.device, weights_only=True)
        saved = json.loads(state["config"])
        for key in ("arch", "scale", "model_config"):
            theirs = saved.get(key, getattr(TrainConfig(), key))
            if theirs != getattr(self.config, key):
                raise ConfigError(f"--resume: {path} is a {key}={theirs} run, not {getattr(self.config, key)}")
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._apply_config_to_optimizer()
        self.step = int(state["step"])
        self.best_psnr = float(state["best_psnr"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        torch.set_rng_state(state["torch_rng"].cpu())

    def _apply_config_to_optimizer(self) -> None:
        """Make the loaded optimizer and schedule follow this run's config, not the checkpoint's.

        ``load_state_dict`` restores the saved base lr, betas and weight decay; a resume that passes ``--lr`` (the
        documented way out of a diverged run), ``--iters`` or another schedule setting must use the new values.
        Without overrides every value is the saved one, so a plain resume stays exact.
        """
        c = self.config
        factor = self.scheduler.lr_lambdas[0]  # built from this config
        self.scheduler.base_lrs = [c.lr] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group.update(initial_lr=c.lr, lr=c.lr * factor(self.scheduler.last_epoch), betas=tuple(c.betas),
                         weight_decay=c.weight_decay)
        compat.set_last_lr(self.scheduler, [g["lr"] for g in self.optimizer.param_groups])

    def _train_mode(self, training: bool = True) -> None:
        """The model in training mode, except the BatchNorm layers of a frozen part: their statistics stay."""
        self.model.train(training)
        for norm in self.frozen_norms:
            norm.eval()

    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def save_checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        if not all(bool(p.isfinite().all()) for p in self.model.parameters()):  # keep the last good checkpoint
            raise DivergedError(
                f"the weights hold NaN/inf at step {self.step}; the run diverged. Resume from the last checkpoint "
                "with a lower lr (or grad_clip)")
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out / "state.pt") as tmp:
            torch.save(self._state(), tmp)
        save_model(self.eval_model(), self.out / "last.safetensors", metadata={"litesr.step": str(self.step)})

    def _log(self, record: dict[str, Any]) -> None:
        self.log.write(record)

    # ------------------------------------------------------------------ validation

    def validate(self) -> dict[str, Any] | None:
        c = self.config
        if not c.val_data or not self.dist.is_main:
            return None
        from .evaluate import evaluate

        model = self.eval_model()
        was_training = model.training
        model.eval()
        try:
            results = evaluate(model, c.val_data, c.val_sets, c.scale, device=self.device, progress=False)
        finally:
            self._train_mode(was_training)
        scores = {name: {"psnr_y": r["psnr_y"], "ssim_y": r["ssim_y"]} for name, r in results.items()}
        psnr = scores[c.val_sets[0]]["psnr_y"]
        record = {"step": self.step, "val": scores, f"val_psnr_{c.val_sets[0]}": psnr}
        self._log(record)
        if psnr > self.best_psnr:
            self.best_psnr = psnr
            save_model(model, self.out / "best.safetensors", metadata={"litesr.step": str(self.step)})
            with atomic_path(self.out / "best.json") as tmp:
                tmp.write_text(json.dumps({"step": self.step, "val": scores}, indent=1))
        return record

    # ------------------------------------------------------------------ loop

    def run(self, stop_at: int | None = None) -> Path:
        """Train up to ``config.iters`` (or stop early, checkpointed, after step ``stop_at``).

        After each step, whatever is due at that step happens in this order: a log line (:meth:`_log_due`),
        a validation (:meth:`_validation_due`), a checkpoint (:meth:`_checkpoint_due`); the loop ends when
        :meth:`_stop_due` says so, and :meth:`_finish` checkpoints a run that stopped early."""
        c = self.config
        if self.step >= c.iters:
            raise ConfigError(f"{self.out} already reached its {c.iters} iterations (it stopped at step {self.step}); "
                              f"pass --iters N with N > {self.step} to train longer")
        loader, self._n_images = self._loader()  # before the run folder is made: a start that fails leaves nothing
        if self.dist.is_main:
            self._write_config()
            self.log.open()
        self._stop_requested = False
        old_handlers = {s: signal.signal(s, self._request_stop) for s in STOP_SIGNALS}
        self.console = Progress(c.iters, f"train {c.arch} x{c.scale}",
                                progress_mode(quiet=not (self.progress and self.dist.is_main)), unit="it",
                                interval=None, initial=self.step, keep_bar=True)  # the run says its own log lines
        self._announce()
        self._train_mode()
        self._last_checkpoint = time.monotonic()
        self._window = _LogWindow(time.monotonic(), self.step, torch.zeros((), device=self.device))
        try:
            for lr_img, hr_img in loader:
                if self._stop_due(stop_at):
                    break
                loss = self._train_step(lr_img.to(self.device, non_blocking=True),
                                        hr_img.to(self.device, non_blocking=True))
                self.step += 1
                self._window.add(loss)
                self.console.update(1)
                self._after_step()
            self._finish()
        finally:
            self.console.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
            self.log.close()
        return self.out

    def _write_config(self) -> None:
        import yaml

        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))

    def _request_stop(self, signum, frame) -> None:
        """A stop signal: finish the step, checkpoint, exit (non-zero: the run is not done)."""
        self._stop_requested = True
        self.stopped_by = int(signum)

    def _announce(self) -> None:
        """The run's first lines: what it trains on what, how much memory it needs, images left out."""
        c, say = self.config, self.console.say
        need = self.step_memory()
        chosen = f" (the {' and '.join(self.device_defaults)} default for a {self.device.type})" \
            if self.device_defaults else ""
        say(f"train {c.arch} x{c.scale}: step {self.step} of {c.iters}, {self._n_images} images, batch "
            f"{c.batch_size}, patch {c.patch_size}{chosen}, {'bf16' if self.amp else 'fp32'} on {self.device.type}, "
            f"about {need / 2**30:.1f} GiB of memory -> {self.out}")
        left_out = getattr(self, "left_out", [])
        if left_out:
            say(f"note: {len(left_out)} of {len(left_out) + self._n_images} training images are smaller than the "
                f"{c.patch_size}-px HR patch and are left out (e.g. {left_out[0]}); lower --patch-size to use them")
        free = _available_memory(self.device)
        if free is not None and need > free:
            say(f"warning: the run needs about {need / 2**30:.1f} GiB but {free / 2**30:.1f} GiB is available; "
                "lower --batch-size or --patch-size if it is killed")

    def _stop_due(self, stop_at: int | None) -> bool:
        c = self.config
        return self.step >= c.iters or self._stop_requested or (stop_at is not None and self.step >= stop_at)

    def _log_due(self) -> bool:
        return self.step % self.config.log_every == 0 or self.step == self.config.iters

    def _validation_due(self) -> bool:
        c = self.config
        return bool(c.val_data) and (self.step % c.val_every == 0 or self.step == c.iters)

    def _checkpoint_due(self) -> bool:
        c = self.config
        due = self.step % c.ckpt_every == 0 or time.monotonic() - self._last_checkpoint > 60 * c.ckpt_minutes
        return due or self.step == c.iters

    def _after_step(self) -> None:
        """What is due at the step just taken: log, validate, checkpoint (in this order)."""
        if self._log_due():
            self._log_progress()
        if self._validation_due():
            self._validate_and_say()
        if self._checkpoint_due():
            self.save_checkpoint()
            self._last_checkpoint = time.monotonic()

    def _log_progress(self) -> None:
        """Log the mean loss, lr and speed of the steps since the last log; stop a run whose loss is not finite."""
        c, window = self.config, self._window
        now = time.monotonic()
        self.train_seconds += now - window.start
        mean_loss = window.loss_sum.item() / window.count
        if not math.isfinite(mean_loss):
            raise DivergedError(
                f"the training loss became {mean_loss} by step {self.step}; the run diverged. Resume "
                "from the last checkpoint with a lower lr (or grad_clip)")
        record = {"step": self.step, "loss": mean_loss, "lr": self.scheduler.get_last_lr()[0],
                  "it_per_s": (self.step - window.step) / max(now - window.start, 1e-9), "images": self._n_images,
                  "train_hours": round(self.train_seconds / 3600, 4)}
        self._log(record)
        self.console.show(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        if self.console.mode == "lines":
            eta = (c.iters - self.step) / max(record["it_per_s"], 1e-9)
            self.console.say(f"step {self.step}/{c.iters}  loss {mean_loss:.4f}  lr {record['lr']:.2e}  "
                             f"{record['it_per_s']:.2f} it/s  eta {duration(eta)}")
        self._window = _LogWindow(now, self.step, torch.zeros_like(window.loss_sum))

    def _validate_and_say(self) -> None:
        record = self.validate()
        if record is not None:
            scores = "  ".join(f"{name} {v['psnr_y']:.3f} dB / {v['ssim_y']:.4f}" for name, v in record["val"].items())
            self.console.say(f"step {self.step} validation: {scores}  "
                             f"(best {self.config.val_sets[0]} {self.best_psnr:.3f})")

    def _finish(self) -> None:
        """After the loop: checkpoint a run that stopped before its last step, and say how to continue it."""
        c = self.config
        if self._stop_requested or self.step < c.iters:
            self.save_checkpoint()
        if self._stop_requested:
            self.console.say(f"stopped at step {self.step} of {c.iters}, checkpointed; continue with: "
                             f"litesr train --out {self.out} --resume")

    def step_memory(self) -> int:
        """Bytes a training step needs, roughly: one sample's forward and backward measured at the patch size
        (activations grow with the batch) times the per-process batch, plus weights, gradients, Adam's two moments
        and the EMA. Measured in eval mode on a constant input: no running statistic or random state changes."""
        from .efficiency import profile_forward

        c = self.config
        lp = c.patch_size // c.scale
        x = torch.full((1, 3, lp, lp), 0.5, device=self.device)

        def step() -> None:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                out = self.model(x)
            out.float().mean().backward()

        was_training = self.model.training
        self.model.eval()
        try:
            used = profile_forward(step, runs=0, warmup=1, device=self.device)["peak_bytes"]
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.train(was_training)
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return max(0, used) * (c.batch_size // self.dist.world_size) + 5 * weights

    def _train_step(self, lr_img: torch.Tensor, hr_img: torch.Tensor) -> torch.Tensor:
        """One optimisation step; returns the (detached) loss without waiting for the device."""
        c = self.config
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            sr = self.net(lr_img)
        loss = PIXEL_LOSSES[c.loss](sr.float(), hr_img)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss.detach()


def _available_memory(device: torch.device) -> int | None:
    """Free bytes on ``device``: the GPU's free memory, or the system's MemAvailable for a CPU (None if unknown)."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, RuntimeError, ValueError):
        return None
    return None


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """Data workers ignore SIGINT/SIGTERM: a signal sent to the whole process group (Ctrl-C, ``kill -- -PGID``,
    a batch scheduler) must reach the trainer, which finishes its step, checkpoints and stops the workers itself;
    a worker killed first would crash the run before it could checkpoint."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns its folder."""
    return run_training(config, resume=resume, progress=progress).out


def run_training(config: TrainConfig, resume: bool = False, progress: bool = True) -> Trainer:
    """Run (or resume) a training run; returns its trainer (``stopped_by``: the signal that stopped it, if any)."""
    trainer = None
    try:
        trainer = Trainer(config, resume=resume, progress=progress)
        trainer.run()
        if dist.is_initialized():
            dist.barrier()  # every rank leaves together: none tears its connections down under a peer still saving
        return trainer
    finally:
        _leave_process_group(trainer)


def _leave_process_group(trainer: Trainer | None) -> None:
    """Release DistributedDataParallel, then the process group, while the interpreter is whole. DDP's reducer holds
    the group: left to interpreter exit, gloo's threads are torn down in no set order, and a rank can abort
    ("terminate called without an active exception") after its run has finished."""
    if trainer is not None:
        trainer.net = trainer.model
    if dist.is_initialized():
        dist.destroy_process_group()
