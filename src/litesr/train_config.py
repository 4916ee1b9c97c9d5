"""What a training run is told: one dataclass whose fields are the YAML recipe keys and the ``litesr train`` flags.

Each field is declared once, with its help text and command-line details in its metadata; ``litesr train``
generates its flags from these fields (``--batch-size`` for ``batch_size``), and a recipe file sets them by name.
Recipes are YAML files, packaged in ``litesr/configs`` or anywhere else; ``extends: NAME`` makes one recipe the
other's values plus its own (``elan-light_x2`` is ``elan-light_x4`` at scale 2).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import LitesrError, NotFoundError
from .models.registry import SCALES

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: Training precisions: the words of ``--precision`` everywhere (fp16 is not offered for training).
TRAIN_PRECISIONS = ("fp32", "bf16", "auto")
#: The key earlier recipes and run folders used for the precision, and what its values mean now.
LEGACY_AMP = {"off": "fp32", "bf16": "bf16", "auto": "auto"}


class ConfigError(LitesrError, ValueError):
    """A training config or flag is wrong; the message says which and why."""


def option(default: Any, help: str, **cli: Any) -> Any:
    """A config field: its default, the help text of its flag, and argparse details (``nargs``, ``metavar``,
    ``choices``, ``type``); ``cli=False`` keeps it out of the command line (recipe files only)."""
    kind = {"default_factory": default} if callable(default) else {"default": default}
    return field(**kind, metadata={"help": help, **cli})


#: (batch, HR patch) when neither a recipe nor a flag sets them, by device type: the papers' 64 x 256² on a GPU;
#: on a CPU 16 x 128² (64 x 256² needed over 22 GB there, and the kernel's OOM killer ended the run without a word).
DEVICE_DEFAULTS = {"cuda": (64, 256), "cpu": (16, 128), "mps": (16, 128)}


@dataclass
class TrainConfig:
    """Every knob of a run. YAML files set these fields by name; command-line flags override them."""

    arch: str = option("elan-light", "model variant to train (see `litesr models`)")
    scale: int = option(4, "upscaling factor", choices=SCALES)
    model_config: dict[str, Any] = option(dict, "overrides of the variant's sizes (e.g. m_elan: 8)", cli=False)
    train_data: list[str] = option(list, "HR image folder(s); LR made with MATLAB-compatible bicubic",
                                   nargs="+", metavar="DIR")
    train_lr_data: str | None = option(None, "LR folder paired with a single HR folder", metavar="DIR")
    hr_scales: list[float] = option(lambda: [1.0], "train on each HR image at these sizes (MATLAB-bicubic "
                                    "downscaled), e.g. 1 0.9 0.8 0.7 0.6: the scale augmentation of the 291 images "
                                    "in VDSR and DRRN", nargs="+", metavar="F")
    cache_dir: str | None = option(None, "keep decoded images and bicubic LR here as memory-mapped .npy files: "
                                         "restarts skip decoding, data need not fit in RAM", metavar="DIR")
    val_data: str | None = option(None, "benchmark root (EDSR layout: <Set>/HR, <Set>/LR_bicubic/X<s>)",
                                  metavar="DIR")
    val_sets: list[str] = option(lambda: ["Set5"], "validation sets (default Set5); the first picks 'best'",
                                 metavar="A,B", type=str)
    iters: int = option(500_000, "total iterations")
    batch_size: int | None = option(None, "global batch size (split over torchrun processes); default: 64 on a "
                                          "GPU, 16 on a CPU (DEVICE_DEFAULTS)")
    patch_size: int | None = option(None, "HR patch side (a multiple of the scale); default: 256 on a GPU, 128 on "
                                          "a CPU, rounded down to a multiple of the scale")
    repeat: int = option(1, "passes over the image list per epoch")
    loss: str = option("l1", "pixel loss: l1 (the papers' recipes) or l2 (mean squared error, what PSNR measures; "
                             "for fine-tuning a trained run at a low lr)", choices=("l1", "l2"))
    lr: float = option(2e-4, "base learning rate")
    betas: tuple[float, float] = option((0.9, 0.99), "Adam betas", nargs=2, metavar=("B1", "B2"))
    weight_decay: float = option(0.0, "Adam weight decay")
    schedule: str = option("multistep", "learning-rate schedule after the warm-up", choices=("multistep", "cosine"))
    milestones: list[int] = option(list, "multistep: iterations where the lr is multiplied by gamma", nargs="+",
                                   metavar="N")
    gamma: float = option(0.5, "multistep: lr factor at each milestone")
    warmup_iters: int = option(0, "iterations of linear lr warm-up")
    min_lr: float = option(1e-7, "cosine: the lr at the last iteration")
    grad_clip: float | None = option(None, "clip the global gradient norm to this (steadies a run that diverged)",
                                     metavar="NORM")
    ema_decay: float | None = option(0.999, "EMA decay of the weights (e.g. 0.999)")
    precision: str = option("fp32", "fp32, bf16 (autocast) or auto: bf16 wherever the device computes it natively "
                                    "(CUDA with bf16, AVX-512 BF16 / AMX CPUs)", choices=TRAIN_PRECISIONS)
    seed: int = option(0, "seed of the weights and the data sampling")
    workers: int = option(2, "data loader worker processes")
    log_every: int = option(50, "log loss/lr/speed every N iterations", metavar="N")
    val_every: int = option(5000, "validate every N iterations", metavar="N")
    ckpt_every: int = option(1000, "checkpoint every N iterations ...", metavar="N")
    ckpt_minutes: float = option(5.0, "... or every M minutes, whichever comes first", metavar="M")
    train_only: list[str] = option(list, "train only the parameters whose names match one of these regexes "
                                   "(e.g. '^tail\\.' for a new upsampling tail on a trained body); the rest stay "
                                   "frozen, BatchNorm statistics of frozen layers included", nargs="+",
                                   metavar="REGEX")
    init_weights: str | None = option(None, "start from these weights (keys of matching shape; e.g. a x4 body for "
                                            "x2): a file, or weights by name (elan-light-x4; see `litesr models`)",
                                      metavar="PATH|NAME")
    out: str | None = option(None, "run folder (default runs/<arch>_x<scale>)", metavar="DIR")
    device: str = option("auto", "cpu, cuda, cuda:N or auto")

    @classmethod
    def from_sources(cls, yaml_path: str | os.PathLike | None = None, **overrides: Any) -> "TrainConfig":
        """A recipe file's values (if any), then every override that is not ``None``; validated."""
        values: dict[str, Any] = {}
        if yaml_path:
            values.update(read_recipe(yaml_path))
        values = upgrade_legacy_keys(values)
        values.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
        if isinstance(values.get("train_data"), str):
            values["train_data"] = [values["train_data"]]
        if isinstance(values.get("val_sets"), str):
            values["val_sets"] = [s for s in values["val_sets"].split(",") if s]
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        config = cls(**values)
        if config.out is None:
            config.out = f"runs/{config.arch}_x{config.scale}"
        config.validate()
        return config

    def validate(self) -> None:
        import inspect

        from .models.registry import ARCHITECTURES, resolve_variant

        try:
            variant = resolve_variant(self.arch)
        except LitesrError as exc:
            raise ConfigError(str(exc)) from None
        if ARCHITECTURES[variant.arch].inference_only:
            raise ConfigError(f"cannot train {self.arch}: {ARCHITECTURES[variant.arch].inference_only}")
        accepted = set(inspect.signature(ARCHITECTURES[variant.arch].build).parameters) - {"scale", "self"}
        wrong = sorted(set(self.model_config) - accepted)
        if wrong:
            raise ConfigError(f"model_config key(s) {', '.join(wrong)} do not apply to {variant.arch} "
                              f"(valid: {', '.join(sorted(accepted))})")
        checks = [
            (self.scale in SCALES, f"scale must be one of {', '.join(map(str, SCALES))}, not {self.scale}"),
            (bool(self.train_data), "no training data: set train_data in the config or pass --train-data DIR"),
            (bool(self.hr_scales) and all(0 < f <= 1 for f in self.hr_scales),
             f"hr_scales must be factors in (0, 1], not {self.hr_scales}"),
            (not self.train_lr_data or list(self.hr_scales) == [1.0],
             "hr_scales applies to HR folders (LR made by bicubic), not to paired train_lr_data"),
            (self.iters > 0, f"iters must be positive, not {self.iters}"),
            (self.batch_size is None or self.batch_size > 0, f"batch_size must be positive, not {self.batch_size}"),
            (self.patch_size is None or self.patch_size > 0 and self.patch_size % self.scale == 0,
             f"patch_size (HR) must be a positive multiple of the scale {self.scale}, not {self.patch_size}"),
            (self.lr > 0, f"lr must be positive, not {self.lr}"),
            (self.schedule in ("multistep", "cosine"), f"schedule must be multistep or cosine, not {self.schedule!r}"),
            (self.precision in TRAIN_PRECISIONS,
             f"precision must be one of {', '.join(TRAIN_PRECISIONS)}, not {self.precision!r}"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, f"ema_decay must be in (0, 1), not {self.ema_decay}"),
            (self.workers >= 0, "workers must be >= 0"),
            (all(_compiles(r) for r in self.train_only), f"train_only holds a pattern that is not a valid regex: "
                                                          f"{[r for r in self.train_only if not _compiles(r)]}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def fill_device_defaults(self, device_type: str) -> list[str]:
        """Set the batch and patch left unset to :data:`DEVICE_DEFAULTS` for ``device_type``; returns what was set."""
        batch, patch = DEVICE_DEFAULTS.get(device_type, DEVICE_DEFAULTS["cpu"])
        chosen = []
        if self.batch_size is None:
            self.batch_size = batch
            chosen.append("batch")
        if self.patch_size is None:
            self.patch_size = patch - patch % self.scale
            chosen.append("patch")
        return chosen

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def _compiles(pattern: str) -> bool:
    import re

    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def upgrade_legacy_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Config values as this version names them: ``amp: off|bf16|auto`` (run folders and recipes written before
    ``precision`` was the one word) becomes ``precision: fp32|bf16|auto``."""
    if "amp" not in values:
        return values
    values = dict(values)
    amp = values.pop("amp")
    values.setdefault("precision", LEGACY_AMP.get(amp, amp))
    return values


def read_recipe(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The keys of a recipe file (a path, or the name of a packaged recipe), with ``extends:`` resolved: the named
    recipe's values first, then this file's."""
    import yaml

    path = _find_recipe(Path(path), _seen[-1].parent if _seen else None)
    if path in _seen:
        raise ConfigError(f"recipes extend each other in a circle: {' -> '.join(p.name for p in (*_seen, path))}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, not {type(data).__name__}")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: extends must name one recipe, not {base!r}")
    return {**read_recipe(base, (*_seen, path)), **data}


def _find_recipe(path: Path, beside: Path | None) -> Path:
    """A file as given, else beside the recipe that extends it, else a packaged recipe of that name."""
    for candidate in (path, beside / path if beside and not path.is_absolute() else None,
                      CONFIG_DIR / f"{path.stem}.yaml" if path.parent == Path(".") else None):
        if candidate is not None and candidate.is_file():
            return candidate.resolve()
    raise NotFoundError(f"config file not found: {path} (packaged configs: {', '.join(packaged_configs())})")


def packaged_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
