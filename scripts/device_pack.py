"""Pack what a GPU machine needs into ``.device/`` and keep what travels under the device tool's 64 MiB.

The device tool (a lent GPU machine, see training_state/README.md) copies the working tree and the paths named in
``carry``, 64 MiB in all, and not ``../shared``. Each of its two uses gets its own pack, a copy of the part of
``../shared`` it reads, under ``.device/shared`` (pass ``LITESR_SHARED=.device/shared`` there):

    python scripts/device_pack.py tests                          # the conformance vectors tests/test_cuda.py reads
    python scripts/device_pack.py train --keep elan-light_x2_cpu # the 291 training images, Set5

``train`` stores the training images as lossless WebP (checked pixel for pixel after writing: the same data,
a third smaller than PNG). With ``--hide``, the committed training state of every run but ``--keep`` and the
shipped weights are deleted from the working tree so that they do not travel; ``git checkout -- training_state
src/litesr/weights`` brings them back. The script prints what would travel and exits non-zero over the limit.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / ".device"
LIMIT = 64 * 2**20
#: the vectors tests/test_cuda.py loads
CUDA_VECTORS = ("elan_light_x4", "elan_x4_d4", "esrt_x4", "grformer_light_x4", "grformer_full_x4_d4",
                "swinir_light_x4")
#: T91 images tests/test_cuda.py trains on
CUDA_TRAIN_IMAGES = ("t1.bmp", "t2.bmp", "t3.bmp", "t5.bmp")
#: what --hide deletes from the working tree (all committed; git checkout brings it back)
HIDDEN = ("training_state", "src/litesr/weights")


def working_tree() -> list[Path]:
    """What travels from the working tree: tracked files present and untracked ones git does not ignore."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    return [p for p in (ROOT / f.decode() for f in files if f) if p.exists()]


def hide(keep: str | None) -> None:
    """Delete the committed files :func:`_hidden` names from the working tree (refused while any is changed)."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *HIDDEN], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty:
        sys.exit(f"error: uncommitted changes under {' and '.join(HIDDEN)}; commit them before --hide:\n{dirty}")
    hidden = [p for p in working_tree() if _hidden(p, keep)]
    for p in hidden:
        p.unlink()
    print(f"hid {len(hidden)} files; restore them with: git checkout -- {' '.join(HIDDEN)}")


def _hidden(path: Path, keep: str | None) -> bool:
    """Other runs' state and the shipped weights: neither test_cuda.py nor a resumed run reads them."""
    rel = path.relative_to(ROOT).parts
    if rel[:3] == ("src", "litesr", "weights"):
        return path.suffix == ".safetensors"
    return len(rel) > 2 and rel[0] == "training_state" and rel[1] != keep


def pack_tests(shared: Path) -> None:
    (PACK / "shared" / "conformance").mkdir(parents=True)
    for name in CUDA_VECTORS:
        for suffix in (".safetensors", ".json"):
            shutil.copy(shared / "conformance" / (name + suffix), PACK / "shared" / "conformance")
    (PACK / "shared" / "data" / "train" / "T91").mkdir(parents=True)
    for name in CUDA_TRAIN_IMAGES:
        shutil.copy(shared / "data" / "train" / "T91" / name, PACK / "shared" / "data" / "train" / "T91")


def pack_train(shared: Path) -> None:
    for folder in ("T91", "BSD200"):
        dst = PACK / "shared" / "data" / "train" / folder
        dst.mkdir(parents=True)
        for src in sorted((shared / "data" / "train" / folder).iterdir()):
            with Image.open(src) as im:
                pixels = np.asarray(im.convert("RGB"))
            out = dst / (src.stem + ".webp")
            Image.fromarray(pixels).save(out, "WEBP", lossless=True, quality=100, method=4)
            with Image.open(out) as back:
                if not np.array_equal(np.asarray(back.convert("RGB")), pixels):
                    sys.exit(f"error: {src} did not survive lossless WebP unchanged")
    shutil.copytree(shared / "data" / "benchmarks" / "Set5", PACK / "shared" / "data" / "benchmarks" / "Set5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("use", choices=["tests", "train"])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="the shared data (../shared)")
    ap.add_argument("--keep", help="the run folder under training_state/ that travels (train)")
    ap.add_argument("--hide", action="store_true", help="delete the other runs' committed state from the working tree")
    args = ap.parse_args()
    if not args.shared.is_dir():
        sys.exit(f"error: no shared data at {args.shared}; pass --shared DIR")
    if args.keep and not (ROOT / "training_state" / args.keep / "state.pt").is_file():
        sys.exit(f"error: training_state/{args.keep}/state.pt not found")
    shutil.rmtree(PACK, ignore_errors=True)
    (pack_tests if args.use == "tests" else pack_train)(args.shared)
    exclude = ROOT / ".git" / "info" / "exclude"  # .device travels as a carried path, not as untracked files
    listed = exclude.read_text() if exclude.exists() else ""
    if "/.device/" not in listed.split():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text(listed + ("" if listed.endswith("\n") or not listed else "\n") + "/.device/\n")
    packed = sum(p.stat().st_size for p in PACK.rglob("*") if p.is_file())
    if args.hide:
        hide(args.keep)
    tree = sum(p.stat().st_size for p in working_tree())
    total = packed + tree
    print(f".device: {packed / 2**20:.1f} MiB; working tree: {tree / 2**20:.1f} MiB; "
          f"together {total / 2**20:.1f} of {LIMIT / 2**20:.0f} MiB")
    if total > LIMIT:
        sys.exit("error: over the device tool's limit" + ("" if args.hide else "; add --hide (and --keep RUN)"))


if __name__ == "__main__":
    main()
