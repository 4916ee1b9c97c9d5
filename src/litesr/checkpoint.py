"""Reading, detecting, strictly loading and saving model weights.

Safe by construction: ``.safetensors`` holds tensors only, and legacy ``.pth``/``.pt`` files are read with
``torch.load(weights_only=True)`` so no pickled code runs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .errors import NotFoundError, UsageError
from .models.layouts import KeyLayout, find_layout
from .models.registry import (
    ARCHITECTURES,
    SCALES,
    Architecture,
    CheckpointError,
    StateDict,
    known_names,
    resolve_architecture,
    resolve_variant,
)

WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net", "network", "generator")
METADATA_ARCH = "litesr.arch"
METADATA_CONFIG = "litesr.config"
#: File names ``save_model`` writes (the format follows the suffix).
SAVE_SUFFIXES = (".safetensors", ".pth", ".pt")


def read_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return a flat ``{key: tensor}`` from a path or an in-memory (possibly wrapped) state dict."""
    if isinstance(source, Mapping):
        raw: Any = source
    elif not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a checkpoint path (str or os.PathLike) or a state dict (a mapping of "
                        f"names to tensors), got {type(source).__name__}")
    else:
        path = Path(source)
        if not path.exists():
            raise NotFoundError(f"weights file not found: {path}")
        if path.is_dir():
            raise CheckpointError(f"{path} is a directory; pass the weights file itself (.safetensors, .pth or .pt)")
        raw = _read_file(path)
    return _unwrap(raw)


def _read_file(path: Path) -> Any:
    if path.suffix.lower() == ".safetensors" or sniff_format(path) == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path} as safetensors ({exc}); is the file complete?") from exc
    import warnings

    try:
        with warnings.catch_warnings():  # torch's "Detected pickle protocol" notes are about its unpickler, not us
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types; all mean the same thing to a user
        raise CheckpointError(
            f"cannot read {path} as a PyTorch checkpoint ({_load_failure(exc)}). litesr loads .pth/.pt with "
            "weights_only=True, so no pickled code runs; re-save the weights as a plain state dict of tensors or "
            "as .safetensors."
        ) from exc


def _load_failure(exc: Exception) -> str:
    """What ``torch.load(weights_only=True)`` refused, in a few words, without torch's advice to load the file
    with ``weights_only=False`` (which would run any code the pickle holds: litesr never suggests it)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a pickled {found.group(1)} object, not only tensors"
    if "Weights only load failed" in text or "weights_only" in text:
        return "it holds pickled objects other than tensors"
    line = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def sniff_format(path: str | os.PathLike) -> str | None:
    """``"safetensors"`` or ``"torch"`` from a file's first bytes (whatever its suffix), else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return None
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save zip, or a legacy pickle
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"  # 8-byte little-endian header length, then the JSON header
    return None


def _unwrap(raw: Any) -> dict[str, torch.Tensor]:
    """Strip trainer wrappers (``params_ema``, ``state_dict``, ...) and DataParallel ``module.`` prefixes."""
    for _ in range(3):
        if isinstance(raw, Mapping) and not _is_flat_state_dict(raw):
            inner = next((raw[k] for k in WRAPPER_KEYS if k in raw and isinstance(raw[k], Mapping)), None)
            if inner is None:
                break
            raw = inner
    if not isinstance(raw, Mapping) or not _is_flat_state_dict(raw):
        raise CheckpointError(
            "the checkpoint is not a state dict of tensors"
            + (f" (top-level keys: {', '.join(map(str, list(raw)[:8]))})" if isinstance(raw, Mapping) else "")
        )
    state = {str(k): v for k, v in raw.items()}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _is_flat_state_dict(d: Mapping) -> bool:
    return len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())


def scale_hint(source: str | os.PathLike | Mapping[str, Any]) -> int | None:
    """The scale a file states outside its weights: litesr's safetensors metadata, else an ``x2``/``x3``/``x4``
    token in the file name (``PANx3_DF2K.pth``, ``IMDN_x4.pth``). Used only when the weights cannot tell."""
    if isinstance(source, Mapping):
        return None
    path = Path(source)
    if path.suffix.lower() == ".safetensors" or sniff_format(path) == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            config = json.loads((f.metadata() or {}).get(METADATA_CONFIG, "{}"))
        if config.get("scale") in SCALES:
            return int(config["scale"])
    found = re.findall(r"x([234])(?![0-9])", path.stem.lower())
    return int(found[-1]) if len(set(found)) == 1 else None


