"""Where and how a model computes: the device, the precision, and the process settings around a forward.

(What computes it, PyTorch or OpenVINO, is the *runtime* of ``--runtime``: ``litesr.pretrained.apply_runtime``.)
The lowest layer above the models: training, evaluation, tiling, efficiency measurement and the command line all
pick their device and precision here. One word for both training and inference: ``precision`` is ``fp32``,
``bf16``, ``fp16`` or ``auto``.
"""

from __future__ import annotations

import contextlib
import os
from typing import ContextManager, Iterator

import torch
from torch import nn

from .errors import UsageError

#: Concrete compute precisions. fp32 matches the official code (``eval``'s default); bf16/fp16 run the model under
#: autocast (bf16: 1.4-1.5x faster than fp32 for ELAN-light on an AVX-512 BF16 CPU, benchmarks/floor.py; fp16 is for
#: GPUs).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: What ``upscale`` runs in unless told otherwise (see :func:`resolve_precision`); ``eval`` keeps fp32.
DEFAULT_PRECISION = "auto"

#: The values ``--precision`` accepts: ``auto`` and the concrete precisions.
PRECISION_CHOICES = ("auto", *PRECISIONS)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: CUDA GPUs with bf16, CPUs with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        from .compat import cpu_has_native_bf16

        return cpu_has_native_bf16()
    return False


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse, in one line, a precision litesr does not know, or fp16 on a CPU (emulated there)."""
    if precision == "auto":
        return
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {precision!r}")
    if precision == "fp16" and torch.device(device).type == "cpu":
        raise UsageError("precision fp16 is for GPUs: a CPU emulates it, hundreds of times slower than fp32; "
                         "use fp32, or bf16 (auto picks it where the CPU computes bf16 natively)")


def resolve_precision(model: nn.Module, device: torch.device, precision: str) -> str:
    """The concrete precision (a key of ``PRECISIONS``) that ``precision`` means for ``model`` on ``device``.

    ``auto``: bf16 where the hardware runs it natively and it pays for this architecture (CUDA: every
    architecture; CPU: those registered with ``cpu_bf16``, decided by measurement), else fp32. Never fp16:
    Swin-type models overflow in fp16 (NaN/black output), so fp16 is only ever used when asked for.
    """
    check_precision(precision, device)
    if precision != "auto":
        return precision
    from .models.registry import ARCHITECTURES

    device = torch.device(device)
    if not native_bf16(device):
        return "fp32"
    if device.type == "cuda":
        return "bf16"
    arch = ARCHITECTURES.get(getattr(model, "arch_name", ""))
    return "bf16" if arch is not None and arch.cpu_bf16 else "fp32"


def precision_context(device: torch.device, precision: str) -> ContextManager:
    """Autocast to ``precision`` on ``device`` (a no-op for fp32); the model's output is cast back to float32."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)



@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Float32 as the reference numbers were computed: on CUDA, cuDNN and matmuls would otherwise run in TF32
    (10-bit mantissa)."""
    saved = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved[0]
        torch.set_float32_matmul_precision(saved[1])


def self_ensemble_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Geometric self-ensemble (EDSR ``forward_x8``): mean of the outputs for the 8 flips/transpositions of ``x``,
    each mapped back to the original orientation."""
    outputs = []
    for transpose in (False, True):
        for flip_h in (False, True):
            for flip_v in (False, True):
                dims = [d for d, on in ((-1, flip_h), (-2, flip_v)) if on]
                t = x.flip(dims) if dims else x
                t = t.transpose(-2, -1) if transpose else t
                y = model(t).float()
                y = y.transpose(-2, -1) if transpose else y
                outputs.append(y.flip(dims) if dims else y)
    return torch.stack(outputs).mean(dim=0)


def reuse_freed_memory() -> bool:
    """Ask glibc to keep freed large blocks for reuse instead of returning them to the OS (``mallopt``).

    A forward allocates and frees many tensors of several MiB; by default glibc serves each from a fresh
    ``mmap`` and unmaps it when freed, so every one is page-faulted in again. Keeping them (mmap threshold 1 GiB,
    trim threshold 2 GiB) made the shipped ELAN-light x4 forward at LR 128² 1.18-1.35x faster on a 2-core EPYC
    (fp32 and bf16; ``benchmarks/malloc_reuse.py``), at the cost of a resident set that stays at its peak. Process
    wide, so only the command line calls it (``litesr upscale``/``eval``). Returns whether it applied (glibc only).
    """
    import ctypes
    import ctypes.util
    import sys

    global _libc
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        applied = bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31))
        libc.malloc_trim  # noqa: B018 (glibc has it where it has mallopt; checked here, not at the first release)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _libc = libc if applied else _libc
    return applied


#: glibc, once :func:`reuse_freed_memory` has applied in this process (None before, and where it cannot apply)
_libc = None


#: :func:`release_freed_memory` leaves a resident set below this alone: handing blocks back costs page faults when
#: they are needed again (a SPAN x4 of a 2048×1536 LR picture 4 % slower with a release at each larger tile).
RELEASE_ABOVE = 1 << 30


def release_freed_memory(above: int = RELEASE_ABOVE) -> bool:
    """Hand the freed blocks kept by :func:`reuse_freed_memory` back to the OS (glibc's ``malloc_trim``) when the
    resident set is above ``above`` bytes; nothing where they are not kept. Returns whether it released.

    Kept blocks serve the next forward of the same shape, but seldom fit a larger one: the heap then grows by what
    the new shape's tensors do not find free, and each change of tile shape grows it again. The tiler calls this
    before a tile larger than the last. A HiT-SRF x4 of a 4000×1024 LR picture in tiles of 256 peaked at 1949 MiB
    resident without, 1466 MiB with (1289 MiB releasing at every change of shape, but SPAN 6 % slower).
    """
    if _libc is None or resident_bytes() <= above:
        return False
    _libc.malloc_trim(0)
    return True


def resident_bytes() -> int:
    """This process's resident set in bytes (Linux; 0 where ``/proc`` does not say)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def freed_memory_reused() -> bool:
    """Whether :func:`reuse_freed_memory` applied in this process."""
    return _libc is not None


def pick_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None) → cuda, then mps, then cpu; otherwise the named device, checked to exist here."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown device {str(name)!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {str(name)!r} requested but CUDA is not available here; use cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {str(name)!r} requested but this machine has {torch.cuda.device_count()} "
                             "CUDA device(s); use cuda:0 or auto")
    elif device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UsageError(f"device {str(name)!r} requested but MPS is not available here; use cpu (or auto)")
    elif device.type != "cpu":
        raise UsageError(f"device {str(name)!r} is not supported: use cpu, cuda, cuda:N, mps or auto")
    return device
