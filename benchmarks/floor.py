"""How far each model's forward is from this machine's floor, per runtime and precision, all in one run.

1. The machine's GEMM peak: median GFLOP/s of a square ``--gemm`` matmul in fp32 and in bf16.
2. Each model's FLOPs for the input (every convolution and matmul, attention included; ``litesr.efficiency``).
   The floor of a precision is FLOPs ÷ that precision's GEMM peak: no forward can beat it by much.
3. Every path timed interleaved (one forward of each path per round, median over ``--runs`` rounds), so the
   ratios hold even on a busy machine: eager fp32, eager bf16 (autocast), the official op sequence in fp32
   (ELAN, SwinIR, GRFormer: ``benchmarks/elan_speed.py``'s and ``benchmarks/swin_official.py``'s re-expressions
   of the official forward, same weights; ESRT: its official EMHA loop inside litesr's forward) and, where
   available, onnxruntime on an exported graph, OpenVINO (compiled for the input's shape, fp32 and bf16) and
   ``torch.compile``.
4. ``upscale``: ``litesr.tiling.upscale_array`` on a square uint8 image with ``litesr upscale``'s defaults
   (default tile/overlap, ``--precision auto``), the end-to-end number a user sees, ÷ the floor of the precision it
   ran in;
   timed first for each model, as in a ``litesr upscale`` process that runs nothing else before it.

    python benchmarks/floor.py                                  # shipped ELAN-light x4, LR 128 and 256
    python benchmarks/floor.py --arch swinir-light esrt --sizes 128 --runtimes eager onnx compile

Pause other CPU work for the final figures; the ratios (time ÷ floor, official ÷ litesr) are what to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if "--omp-passive" in sys.argv:  # before torch starts its OpenMP pool
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


def gemm_peak(dtype: torch.dtype, n: int, runs: int = 7) -> float:
    """Median FLOP/s of an n×n×n matmul in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times)


def load(arch: str, scale: int):
    """The shipped weights where litesr ships them, else random weights with realistic BN statistics."""
    import litesr
    from litesr.models.registry import resolve_variant
    from litesr.pretrained import shipped_weights

    name = resolve_variant(arch).name
    path = shipped_weights(name, scale)
    if path is not None:
        return litesr.load_model(str(path), arch=name).eval(), "shipped"
    torch.manual_seed(0)
    model = litesr.create_model(name, scale).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(50.0)
    return model, "random"


def official_path(model):
    """The official op sequence for the architectures a benchmark re-expresses (ELAN: ``elan_speed.py``; SwinIR and
    GRFormer: ``swin_official.py``), else the official attention arithmetic inside litesr's forward (ESRT with the
    official EMHA loop); None for CNNs."""
    if model.arch_name == "elan":
        from elan_speed import official_forward

        return lambda x: official_forward(model, x)
    if model.arch_name in ("swinir", "grformer"):
        from swin_official import official_forward

        return lambda x: official_forward(model, x)
    if model.arch_name == "esrt":  # the official EMHA loop, verbatim (split_attention mode "naive")
        import copy

        naive = copy.deepcopy(model)
        for m in naive.modules():
            if hasattr(m, "mode"):
                m.mode = "naive"
        return naive
    return None