def to_official_keys(state: StateDict) -> tuple[dict, KeyLayout | None]:
    """``state`` under the official key names, and the foreign layout it was written in (``None``: official).

    See :mod:`litesr.models.layouts` for the layouts known (Fried Rice Lab's ELAN, ...); mapping is strict."""
    layout = find_layout(state)
    return (layout.to_official(state), layout) if layout is not None else (dict(state), None)


def detect_architecture(state: StateDict) -> tuple[Architecture, dict]:
    """Find the one registered architecture whose keys and shapes fit ``state``; return it with its config."""
    hits = []
    for arch in ARCHITECTURES.values():
        config = arch.detect(state)
        if config is not None:
            hits.append((arch, config))
    if not hits:
        sample = ", ".join(list(state)[:5])
        raise CheckpointError(
            f"unrecognised checkpoint (first keys: {sample}). Supported architectures: {', '.join(known_names())}. "
            "If it is one of these, name it (arch=... in Python, --arch on the command line); if it is wrapped, "
            "litesr unwraps "
            f"{'/'.join(WRAPPER_KEYS)} and 'module.' prefixes."
        )
    if len(hits) > 1:
        raise CheckpointError(f"ambiguous checkpoint: fits {', '.join(a.name for a, _ in hits)}; name the "
                              "architecture (arch=... in Python, --arch on the command line)")
    return hits[0]


def load_strict(model: nn.Module, state: StateDict, arch: Architecture) -> None:
    """Load ``state`` into ``model``: every key must exist and match in shape; computed buffers are optional."""
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if not (arch.ignores(k) and k not in expected)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {_listing(unexpected)}")
    for k in expected:
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape):
            problems.append(f"shape mismatch for {k}: checkpoint {tuple(state[k].shape)}, "
                            f"model {tuple(expected[k].shape)}")
    if problems:
        raise CheckpointError(f"checkpoint does not fit {arch.name}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _listing(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_model(
    source: str | os.PathLike | Mapping[str, Any],
    arch: str | None = None,
    scale: int | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build the model a checkpoint describes and load it strictly, in eval mode.

    ``source``: a path, a state dict, or the name of weights in litesr's table (``"elan-light-x4"``, see
    ``litesr models``; fetched and checked on first use if not shipped). ``arch`` names the family (any variant
    name of it works too); width, depth and scale come from the checkpoint itself. ``scale``, when given, must
    match the checkpoint's.
    """
    if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
        from .pretrained import weights_path

        source, entry = weights_path(source, scale)
        if entry is not None and scale is None:
            scale = entry.scale
    state, layout = to_official_keys(read_state_dict(source))
    try:
        return _build_and_load(source, state, arch, scale, device)
    except CheckpointError as exc:
        if layout is None:
            raise
        raise CheckpointError(f"{exc} (keys read as the {layout.name} layout of {layout.arch})") from None


def _build_and_load(source, state: dict, arch: str | None, scale: int | None, device) -> nn.Module:
    if arch is None:
        family, config = detect_architecture(state)
    else:
        family = resolve_architecture(arch)
        config = family.detect(state)
        if config is None:
            try:
                other = detect_architecture(state)[0].name
                hint = f"; it looks like {article(other)} {other} checkpoint (leave the architecture out to detect it)"
            except CheckpointError:
                hint = ""
            raise CheckpointError(f"checkpoint is not {article(family.name)} {family.name} checkpoint{hint}")
    if config["scale"] is None:  # the weights do not determine it (PAN x2 and x3 share every shape)
        scale = scale if scale is not None else scale_hint(source)
        if scale is None:
            raise CheckpointError(
                f"the scale of this {family.name} checkpoint cannot be read from its weights (several scales share "
                "its keys and shapes); pass it: load_model(..., scale=S) in Python, --scale S on the command line"
            )
        config = {**config, "scale": int(scale)}
    elif scale is not None and int(scale) != int(config["scale"]):
        raise CheckpointError(
            f"scale mismatch: the checkpoint is a x{config['scale']} {family.name} model, but x{scale} was requested"
        )
    model = family.build(**config)
    load_strict(model, state, family)
    return model.eval().to(device)


def article(word: str) -> str:
    """'a' or 'an' before a model name as it is read out: 'an imdn', 'an elan', 'an esrt', 'a pan'."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def model_label(model: nn.Module) -> str:
    """The name a model is known by: its variant (``elan-light``, not the 8.3M-parameter ``elan``) when its
    configuration is a published one, else ``<family> (custom)``."""
    from .models.registry import VARIANTS

    arch_name = getattr(model, "arch_name", "") or type(model).__name__
    config = getattr(model, "config", None) or {}
    fits = [v for v in VARIANTS.values() if v.arch == arch_name
            and all(_same(config.get(k), value) for k, value in v.config.items())]
    if not fits:
        return f"{arch_name} (custom)"
    return max(fits, key=lambda v: len(v.config)).name


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def create_model(arch: str, scale: int, **overrides: Any) -> nn.Module:
    """A freshly initialised model of a named variant (e.g. ``create_model('elan-light', 4)``)."""
    variant = resolve_variant(arch)
    if int(scale) not in variant.scales:
        raise UsageError(f"{variant.name} supports scales {variant.scales}, not {scale}")
    config = {**variant.config, **overrides}
    return ARCHITECTURES[variant.arch].build(scale=int(scale), **config)


