"""The README's pictures, from measured data: PSNR against CPU latency, and a visual comparison of crops.

1. ``docs/psnr_vs_latency.png``: every model of ``docs/efficient_sr.json`` (``benchmarks/efficient_sr.py``): Set5
   and Urban100-subset PSNR against the seconds of ``litesr upscale``'s default path on a 256² picture, marker
   area proportional to the parameters.
2. ``docs/comparison.png``: crops of Set14 and Urban100-subset images, x4: bicubic (MATLAB-compatible), each model of
   that JSON, and the HR original, each crop labelled with its PSNR (Y).

    pip install matplotlib        # the only extra it needs (litesr[plot])
    python benchmarks/figures.py --data ../shared/data/benchmarks

``benchmarks/efficient_sr.py`` runs this at the end of its measurement; run it alone to redraw from the JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CROP = 96
#: (set, image, top, left) of each HR crop (side ``--crop``): fine texture, text and lines, where models differ
CROPS = (("Set14", "barbara", 300, 80), ("Set14", "ppt3", 300, 200), ("Urban100", "img_061", 350, 520),
         ("Urban100", "img_091", 200, 300))


def chart(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in record["rows"] if r.get("scores")]
    sets = [s for s in ("Set5", "Urban100") if all(s in r["scores"] for r in rows)]
    fig, axes = plt.subplots(1, len(sets), figsize=(6.2 * len(sets), 4.6), squeeze=False)
    for ax, name in zip(axes[0], sets):
        for r in rows:
            x, y = r["seconds_auto"], r["scores"][name]["psnr_y"]
            ax.scatter(x, y, s=r["params"] / 1500, alpha=0.55, edgecolors="black", linewidths=0.6)
            ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(7, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"seconds, x4 upscale of a {record['lr_size']}² picture (default precision), log scale")
        ax.set_ylabel(f"{name}{' subset' if name == 'Urban100' else ''} PSNR (Y, dB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.25, y=0.12)
    fig.suptitle(f"x4 models with real weights on {record['cpu']} ({record['threads']} threads); "
                 "marker area ∝ parameters", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def comparison(record: dict, data: Path, path: Path, crop: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import litesr
    from litesr.data.imresize import imresize
    from litesr.data.testsets import BenchmarkSet
    from litesr.metrics import psnr_y

    models = {r["name"]: litesr.load_model(str(resolve(r))) for r in record["rows"]}
    columns = ["bicubic", *models, "HR"]
    fig, axes = plt.subplots(len(CROPS), len(columns), figsize=(1.9 * len(columns), 2.05 * len(CROPS)),
                             squeeze=False)
    for i, (set_name, image, top, left) in enumerate(CROPS):
        bench = BenchmarkSet(data, set_name, 4)
        pair = bench.load(next(p for p in bench.hr_paths if p.stem == image))
        box = (slice(top, top + crop), slice(left, left + crop))
        outputs = {"bicubic": imresize(pair.lr, 4)}
        for name, model in models.items():
            outputs[name] = litesr.upscale(pair.lr, model=model)
        outputs["HR"] = pair.hr
        for j, name in enumerate(columns):
            ax = axes[i][j]
            ax.imshow(outputs[name][box], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            score = "" if name == "HR" else f"\n{psnr_y(outputs[name][box], pair.hr[box], 0):.2f} dB"
            ax.set_title(f"{name}{score}", fontsize=7)
            if j == 0:
                ax.set_ylabel(f"{set_name}/{image}", fontsize=7)
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def resolve(row: dict) -> Path:
    sys_path = Path(row.get("path", ""))
    if sys_path.is_file():
        return sys_path
    from litesr import zoo

    found = zoo.local_file(zoo.find(row["name"]))
    if found is None:
        raise SystemExit(f"{row['name']}: no local file (litesr weights download {row['name']})")
    return Path(found)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record", type=Path, default=ROOT / "docs" / "efficient_sr.json")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "benchmarks")
    ap.add_argument("--crop", type=int, default=DEFAULT_CROP, help="HR side of each crop")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()
    record = json.loads(args.record.read_text())
    chart(record, args.out / "psnr_vs_latency.png")
    comparison(record, args.data, args.out / "comparison.png", args.crop)
    print(f"wrote {args.out / 'psnr_vs_latency.png'} and {args.out / 'comparison.png'}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
