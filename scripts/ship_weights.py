"""Package a training run's best weights with a model card measured by litesr's own evaluation.

    python scripts/ship_weights.py runs/elan-light_x4_cpu --data ../shared/data/benchmarks \
        --data-desc "T91 (91 images)" --hardware "2-core CPU (AVX-512 BF16), bf16 autocast"

Writes ``src/litesr/weights/<arch>_x<scale>.safetensors`` (official key names), ``.json`` (the scores) and ``.md``
(the model card: data, iterations, hardware, wall time, Set5/Set14/B100/Urban100 PSNR/SSIM, validation curve),
updates that file's entry in the weights table (``src/litesr/weights/zoo.yaml``: sha256, size, scores), then
rewrites the README's table of weights (``litesr models --markdown``). Re-shipping a run that was trained longer is one
line: ``--data-desc``, ``--hardware`` and ``--note`` default to what the current card says.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open

import litesr
from litesr.efficiency import cpu_name
from litesr.io import atomic_path
from litesr import zoo
from litesr.pretrained import WEIGHTS_DIR

#: The papers' DIV2K-trained models (PSNR, SSIM): ELAN paper Table 2 (ELAN-light), ESRT paper Table 1, SwinIR paper
#: Table 3 (SwinIR-light). No GRFormer figures are recorded here yet: its card shows "–".
PAPER = {
    ("elan-light", 2): {"Set5": (38.17, 0.9611), "Set14": (33.94, 0.9207), "B100": (32.30, 0.9012)},
    ("elan-light", 3): {"Set5": (34.61, 0.9288), "Set14": (30.55, 0.8463), "B100": (29.21, 0.8081)},
    ("elan-light", 4): {"Set5": (32.43, 0.8975), "Set14": (28.78, 0.7858), "B100": (27.69, 0.7406)},
    ("esrt", 4): {"Set5": (32.19, 0.8947), "Set14": (28.69, 0.7833), "B100": (27.69, 0.7379)},
    ("swinir-light", 4): {"Set5": (32.44, 0.8976), "Set14": (28.77, 0.7858), "B100": (27.69, 0.7406)},
}
#: The paper each shipped variant comes from, as the card's column header names it.
PAPER_NAME = {"elan-light": "ELAN", "esrt": "ESRT", "swinir-light": "SwinIR", "grformer": "GRFormer"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="training run folder (holds best.safetensors, state.pt, metrics.jsonl)")
    ap.add_argument("--data", required=True, help="benchmark root (EDSR layout)")
    ap.add_argument("--sets", default="Set5,Set14,B100,Urban100")
    ap.add_argument("--data-desc", help="what the model was trained on (default: the current card's)")
    ap.add_argument("--hardware", help="words on the hardware/precision (default: the current card's)")
    ap.add_argument("--note", help="anything else the card must say, e.g. initialised from x4 (default: the "
                                   "current card's)")
    ap.add_argument("--recipe", help="the packaged recipe the run follows, e.g. cpu291_x4 (default: the current "
                                     "card's, else <arch>_x<scale>_cpu)")
    ap.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md",
                    help="README whose shipped-weights table is rewritten (default: the repository's)")
    args = ap.parse_args()

    state = torch.load(args.run / "state.pt", weights_only=True)
    config = json.loads(state["config"])
    best = json.loads((args.run / "best.json").read_text())
    model = litesr.load_model(args.run / "best.safetensors")
    with safe_open(args.run / "best.safetensors", "pt") as f:
        weights_step = int(f.metadata().get("litesr.step", best["step"]))
    if weights_step != best["step"]:  # a running run wrote a new best between the two reads
        raise SystemExit(f"{args.run}: best.json is step {best['step']} but best.safetensors step {weights_step} "
                         "(the run is writing a new best); run this again")
    arch, scale = config["arch"], model.scale
    name = f"{arch}_x{scale}"
    previous = WEIGHTS_DIR / f"{name}.json"
    previous = json.loads(previous.read_text()) if previous.is_file() else {}
    if args.data_desc is None:
        if "data" not in previous:
            ap.error(f"--data-desc is needed: {name} has no model card yet")
        args.data_desc = previous["data"]
    if args.hardware is None:
        args.hardware = previous.get("hardware", "").split("; ", 1)[-1]  # without the CPU name added below
    if args.note is None:
        args.note = previous.get("note", "")
    if args.recipe is None:
        args.recipe = previous.get("recipe_file", f"{name}_cpu")
    sets = [s for s in args.sets.split(",") if s]
    results = litesr.evaluate(model, args.data, sets, scale, progress=True)
    scores = {k: {"psnr_y": round(v["psnr_y"], 4), "ssim_y": round(v["ssim_y"], 4), "images": v["images"]}
              for k, v in results.items()}

    curve, seconds, last_step = [], 0.0, 0
    for line in (args.run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "val" in rec:
            curve.append((rec["step"], round(rec[f"val_psnr_{config['val_sets'][0]}"], 3)))
        elif "it_per_s" in rec:  # wall time over every resumed part of the run, from the logged step rates
            seconds += (rec["step"] - last_step) / rec["it_per_s"]
            last_step = rec["step"]
    hours = seconds / 3600
    card = {
        "arch": arch, "scale": scale, "step": best["step"], "iterations_run": int(state["step"]),
        "train_hours": round(hours, 2), "data": args.data_desc,
        "hardware": f"{cpu_name()}; {args.hardware}".strip("; "),
        "recipe": {k: config[k] for k in ("batch_size", "patch_size", "lr", "schedule", "warmup_iters", "iters",
                                          "ema_decay", "grad_clip", "seed")}
                  | {"precision": config.get("precision", config.get("amp")), "loss": config.get("loss", "l1"),
                     "hr_scales": config.get("hr_scales", [1.0])},
        "recipe_file": args.recipe,
        "results": scores, "validation_curve": curve, "note": args.note, "litesr": litesr.__version__,
    }
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    litesr.save_model(model, WEIGHTS_DIR / f"{name}.safetensors",
                      metadata={"litesr.step": str(best["step"]), "litesr.data": args.data_desc})
    with atomic_path(WEIGHTS_DIR / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(card, indent=1) + "\n")
    with atomic_path(WEIGHTS_DIR / f"{name}.md") as tmp:
        tmp.write_text(render_card(card))
    print(render_card(card))
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if update_table_entry(zoo.TABLE, path.name, zoo.sha256_of(path), path.stat().st_size, scores):
        print(f"updated the entry of {path.name} in {zoo.TABLE}")
    else:
        print(f"{zoo.TABLE} has no entry for {path.name}: add one (name, arch, scale, file, sha256 "
              f"{zoo.sha256_of(path)}, size {path.stat().st_size}, licence, attribution, data, scores)")
    if args.readme.is_file():
        update_readme_table(args.readme)
        print(f"updated the table of weights in {args.readme}")


def score(result: dict) -> str:
    """``PSNR / SSIM`` as the cards and the README show them."""
    return f"{result['psnr_y']:.2f} / {result['ssim_y']:.4f}"


def update_table_entry(table: Path, file: str, sha256: str, size: int, scores: dict) -> bool:
    """Rewrite, in the table's text (comments kept), the sha256, size and scores of the entry whose ``file`` is
    ``file``; False if no entry ships that file."""
    import re

    text = table.read_text()
    blocks = re.split(r"(?m)^(?=- name: )", text)
    for i, block in enumerate(blocks):
        if not re.search(rf"(?m)^  file: {re.escape(file)}$", block):
            continue
        block = re.sub(r"(?m)^  sha256: .*$", f"  sha256: {sha256}", block, count=1)
        block = re.sub(r"(?m)^  size: .*$", f"  size: {size}", block, count=1)
        lines = "".join(f"    {s}: {{psnr: {r['psnr_y']}, ssim: {r['ssim_y']}}}\n" for s, r in scores.items())
        block = re.sub(r"(?ms)^  scores:.*?(?=^\S|^  \S|^$|\Z)", f"  scores:\n{lines}", block, count=1)
        blocks[i] = block
        with atomic_path(table) as tmp:
            tmp.write_text("".join(blocks))
        zoo._packaged.cache_clear()
        return True
    return False


def update_readme_table(readme: Path) -> None:
    """Replace the README's table of weights (under ``litesr models --markdown``'s header) with a fresh one."""
    from litesr.cli.models import MARKDOWN_HEADER, markdown_rows

    lines = readme.read_text().splitlines()
    try:
        head = lines.index(MARKDOWN_HEADER)
    except ValueError:
        raise SystemExit(f"{readme} has no table of weights ('{MARKDOWN_HEADER}'): "
                         "paste `litesr models --markdown`") from None
    end = head
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[head:end] = markdown_rows()
    with atomic_path(readme) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def render_card(card: dict) -> str:
    paper = PAPER.get((card["arch"], card["scale"]), {})
    rows = "\n".join(
        f"| {s} | {score(r)} | "
        + (f"{paper[s][0]:.2f} / {paper[s][1]:.4f} |" if s in paper else "– |")
        for s, r in card["results"].items()
    )
    curve = ", ".join(f"{step}: {psnr:.2f}" for step, psnr in card["validation_curve"])
    r = card["recipe"]
    recipe = card.get("recipe_file", f"{card['arch']}_x{card['scale']}_cpu")
    paper_name = PAPER_NAME.get(card["arch"], card["arch"])
    recipe_ref = "the flags are in the note" if recipe.startswith("none") else f"`src/litesr/configs/{recipe}.yaml`"
    factors = r.get("hr_scales", [1.0])
    scales = "" if list(factors) == [1.0] else (", scale augmentation: HR images at "
                                                f"{' / '.join(f'{f:g}' for f in factors)} of their size")
    return f"""# {card['arch']} x{card['scale']} — litesr's own weights

