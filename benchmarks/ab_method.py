"""A/B of one method of a model class: its source at a commit against the working tree's, in one process.

The method's old source is compiled in the model module's namespace and swapped in and out of the class in
alternating rounds (median of ``--runs``), on a picture-like input, in inference mode; the relative difference of the
outputs is printed too. For changes confined to one method (a forward's layout, a fast path):

    python benchmarks/ab_method.py imdn IMDN forward imdn-x4-official --base HEAD~1 --size 128
    python benchmarks/ab_method.py pan PAN _upsample pan-x4-official --base 7242a74 --size 256 --runs 7
"""

from __future__ import annotations

import argparse
import ast
import importlib
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def old_method(module_name: str, class_name: str, method: str, base: str):
    """The function ``class_name.method`` of ``litesr/models/<module_name>.py`` at commit ``base``."""
    module = importlib.import_module(f"litesr.models.{module_name}")
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{base}:src/litesr/models/{module_name}.py"],
                            capture_output=True, text=True, check=True).stdout
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == class_name)
    fn = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method)
    namespace = dict(vars(module))
    exec(compile(ast.Module([fn], []), f"{base}:{module_name}.py", "exec"), namespace)
    return getattr(module, class_name), namespace[method]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("module", help="model module under litesr.models (pan)")
    ap.add_argument("cls", help="class in it (PAN)")
    ap.add_argument("method", help="method of the class (forward)")
    ap.add_argument("weights", help="weights name or file to time with")
    ap.add_argument("--base", default="HEAD~1", help="commit of the old method (default HEAD~1)")
    ap.add_argument("--size", type=int, default=128, help="LR side")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--nchw", action="store_true",
                    help="feed a contiguous NCHW tensor (as PyTorch code builds one) instead of the channels-last "
                         "strides litesr's upscale and eval give a picture")
    args = ap.parse_args()

    import litesr
    from floor import photo

    cls, old = old_method(args.module, args.cls, args.method, args.base)
    new = getattr(cls, args.method)
    model = litesr.load_model(args.weights).eval()
    x = torch.from_numpy(photo(ROOT / "examples" / "sample.png", args.size)).permute(2, 0, 1)[None].float() / 255
    x = x.contiguous() if args.nchw else x

    def run(fn):
        setattr(cls, args.method, fn)
        try:
            with torch.inference_mode():
                return model(x)
        finally:
            setattr(cls, args.method, new)

    a, b = run(old), run(new)
    times: dict[str, list[float]] = {"base": [], "tree": []}
    for _ in range(args.runs):
        for label, fn in (("base", old), ("tree", new)):
            start = time.perf_counter()
            run(fn)
            times[label].append(time.perf_counter() - start)
    base, tree = statistics.median(times["base"]), statistics.median(times["tree"])
    print(f"{args.cls}.{args.method} at {args.base} {base:.3f} s, working tree {tree:.3f} s: {base / tree:.2f}x; "
          f"outputs differ by {((a - b).abs().max() / a.abs().max()).item():.1e} relative "
          f"(LR {args.size}², {'NCHW' if args.nchw else 'picture'} input, {torch.get_num_threads()} threads, "
          f"median of {args.runs})")


if __name__ == "__main__":
    main()