def model_flops(model, size: int) -> int:
    """FLOPs of the model's computation: of the official op sequence where one is re-expressed (litesr's own path
    may compute more, e.g. recomputing a shared attention map, to run faster), else of litesr's forward."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    from litesr.efficiency import count_flops

    meta = copy.deepcopy(model).to("meta").eval()
    official = official_path(meta)
    if official is None:
        return count_flops(model, (size, size))["flops"]
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        official(torch.empty(1, 3, size, size, device="meta"))
    return int(counter.get_total_flops())


def paths_for(model, x: torch.Tensor, runtimes: list[str], tmp: Path) -> dict:
    """name → (callable, precision of its floor)."""
    from litesr.device import precision_context

    cpu = torch.device("cpu")
    paths = {}

    def eager(precision):
        def run():
            with torch.inference_mode(), precision_context(cpu, precision):
                return model(x).float()
        return run

    if "eager" in runtimes:
        paths["eager fp32"] = (eager("fp32"), "fp32")
        paths["eager bf16"] = (eager("bf16"), "bf16")
    official = official_path(model)
    if official is not None and "official" in runtimes:
        def run_official():
            with torch.inference_mode():
                return official(x)
        paths["official fp32"] = (run_official, "fp32")
    if "onnx" in runtimes:
        try:
            from litesr.onnx import OnnxRunner, export_onnx
        except ImportError as exc:  # onnx/onnxruntime not installed: the row is skipped, with the reason
            print(f"# onnx skipped: {exc}")
        else:
            path = tmp / f"{model.arch_name}_x{model.scale}.onnx"
            if not path.exists():
                export_onnx(model, path)
            ort = OnnxRunner(path)
            paths["onnxruntime fp32"] = (lambda: ort(x), "fp32")
    if "openvino" in runtimes:
        try:
            import openvino  # noqa: F401
            from litesr.openvino import OpenVinoRunner
            from litesr.device import native_bf16
        except ImportError as exc:  # the extra is not installed: the rows are skipped, with the reason
            print(f"# openvino skipped: {exc}")
        else:
            for precision in ("fp32", "bf16") if native_bf16(cpu) else ("fp32",):
                t = time.perf_counter()
                ov = OpenVinoRunner(model, precision=precision)  # converted once into litesr's cache
                ov.compiled(tuple(x.shape))
                print(f"# openvino {precision}: convert (or load from the cache) and compile for "
                      f"{tuple(x.shape)}: {time.perf_counter() - t:.1f} s")
                paths[f"openvino {precision}"] = ((lambda ov=ov: ov(x)), precision)
    if "compile" in runtimes:
        compiled = torch.compile(model, dynamic=False)
        for precision in ("fp32", "bf16"):
            def run(precision=precision):
                with torch.inference_mode(), precision_context(cpu, precision):
                    return compiled(x).float()
            t = time.perf_counter()
            run()
            print(f"# torch.compile {precision}: first call (compiling) {time.perf_counter() - t:.0f} s")
            paths[f"compile {precision}"] = (run, precision)
    return paths


def interleaved(paths: dict, runs: int) -> dict[str, float]:
    times = {name: [] for name in paths}
    for fn, _ in paths.values():
        fn()  # warm-up
    for _ in range(runs):
        for name, (fn, _) in paths.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["elan-light"])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--gemm", type=int, default=2048, help="side of the square matmul that sets the peak")
    ap.add_argument("--runtimes", nargs="+", default=["eager", "official", "onnx", "openvino"],
                    choices=("eager", "official", "onnx", "openvino", "compile"))
    ap.add_argument("--reuse-freed-memory", action="store_true",
                    help="apply litesr.device.reuse_freed_memory() first, as `litesr upscale`/`eval` do (all rows)")
    ap.add_argument("--omp-passive", action="store_true",
                    help="OMP_WAIT_POLICY=PASSIVE (OpenMP workers sleep between ops): steadier on a busy machine, "
                         "but eager bf16 ran 1.27x slower with it (0.59 against 0.465 s at LR 256²) than with the "
                         "default policy `litesr upscale` runs with")
    ap.add_argument("--onnx-dir", type=Path, help="keep exported graphs here and reuse them (export takes ~30 s)")
    ap.add_argument("--image", type=Path, default=Path(__file__).resolve().parents[1] / "examples" / "sample.png",
                    help="picture whose content the inputs are cut from (mirrored to size; "
                         "default examples/sample.png)")
    ap.add_argument("--upscale", type=int, nargs="*", default=[256],
                    help="square image sizes for the end-to-end `upscale` row (default settings)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reuse_freed_memory:
        from litesr.device import reuse_freed_memory

        print(f"# reuse_freed_memory applied: {reuse_freed_memory()} (every row, the official one included)")

    from litesr.efficiency import cpu_name

    peak = {"fp32": gemm_peak(torch.float32, args.gemm), "bf16": gemm_peak(torch.bfloat16, args.gemm)}
    print(f"CPU: {cpu_name(details=True)}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"GEMM {args.gemm}²: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s "
          f"(bf16/fp32 {peak['bf16'] / peak['fp32']:.2f}x)")
    head = (f"{'model':>16} {'LR':>5} {'GFLOP':>6} {'path':>18} {'seconds':>8} {'floor s':>8} {'÷floor':>7} "
            f"{'official÷':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.onnx_dir or tmp
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for arch in args.arch:
            model, origin = load(arch, args.scale)
            name = f"{arch} x{args.scale}"
            print(f"\n{name} ({origin} weights), median of {args.runs} interleaved rounds")
            print(head)
            # upscale first, as in a `litesr upscale` process that runs nothing else before it (after the fp32 and
            # official paths it measured 0.51-0.53 s against 0.50 s fresh: within this VM's ±8 % run-to-run noise)
            for size in args.upscale:
                upscale_row(model, name, size, args.runs, peak, args.runtimes, args.image)
            for size in args.sizes:
                flops = model_flops(model, size)
                x = torch.from_numpy(photo(args.image, size)).permute(2, 0, 1)[None].float() / 255
                paths = paths_for(model, x, args.runtimes, Path(tmp))
                times = interleaved(paths, args.runs)
                ref = times.get("official fp32")
                for path, seconds in times.items():
                    floor = flops / peak[paths[path][1]]
                    rel = f"{ref / seconds:>8.2f}x" if ref else f"{'':>9}"
                    print(f"{name:>16} {size:>5} {flops / 1e9:>6.1f} {path:>18} {seconds:>8.3f} {floor:>8.3f} "
                          f"{seconds / floor:>6.2f}x {rel}")


def photo(path: Path, size: int, width: int | None = None):
    """A size×size (or size×width) uint8 RGB crop of the picture at ``path``, mirrored as often as needed to fill it.

    Timings use real picture content, not noise: the eager bf16 forward of ELAN-light at LR 256² took 0.54 s on a
    photo and 0.65 s on uniform noise (the softmax of the attention maps runs at a speed that depends on them).
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    width = size if width is None else width
    while rgb.shape[0] < size or rgb.shape[1] < width:
        rgb = np.concatenate([rgb, rgb[::-1]], 0) if rgb.shape[0] < size else rgb
        rgb = np.concatenate([rgb, rgb[:, ::-1]], 1) if rgb.shape[1] < width else rgb
    return np.ascontiguousarray(rgb[:size, :width])