def save_model(model: nn.Module, path: str | os.PathLike, metadata: Mapping[str, str] | None = None, *,
               official_buffers: bool = False, img_size: int = 64, pth_key: str | None = "params") -> Path:
    """Save weights under their official key names, atomically.

    ``.safetensors``: records arch/config as metadata, so ``load_model`` needs no
    hints. ``.pth``/``.pt``: a plain ``torch.save`` of ``{pth_key: state}`` (``params`` is what SwinIR's and
    BasicSR's test scripts read; ``None`` saves the bare state dict). ``official_buffers`` adds the computed
    buffers the official code keeps in its state dict (see :func:`official_state_dict`).
    """
    from .io import atomic_path

    if not isinstance(model, nn.Module):
        hint = ("; to save a state dict, load it into its model first: save_model(litesr.load_model(state), path)"
                if isinstance(model, Mapping) else "")
        raise TypeError(f"save_model: model must be a torch nn.Module, got {type(model).__name__}{hint}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save_model: path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix.lower() not in SAVE_SUFFIXES:
        raise UsageError(f"save_model: cannot tell the format of {path}: name it .safetensors (recommended), "
                         ".pth or .pt")
    state = official_state_dict(model, img_size) if official_buffers else model.state_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if path.suffix.lower() in (".pth", ".pt"):
        with atomic_path(path) as tmp:
            torch.save({pth_key: state} if pth_key else state, tmp)
        return path
    from safetensors.torch import save_file

    meta = dict(metadata or {})
    arch_name = getattr(model, "arch_name", None)
    if arch_name:
        meta.setdefault(METADATA_ARCH, arch_name)
    config = getattr(model, "config", None)
    if config is not None:
        meta.setdefault(METADATA_CONFIG, json.dumps(config, sort_keys=True))
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def official_state_dict(model: nn.Module, img_size: int = 64) -> dict[str, torch.Tensor]:
    """The weights plus the computed buffers that the official code keeps in its ``state_dict`` (SwinIR and
    GRFormer: relative position indices, ES-RPB coordinates, attention masks sized for the constructor's
    ``img_size``), so the official ``load_state_dict(strict=True)`` accepts the file. Same as ``state_dict()``
    for the other architectures."""
    state = dict(model.state_dict())
    arch = ARCHITECTURES.get(getattr(model, "arch_name", ""))
    if arch is not None and arch.official_buffers is not None:
        try:
            state.update(arch.official_buffers(model, img_size))
        except ValueError as exc:  # an img_size the official constructor could not take
            raise UsageError(str(exc)) from exc
    return state
