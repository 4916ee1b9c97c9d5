"""Rewrite the entries of docs/models.md (its score table and one section per entry) from litesr's weights table.

    python scripts/models_doc.py            # after editing src/litesr/weights/zoo.yaml

Everything in docs/models.md before the score table is prose and stays as written; from the table's header line to
the end of the file is generated (tests/test_zoo.py checks that it agrees with the table).
"""

from __future__ import annotations

from pathlib import Path

from litesr import zoo

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"
HEADER = "| name | where | Set5 | Set14 | B100 | Urban100 (subset) | licence |"
SETS = zoo.SET_ORDER


def score(e: zoo.Weights, name: str) -> str:
    if name in e.scores:
        return f"{e.scores[name]['psnr']:.2f} / {e.scores[name]['ssim']:.4f}"
    return "not measured yet" if e.scores else "not measured here"


def where_from(e: zoo.Weights) -> str:
    size = f"{e.size:,} bytes, " if e.size else \
        "size not recorded (the file could not be had here), " if not e.scores else "size not recorded, "
    if e.shipped:
        card = Path(e.file).with_suffix(".md").name
        return f"shipped, `src/litesr/weights/{e.file}` ({size}sha256 `{e.sha256}`); model card `{card}`"
    return f"`{e.filename}` from {e.url} ({size}sha256 `{e.sha256}`)"


def generated() -> list[str]:
    table = zoo.entries().values()
    lines = [HEADER, "|---|---|---|---|---|---|---|"]
    for e in table:
        name = f"`{e.name}`" + (f" (default: `{e.arch}-x{e.scale}`)" if e.default else "")
        lines.append(f"| {name} | {'shipped' if e.shipped else 'download'} | "
                     + " | ".join(score(e, s) for s in SETS) + f" | {e.licence.split(' (')[0]} |")
    for e in table:
        lines += ["", f"### `{e.name}`" + (" (default)" if e.default else ""), "",
                  f"- **Architecture:** {e.arch} x{e.scale}",
                  f"- **Trained on:** {e.data}",
                  f"- **By / attribution:** {e.attribution}",
                  f"- **Licence:** {e.licence}",
                  f"- **File:** {where_from(e)}"]
        if e.source:
            s = e.source
            url = f"https://raw.githubusercontent.com/{s['repo']}/{s['commit']}/{s['path']}"
            lines.append(f"- **Converted from:** {url} ({s['size']:,} bytes, sha256 `{s['sha256']}`): "
                         f"{s['conversion']}")
    return lines


def main() -> None:
    text = DOC.read_text().splitlines()
    head = text[:text.index(HEADER)] if HEADER in text else text + [""]
    DOC.write_text("\n".join(head + generated()) + "\n")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