def upscale_row(model, name: str, size: int, runs: int, peak: dict, runtimes: list[str], image_path: Path) -> None:
    """`litesr upscale` with its defaults on a size×size image: seconds ÷ the floor of the precision it used; and
    with ``--runtime openvino`` (timed once compiled: the first image of a size compiles, 0.5-2 s)."""
    from litesr import device, pretrained, tiling
    from litesr.efficiency import profile_forward
    from litesr.runner import as_runner

    image = photo(image_path, size)
    cpu = torch.device("cpu")
    precision = device.resolve_precision(model, cpu, device.DEFAULT_PRECISION)
    plan = len(tiling.plan_for(model, size, size))
    flops = model_flops(model, size)
    rows = [(pretrained.DEFAULT_RUNTIME, model)]
    if "openvino" in runtimes and pretrained.DEFAULT_RUNTIME != "openvino":
        try:
            rows.append(("openvino", pretrained.apply_runtime(model, "openvino", cpu, device.DEFAULT_PRECISION)))
        except ImportError as exc:
            print(f"# upscale with openvino skipped: {exc}")
    for label, computed in rows:
        runner = as_runner(computed, cpu, device.DEFAULT_PRECISION)  # as `litesr upscale` builds it, once

        def run(runner=runner):
            return tiling.upscale_array(runner, image)

        seconds = profile_forward(run, runs, warmup=1)["latency"]
        floor = flops / peak["bf16" if precision == "bf16" else "fp32"]
        path = f"upscale {label} ({precision})"
        print(f"{name:>16} {size:>5} {flops / 1e9:>6.1f} {path:>18} {seconds:>8.3f} {floor:>8.3f} "
              f"{seconds / floor:>6.2f}x   ({plan} tile(s), default settings)")


if __name__ == "__main__":
    main()
