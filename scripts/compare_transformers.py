"""The four transformers trained under one recipe and one budget, side by side.

    python scripts/compare_transformers.py --data ../shared/data/benchmarks [--out docs/cpu291.md]

Reads every ``training_state/<arch>_x4_cpu291`` run (the packaged ``cpu291_x4`` recipe; restore the folders from
the repository's history first, as docs/training_runs.md says), checks that all of them used the same recipe
(everything but the architecture and the paths), and scores each run's *final* EMA weights —
no pick of the best checkpoint on a test set — on Set5, Set14, B100 and the Urban100 subset (its LR made with the
MATLAB-compatible bicubic). Next to the scores: parameters, MACs for a 1280×720 output, and the median fp32
latency of one forward at LR 128² on this machine, all measured in this run. Prints a Markdown table and writes it
to ``--out``.

Runs that have not reached the recipe's last iteration are listed with their step, marked as unfinished.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import litesr
from litesr.efficiency import count_flops, count_parameters, cpu_name, hd_input_size, profile_forward
from litesr.train_config import upgrade_legacy_keys

REPO = Path(__file__).resolve().parents[1]
ORDER = ("swinir-light", "elan-light", "esrt", "grformer")  # the baseline first, then the three papers
#: Config fields that may differ between runs of one recipe.
FREE = {"arch", "model_config", "train_data", "train_lr_data", "cache_dir", "val_data", "out", "device", "workers"}


def final_ema(state: dict) -> dict:
    """The EMA weights of a training state (AveragedModel keys ``module.*``; its counter dropped)."""
    ema = state["ema"] if state.get("ema") is not None else state["model"]
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in ema.items() if k != "n_averaged"}


def load_runs(root: Path) -> list[dict]:
    runs = []
    for folder in sorted(root.glob("*_x4_cpu291")):
        state = torch.load(folder / "state.pt", weights_only=True, map_location="cpu")
        config = upgrade_legacy_keys(json.loads(state["config"]))
        runs.append({"folder": folder, "config": config, "step": int(state["step"]),
                     "hours": float(state.get("train_seconds", 0.0)) / 3600,
                     "model": litesr.load_model(final_ema(state), arch=config["arch"])})
    runs.sort(key=lambda r: ORDER.index(r["config"]["arch"]) if r["config"]["arch"] in ORDER else len(ORDER))
    return runs


def recipe_differences(runs: list[dict]) -> list[str]:
    """Fields whose values differ between the runs (the recipe must be one)."""
    keys = set().union(*(r["config"] for r in runs)) - FREE
    return sorted(k for k in keys if len({json.dumps(r["config"].get(k)) for r in runs}) > 1)


def latency(model: torch.nn.Module, size: int, runs: int) -> float:
    x = torch.rand(1, 3, size, size)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    return profile_forward(forward, runs=runs, warmup=1)["latency"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="benchmark root (EDSR layout)")
    ap.add_argument("--sets", default="Set5,Set14,B100,Urban100")
    ap.add_argument("--runs-dir", type=Path, default=REPO / "training_state")
    ap.add_argument("--latency-size", type=int, default=128, help="LR side of the timed forward")
    ap.add_argument("--latency-runs", type=int, default=5)
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = ap.parse_args()

    runs = load_runs(args.runs_dir)
    if not runs:
        print(f"no *_x4_cpu291 run in {args.runs_dir}", file=sys.stderr)
        return 2
    differ = recipe_differences(runs)
    if differ:
        print(f"the runs do not share one recipe: {', '.join(differ)} differ", file=sys.stderr)
        return 2
    sets = [s for s in args.sets.split(",") if s]
    iters = runs[0]["config"]["iters"]
    header = ("| model | params | MACs (720p) | latency LR 128² fp32 | " + " | ".join(sets)
              + " | iterations | train time |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for run in runs:
        model, arch = run["model"], run["config"]["arch"]
        scores = litesr.evaluate(model, args.data, sets, 4, progress=False)
        macs = count_flops(model, hd_input_size(4))["macs"]
        seconds = latency(model, args.latency_size, args.latency_runs)
        done = "" if run["step"] >= iters else " (unfinished)"
        lines.append(f"| `{arch}` | {count_parameters(model) / 1e3:.0f}K | {macs / 1e9:.1f}G | {seconds:.2f} s | "
                     + " | ".join(f"{scores[s]['psnr_y']:.2f} / {scores[s]['ssim_y']:.4f}" for s in sets)
                     + f" | {run['step']:,}{done} | {run['hours']:.1f} h |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        from litesr.io import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(document(table, runs[0]["config"], args.latency_size))
    return 0


def document(table: str, config: dict, latency_size: int) -> str:
    """The Markdown page ``--out`` holds: what was compared, under which budget, the table, and how to read it."""
    import datetime

    return f"""# The four transformers under one recipe

Written by `python scripts/compare_transformers.py --data ../shared/data/benchmarks --out docs/cpu291.md` on
{datetime.date.today().isoformat()} ({cpu_name()}, {torch.get_num_threads()} threads). Every model was trained by litesr
with the packaged `cpu291_x4` recipe: the 291 images (T91 + BSD200), HR patch {config["patch_size"]}, batch
{config["batch_size"]}, {config["iters"]:,} iterations, lr {config["lr"]:g} ({config["schedule"]}), EMA
{config["ema_decay"]}, {config["precision"]} precision, one CPU thread each. Scores are each run's **final** EMA weights
(no checkpoint picked on a test set), PSNR / SSIM on Y with the standard protocol; Urban100 is the 10-image subset.
MACs are for a 1280×720 output; latency is the median fp32 forward at LR {latency_size}² x4 on the machine above,
all models measured in the same run.

{table}

How to read it: this is a short CPU schedule ({config["iters"]:,} iterations of batch {config["batch_size"]} on 291
small images), not the papers' 500k iterations on DIV2K. A short schedule rewards the models that learn fastest,
which need not be the ones that end best: it need not rank the four as long GPU schedules do. The training time is
wall time on a machine shared with other jobs, not a speed measurement. The shipped weights of some of these models
come from longer continuations (see their model cards); this table keeps the one-budget runs.
"""


if __name__ == "__main__":
    raise SystemExit(main())
