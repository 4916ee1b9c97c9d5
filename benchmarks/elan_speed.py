"""ELAN-light: litesr's forward vs the official forward re-expressed, same weights, same run.

The reference below is the official computation step by step (``models/elan_block.py`` @97ab3fa): the shift as a
depthwise conv with the fixed one-hot kernel, einops-style window rearranges in channel-first layout, BatchNorm
as a separate op, attention as explicit matmul/softmax/matmul. It reads the weights of a litesr model, so both
paths see identical parameters; the script checks that they agree, then times them and measures peak memory
growth (each measurement in a fresh process).

    python benchmarks/elan_speed.py --sizes 128 256 --runs 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
import torch.nn.functional as F


def official_forward(model, x: torch.Tensor) -> torch.Tensor:
    """The official ELAN forward (0..255 convention inside, litesr's [0, 1] outside), op for op."""
    h, w = x.shape[-2:]
    x = x * 255.0
    ph, pw = (-h) % 16, (-w) % 16
    x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    x = model.sub_mean(x)
    x = model.head(x)
    res = x
    for block in model.body:
        atns = None
        for j in range(len(block.modules_lfe)):
            lfe, gmsa = block.modules_lfe[f"lfe_{j}"], block.modules_gmsa[f"gmsa_{j}"]
            x = _official_lfe(lfe, x) + x
            y, atns = _official_gmsa(gmsa, x, atns)
            x = y + x
    x = model.tail(x + res)
    x = model.add_mean(x)
    return x[..., : h * model.scale, : w * model.scale] / 255.0


def _official_shift_conv(sc, x):
    y = F.conv2d(x, sc.shift_conv.weight, None, 1, 1, groups=x.shape[1])
    return sc.shift_conv.conv1x1(y)


def _official_lfe(lfe, x):
    return _official_shift_conv(lfe.conv1, F.relu(_official_shift_conv(lfe.conv0, x)))


def _official_gmsa(gmsa, x, prev_atns):
    b, c, h, w = x.shape
    x = gmsa.project_inp(x)
    xs = torch.split(x, x.shape[1] // 3, dim=1)
    ys, atns = [], []
    for idx, x_ in enumerate(xs):
        ws = gmsa.window_sizes[idx]
        if gmsa.shifted:
            x_ = torch.roll(x_, shifts=(-ws // 2, -ws // 2), dims=(2, 3))
        if prev_atns is None:
            # rearrange 'b (qv c) (h dh) (w dw) -> qv (b h w) (dh dw) c'
            t = x_.view(b, 2, -1, h // ws, ws, w // ws, ws).permute(1, 0, 3, 5, 4, 6, 2)
            q, v = t.reshape(2, b * (h // ws) * (w // ws), ws * ws, -1)
            atn = (q @ q.transpose(-2, -1)).softmax(dim=-1)
        else:
            t = x_.view(b, -1, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1)
            v = t.reshape(b * (h // ws) * (w // ws), ws * ws, -1)
            atn = prev_atns[idx]
        y_ = atn @ v
        # rearrange '(b h w) (dh dw) c -> b c (h dh) (w dw)'
        y_ = y_.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 5, 1, 3, 2, 4).reshape(b, -1, h, w)
        if gmsa.shifted:
            y_ = torch.roll(y_, shifts=(ws // 2, ws // 2), dims=(2, 3))
        ys.append(y_)
        atns.append(atn)
    return gmsa.project_out(torch.cat(ys, dim=1)), atns


def build(arch: str, scale: int):
    import litesr

    torch.manual_seed(0)
    model = litesr.create_model(arch, scale).eval()
    for m in model.modules():  # realistic BN statistics so the softmax is not saturated
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.fill_(50.0)
    return model


def worker(args) -> None:
    from litesr.efficiency import profile_forward

    torch.set_num_threads(args.threads)
    model = build(args.arch, args.scale)
    x = torch.rand(1, 3, args.size, args.size)
    fn = (lambda t: official_forward(model, t)) if args.path == "official" else model

    def forward():
        with torch.inference_mode():
            return fn(x)

    r = profile_forward(forward, args.runs, warmup=1)
    print(json.dumps({"latency_s": r["latency"], "mem_mib": r["peak_bytes"] / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="elan-light")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", choices=("litesr", "official"), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    model = build(args.arch, args.scale)
    with torch.inference_mode():
        x = torch.rand(1, 3, 37, 53)
        ref = official_forward(model, x)
        err = ((model(x) - ref).abs().max() / ref.abs().max()).item()
    print(f"{args.arch} x{args.scale}: litesr vs official re-expressed, max rel. error {err:.1e} (pass rule 2e-5)")
    print(f"{'LR size':>8} {'path':>9} {'latency s':>10} {'peak mem MiB':>13}")
    for size in args.sizes:
        results = {}
        for path in ("official", "litesr"):
            cmd = [sys.executable, __file__, "--worker", "--path", path, "--size", str(size), "--arch", args.arch,
                   "--scale", str(args.scale), "--runs", str(args.runs), "--threads", str(args.threads)]
            results[path] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            r = results[path]
            print(f"{size:>8} {path:>9} {r['latency_s']:>10.3f} {r['mem_mib']:>13.1f}")
        o, ours = results["official"], results["litesr"]
        print(f"{size:>8} {'ratio':>9} {o['latency_s'] / ours['latency_s']:>9.2f}x "
              f"{o['mem_mib'] / max(ours['mem_mib'], 1e-9):>12.2f}x"
              "  (official / litesr: > 1 means litesr is faster / leaner)")


if __name__ == "__main__":
    main()
