"""Efficiency of SR models: parameters, FLOPs/MACs, latency and peak memory.

The conventions are those used to measure the official code (its counts are pinned in ``tests/test_efficiency.py``),
so the numbers compare one to one:

- **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over one forward on the meta device (shapes only, no
  compute, any size): convolutions and matmuls, attention included (SDPA counts as its two matmuls); norms,
  softmax, activations and adds are not counted. MACs = FLOPs / 2. Papers quote "Multi-Adds" for a 1280×720
  output, so the default input is the ×s LR of that (:func:`hd_input_size`).
- **Layer MACs**: Conv2d and Linear layers only, from forward hooks — what module-hook counters (thop, ptflops)
  report, which leaves the attention matmuls out.
- **Latency**: warm-up forwards, then the median of timed forwards (CUDA synchronised), ``inference_mode``.
- **Peak memory**: CPU: the process's resident-set high-water mark during the first forward minus its resident
  set just before it, in a fresh process (Linux: the mark is reset through ``/proc/self/clear_refs`` first;
  elsewhere ``ru_maxrss`` growth, which cannot see below the peak of model construction); CUDA: growth of
  ``max_memory_allocated``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

__all__ = ["BenchSpec", "cpu_name", "count_parameters", "count_flops", "count_layer_macs", "hd_input_size", "measure",
           "measure_isolated", "profile_forward"]


def hd_input_size(scale: int, height: int = 720, width: int = 1280) -> tuple[int, int]:
    """LR size whose ×``scale`` output is (about) ``height``×``width`` — the papers' Multi-Adds convention."""
    return round(height / scale), round(width / scale)