- **Trained on:** {card['data'].rstrip('.')}.
- **Recipe** (the last phase's settings; the note has the history): {r.get('loss', 'l1').upper()}, Adam (0.9, 0.99),
  batch {r['batch_size']}, HR patch {r['patch_size']}, lr {r['lr']} ({r['schedule']}, {r['warmup_iters']} warm-up
  iterations, planned {r['iters']}), EMA {r['ema_decay']}, grad clip {r['grad_clip']}, precision
  {r.get('precision', r.get('amp'))}, seed {r['seed']}{scales} ({recipe_ref}).
- **Weights:** the EMA at iteration {card['step']} (best Set5 validation) of {card['iterations_run']} run so far.
- **Hardware / time:** {card['hardware']}; {card['train_hours']} h of training wall time.
{('- **Note:** ' + card['note']) if card['note'] else ''}

Scores measured with `litesr eval` (PSNR/SSIM on Y, crop = scale, grayscale as RGB), next to the paper's
DIV2K-trained model. The gap is the training budget (hours on two CPU cores and a few hundred small images, versus
500k iterations on DIV2K's 800 2K images), not the architecture: training longer is a one-line resume.

| set | litesr (PSNR / SSIM) | {paper_name} paper (DIV2K) |
|---|---|---|
{rows}

Validation PSNR on Set5 during training (iteration: dB): {curve}.
"""


if __name__ == "__main__":
    main()