def cpu_name(details: bool = False) -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what :mod:`platform` says); with ``details``, its core count
    and the vector extensions that decide bf16 speed as well."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"
    if not details:
        return name
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in info]
    return f"{name} ({os.cpu_count()} cores; {', '.join(extras) or 'no AVX-512'})"


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (fixed kernels such as ELAN's one-hot shifts and mean shifts are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _meta_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("meta").eval()


def count_flops(model: nn.Module, lr_size: tuple[int, int]) -> dict:
    """``{"flops", "macs", "by_op": {op: flops}}`` of one forward on a 1×3×H×W input (meta device)."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = _meta_copy(model)
    x = torch.empty(1, 3, *lr_size, device="meta")
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        meta(x)
    by_op = {str(op).split(".")[-1]: int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    total = int(counter.get_total_flops())
    return {"flops": total, "macs": total // 2, "by_op": by_op}


def count_layer_macs(model: nn.Module, lr_size: tuple[int, int]) -> dict:
    """``{"macs", "conv", "linear"}``: multiply-accumulates of Conv2d and Linear layers only (hook accounting)."""
    meta = _meta_copy(model)
    totals = {"conv": 0, "linear": 0}

    def conv_hook(module: nn.Conv2d, inputs, output) -> None:
        kh, kw = module.kernel_size
        totals["conv"] += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs, output) -> None:
        totals["linear"] += output.numel() * module.in_features

    handles = [m.register_forward_hook(conv_hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(linear_hook) for m in meta.modules() if isinstance(m, nn.Linear)]
    # in training mode, as a hook counter sees the official forward: litesr's inference path folds ELAN's BatchNorm
    # into its projection and runs it as F.conv2d, which no Conv2d hook sees
    meta.train()
    try:
        with torch.no_grad():
            meta(torch.empty(1, 3, *lr_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return {"macs": totals["conv"] + totals["linear"], **totals}


# --------------------------------------------------------------------------------------------- timing, memory


@dataclass
class BenchSpec:
    """One latency/memory measurement: a model (variant name, or checkpoint path), an input size, a setting."""

    model: str
    scale: int = 4
    height: int = 128
    width: int = 128
    device: str = "cpu"
    precision: str = "fp32"
    runs: int = 5
    warmup: int = 2
    threads: int = 0  # 0: torch's default
    attributes: dict = field(default_factory=dict)  # set on the model, e.g. {"attention": "naive"} for ESRT
    memory_limit_gib: float = 0.0  # CPU: cap the address space this much above the start (0: none)

    def build(self) -> nn.Module:
        from .checkpoint import create_model, load_model

        if os.path.exists(self.model):
            model = load_model(self.model, scale=self.scale)
        else:
            torch.manual_seed(0)  # speed and memory do not depend on the weights
            model = create_model(self.model, self.scale)
        for name, value in self.attributes.items():
            if not hasattr(model, name):
                raise AttributeError(f"{type(model).__name__} has no attribute {name!r} to set")
            setattr(model, name, value)
        return model


def measure(spec: BenchSpec) -> dict:
    """Latency (median, seconds) and peak memory growth (bytes) of ``spec``, in this process.

    The memory figure is only meaningful in a fresh process on CPU: use :func:`measure_isolated`.
    """
    from .device import pick_device, precision_context

    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = pick_device(spec.device)
    model = spec.build().eval().to(device)
    x = torch.rand(1, 3, spec.height, spec.width, device=device)
    cuda = device.type == "cuda"
    if spec.memory_limit_gib and not cuda:  # an underestimated run then fails cleanly instead of swapping
        import resource

        limit = _status_bytes("VmSize") + int(spec.memory_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def forward() -> None:
        with torch.inference_mode(), precision_context(device, spec.precision):
            model(x)

    return {**profile_forward(forward, spec.runs, spec.warmup, device), "threads": torch.get_num_threads(),
            "device": str(device)}


def profile_forward(forward: Callable[[], object], runs: int, warmup: int = 1,
                    device: torch.device = torch.device("cpu")) -> dict:
    """Peak memory growth over the first call of ``forward`` (which is also the first warm-up), then the median
    latency of ``runs`` calls after ``warmup`` in all (``warmup`` 0: the first call is the first timed run).
    Memory on CPU is meaningful in a fresh process only."""
    cuda = device.type == "cuda"

    def call() -> None:
        forward()
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before, peak_of = _start_rss_peak()
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) if cuda else peak_of()) - before
    for _ in range(max(0, warmup - 1)):
        call()
    times = [first] if warmup == 0 else []  # no warm-up: the first call is one of the timed runs (a cold start)
    for _ in range(runs - len(times)):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return {"latency": statistics.median(times) if times else first, "times": times, "first": first,
            "peak_bytes": peak}


def _status_bytes(key: str) -> int:
    """A size field (``VmRSS``, ``VmHWM``, ``VmSize``) of /proc/self/status, in bytes (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def _max_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _start_rss_peak():
    """(resident bytes now, function giving the high-water mark since): reset on Linux, ``ru_maxrss`` otherwise."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        return _status_bytes("VmRSS"), lambda: _status_bytes("VmHWM")
    except (OSError, StopIteration):
        return _max_rss_bytes(), _max_rss_bytes


def measure_isolated(spec: BenchSpec, timeout: float | None = None) -> dict:
    """:func:`measure` in a fresh Python process; ``{"error": ...}`` if it fails (e.g. out of memory)."""
    env = dict(os.environ)
    if spec.threads:
        env.update(OMP_NUM_THREADS=str(spec.threads), MKL_NUM_THREADS=str(spec.threads))
    # OpenMP's wait policy stays the caller's: PASSIVE (workers sleep between ops) is steadier on a busy machine
    # but made ELAN-light's bf16 forward 1.27x slower than the default policy `litesr upscale` runs with
    cmd = [sys.executable, "-m", "litesr.efficiency", json.dumps(asdict(spec))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"error": tail[:300]}
    return json.loads(lines[-1])


if __name__ == "__main__":  # the worker of measure_isolated
    print(json.dumps(measure(BenchSpec(**json.loads(sys.argv[1])))), flush=True)
