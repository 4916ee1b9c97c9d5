"""`litesr upscale` and every command on real and odd files: nothing lost, one clear line, 16-bit and colour kept.

A small PAN x2 with seeded random weights stands in for a real model (its bilinear skip keeps the picture), so
these tests are fast; pixels are checked against the Python path on the same model.
"""

import errno
import functools
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import litesr
from litesr.cli import main
from litesr.pretrained import WEIGHTS_DIR
from litesr.tiling import InferenceOptions, upscale_array
from conftest import NearestX4

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = litesr.create_model("pan", 2).eval()
    path = tmp_path_factory.mktemp("w") / "pan_x2.safetensors"
    litesr.save_model(model, path)
    return path, model


def photo(h=12, w=16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(h + w - 2, 1)], 2)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def cli(capsys, *args):
    if args[0] == "upscale" and "--precision" not in args:  # pixels are compared with the fp32 Python path
        args = (*args, "--precision", "fp32")
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, [line for line in err.splitlines() if line.strip()]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


@functools.lru_cache(maxsize=None)
def srgb_icc() -> bytes:
    """One sRGB profile per test process: littleCMS stamps each new profile with the current time, so two calls a
    second apart give different bytes."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def gray_icc() -> bytes:
    profile = bytearray(srgb_icc())
    profile[16:20] = b"GRAY"  # only the header's colour space matters to litesr's check; Pillow keeps the bytes
    return bytes(profile)


# ------------------------------------------------------------------ 1. writes checked first, real path named

def test_output_under_a_file_fails_before_computing(tiny, tmp_path, capsys, monkeypatch):
    src = tmp_path / "a.png"
    Image.fromarray(photo()).save(src)
    (tmp_path / "blocker").write_text("a file")
    monkeypatch.setattr("litesr.tiling.upscale_strips", lambda *a, **k: pytest.fail("computed first"))
    rc, _, err = cli(capsys, "upscale", src, "-o", tmp_path / "blocker" / "z.png", "--weights", tiny[0])
    assert rc == 2 and len(err) == 1 and "blocker" in err[0] and "z.png" in err[0] and ".tmp" not in err[0], err
    assert err[0].startswith("litesr upscale: error: cannot write")


def test_unwritable_folder_names_the_output_not_the_temporary(tiny, tmp_path, capsys, monkeypatch):
    import tempfile

    src = tmp_path / "a.png"
    Image.fromarray(photo()).save(src)
    out = tmp_path / "out"
    out.mkdir()
    real = tempfile.mkstemp

    def denied(*args, dir=None, **kw):  # running as root, chmod cannot deny; the OS answer is simulated
        if Path(dir) == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(out / ".z.png.3y2k1srp.tmp"))
        return real(*args, dir=dir, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    rc, _, err = cli(capsys, "upscale", src, "-o", out / "z.png", "--weights", tiny[0])
    assert rc == 2 and len(err) == 1 and str(out / "z.png") in err[0] and "Permission denied" in err[0], err
    assert ".tmp" not in err[0] and list(out.iterdir()) == []


def test_full_disk_names_the_output_leaves_nothing_and_stops_the_batch(tiny, tmp_path, capsys, monkeypatch):
    for i in range(3):
        Image.fromarray(photo(seed=i)).save(tmp_path / f"p{i}.png")
    calls = []

    def full(path, *args, **kw):
        calls.append(path)
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("litesr.io.write._write_png_stream", full)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "upscale", tmp_path / "p0.png", tmp_path / "p1.png", tmp_path / "p2.png", "-o", out,
                     "--weights", tiny[0], "--quiet")
    assert rc == 1 and len(calls) == 1  # the batch stops at the first full-disk failure
    assert str(out / "p0_x2.png") in err[0] and "No space left on device" in err[0] and ".tmp" not in err[0]
    assert "disk is full" in err[1] and "0 done, 0 skipped, 3 failed" in err[-1]
    assert list(out.iterdir()) == []  # no partial output, no temporary


def test_every_command_checks_its_output_before_working(tiny, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    data = REPO.parent / "shared" / "data" / "benchmarks"
    commands = [
        ["eval", "--data", data, "--sets", "Set5", "--bicubic", "--scale", "2", "--json", blocker / "r.json"],
        ["convert", tiny[0], blocker / "c.safetensors"],
        ["bench", "pan", "--macs-only", "--json", blocker / "b.json"],
        ["train", "--arch", "pan", "--scale", "2", "--train-data", tmp_path, "--out", blocker / "run"],
    ]
    for args in commands:
        rc, out, err = cli(capsys, *args)
        assert rc == 2 and len(err) == 1 and "cannot write" in err[0] and str(blocker) in err[0], (args, err)
        assert "x2" not in out and "PSNR" not in out  # nothing was computed first


# ------------------------------------------------------------------ 2. nothing lost

def test_same_name_in_two_folders_is_refused_before_anything_is_written(tiny, tmp_path, capsys):
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
        Image.fromarray(photo()).save(tmp_path / d / "pic.png")
    rc, _, err = cli(capsys, "upscale", tmp_path / "d1" / "pic.png", tmp_path / "d2" / "pic.png", "-o",
                     tmp_path / "out", "--weights", tiny[0])
    assert rc == 2 and len(err) == 1 and "would both be written to" in err[0]
    assert not (tmp_path / "out").exists()


def test_output_equal_to_input_is_refused_even_with_overwrite(tiny, tmp_path, capsys):
    src = tmp_path / "pic.png"
    Image.fromarray(photo()).save(src)
    before = src.read_bytes()
    for extra in ([], ["--overwrite"]):
        rc, _, err = cli(capsys, "upscale", src, "-o", src, "--weights", tiny[0], *extra)
        assert rc == 2 and len(err) == 1 and "would replace its input" in err[0]
    rc, _, err = cli(capsys, "upscale", tmp_path, "-o", tmp_path, "--suffix", "", "--weights", tiny[0], "--overwrite")
    assert rc == 2 and "would replace" in err[0]
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["pic.png"]


def test_one_bad_file_does_not_stop_the_batch(tiny, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo(seed=1)).save(src / "a_good.png")
    (src / "b_empty.png").write_bytes(b"")
    (src / "c_text.png").write_text("this is not a picture\n")
    full = io.BytesIO()
    Image.fromarray(photo(40, 40)).save(full, format="PNG")
    (src / "d_truncated.png").write_bytes(full.getvalue()[:300])
    Image.fromarray(photo(seed=2)).save(src / "e_good.jpg", quality=95)
    out = tmp_path / "out"
    rc, stdout, err = cli(capsys, "upscale", src, "-o", out, "--weights", tiny[0])
    assert rc == 1
    failed = [line for line in err if "error:" in line]
    assert len(failed) == 3 and all(line.count("\n") == 0 for line in failed)
    for name in ("b_empty.png", "c_text.png", "d_truncated.png"):
        assert sum(name in line for line in failed) == 1
    assert "2 done, 0 skipped, 3 failed (of 5)" in err[-1]
    assert sorted(p.name for p in out.iterdir()) == ["a_good_x2.png", "e_good_x2.jpg"]
    with Image.open(out / "a_good_x2.png") as img:
        assert np.array_equal(np.array(img), upscale_array(tiny[1], photo(seed=1)))
    assert leftovers(out) == [] and "[5/5]" in stdout


def test_existing_outputs_need_skip_or_overwrite(tiny, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(photo(seed=i)).save(src / f"p{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p0_x2.png").write_bytes(b"keep me")
    rc, _, err = cli(capsys, "upscale", src, "-o", out, "--weights", tiny[0])
    assert rc == 2 and len(err) == 1 and "already exists" in err[0] and "--skip-existing" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["p0_x2.png"]  # refused as a whole, before computing
    rc, _, err = cli(capsys, "upscale", src, "-o", out, "--weights", tiny[0], "--skip-existing")
    assert rc == 0 and (out / "p0_x2.png").read_bytes() == b"keep me" and (out / "p1_x2.png").exists()
    assert "1 done, 1 skipped, 0 failed" in err[-1]
    rc, _, err = cli(capsys, "upscale", src, "-o", out, "--weights", tiny[0], "--overwrite", "--quiet")
    assert rc == 0 and (out / "p0_x2.png").read_bytes()[:4] == b"\x89PNG"


def test_recursive_suffix_and_ext(tiny, tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(photo(seed=3)).save(src / "top.png")
    Image.fromarray(photo(seed=4)).save(src / "sub" / "deep.jpg", quality=95)
    out = tmp_path / "out"
    rc, _, _ = cli(capsys, "upscale", src, "-o", out, "--weights", tiny[0], "--quiet")
    assert rc == 0 and sorted(p.name for p in out.iterdir()) == ["top_x2.png"]  # not recursive by default
    rc, _, _ = cli(capsys, "upscale", src, "-o", out, "--weights", tiny[0], "--recursive", "--suffix=-big",
                   "--ext", "jpg", "--quality", "80", "--quiet")
    assert rc == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "sub/deep-big.jpg", "top-big.jpg", "top_x2.png"]
    with Image.open(out / "top-big.jpg") as img:
        assert img.format == "JPEG" and img.size == (32, 24)


# ------------------------------------------------------------------ 3. formats by name

def test_unknown_output_suffix_is_refused_and_creates_nothing(tiny, tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(photo()).save(src)
    rc, _, err = cli(capsys, "upscale", src, "-o", tmp_path / "x.gif", "--weights", tiny[0])
    assert rc == 2 and len(err) == 1 and "does not write .gif" in err[0]
    assert not (tmp_path / "x.gif").exists()


def test_gif_inputs_become_png_and_animations_are_refused_or_first_frame(tiny, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    still = Image.fromarray(photo(seed=5)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    still.save(src / "still.gif")
    frames = [Image.fromarray(photo(seed=s)).convert("P", palette=Image.Palette.ADAPTIVE) for s in (6, 7, 8)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    out = tmp_path / "out"
    rc, _, err = cli(capsys, "upscale", src, "-o", out, "--weights", tiny[0])  # the folder includes .gif
    assert rc == 1 and len([e for e in err if "error:" in e]) == 1 and "animated (3 frames)" in err[0]
    assert "--first-frame" in err[0]
    with Image.open(out / "still_x2.png") as img:
        assert img.format == "PNG" and img.mode == "RGB"
        with Image.open(src / "still.gif") as gif:
            assert np.array_equal(np.array(img), upscale_array(tiny[1], np.array(gif.convert("RGB"))))
    rc, _, _ = cli(capsys, "upscale", src / "anim.gif", "-o", out, "--weights", tiny[0], "--first-frame", "--quiet")
    with Image.open(out / "anim_x2.png") as img, Image.open(src / "anim.gif") as gif:
        assert rc == 0 and np.array_equal(np.array(img), upscale_array(tiny[1], np.array(gif.convert("RGB"))))


# ------------------------------------------------------------------ 4. size limit, estimate, 9. progress in logs

def declared_bomb(path: Path, side: int = 60000) -> None:
    """A tiny PNG whose header declares side×side pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


def test_declared_bomb_and_max_pixels(tiny, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    declared_bomb(bomb)
    rc, _, err = cli(capsys, "upscale", bomb, "-o", tmp_path / "out.png", "--weights", tiny[0])
    assert rc == 1 and len(err) == 1 and "60000x60000" in err[0] and "--max-pixels" in err[0], err
    src = tmp_path / "a.png"
    Image.fromarray(photo()).save(src)
    rc, _, err = cli(capsys, "upscale", src, "-o", tmp_path / "a2.png", "--weights", tiny[0], "--max-pixels", "100")
    assert rc == 1 and "12x16" not in err[0] and "16x12" in err[0] and not (tmp_path / "a2.png").exists()
    with pytest.raises(ValueError, match="max_pixels"):
        litesr.upscale(photo(), tiny[1], max_pixels=100)


def test_progress_lines_in_a_log_and_an_estimate_first(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("litesr.progress.ESTIMATE_AFTER_S", 0.0)
    src = tmp_path / "a.png"
    Image.fromarray(photo(40, 48)).save(src)
    rc, _, err = cli(capsys, "upscale", src, "-o", tmp_path / "b.png", "--weights", tiny[0], "--tile", "16",
                     "--tile-overlap", "4", "--log-interval", "0")
    assert rc == 0  # stderr is not a terminal here: plain lines
    assert "output 96x80 (0.0 MP), 9 tiles, about" in err[0] and "in all" in err[0]
    steps = [line for line in err if "tiles (" in line]
    assert len(steps) == 7 and "2/9 tiles (22%)" in steps[0] and "left" in steps[0]
    with Image.open(tmp_path / "b.png") as img:
        expected = upscale_array(tiny[1], photo(40, 48), InferenceOptions(tile=16, overlap=4))
        assert np.array_equal(np.array(img), expected)


def test_the_estimate_is_not_the_first_tiles_warm_up_times_the_count(monkeypatch):
    from litesr import progress

    clock = iter([0.0, 30.0] + [30.0 + i for i in range(1, 10)])  # a 30 s first tile, then 1 s each
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = progress.Progress(10, "a.png", "lines", interval=1000.0, stream=out)
    for _ in range(10):
        bar.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "10 tiles, about 39 s in all" in lines[0], lines  # not 10 x 30 s = 5 min


# ------------------------------------------------------------------ 5. devices

def test_unknown_device_is_one_line_in_every_command(tiny, tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(photo()).save(src)
    data = REPO.parent / "shared" / "data" / "benchmarks"
    for args in (["upscale", src, "-o", tmp_path / "o.png", "--weights", tiny[0]],
                 ["eval", "--data", data, "--sets", "Set5", "--weights", tiny[0]],
                 ["bench", "pan", "--sizes", "8"],
                 ["train", "--arch", "pan", "--scale", "2", "--train-data", tmp_path, "--out", tmp_path / "run"]):
        rc, _, err = cli(capsys, *args, "--device", "gpu")
        assert rc == 2 and len(err) == 1 and "unknown device 'gpu'" in err[0], (args, err)
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        litesr.upscale(photo(), tiny[1], device="gpu")


# ------------------------------------------------------------------ 6. 16-bit, ICC, EXIF, lossless WebP

def test_16_bit_colour_and_gray_stay_16_bit(tiny, tmp_path, capsys):
    rng = np.random.default_rng(9)
    deep = (photo(10, 14).astype(np.uint16) * 257 + rng.integers(0, 257, (10, 14, 3))).astype(np.uint16)
    colour = tmp_path / "colour16.png"
    litesr.io.write_image(deep, colour)  # a 16-bit RGB PNG (Pillow cannot write one)
    rc, out, _ = cli(capsys, "upscale", colour, "-o", tmp_path / "c.png", "--weights", tiny[0])
    assert rc == 0 and "16-bit" in out
    got = litesr.io.read_picture(tmp_path / "c.png", keep_depth=True)
    expected = upscale_array(tiny[1], deep)
    assert got.rgb.dtype == np.uint16 and np.array_equal(got.rgb, expected)
    assert not np.array_equal(expected >> 8 << 8, expected)  # the low byte carries information
    with Image.open(tmp_path / "c.png") as img:
        assert img.info.get("icc_profile") is None and open(tmp_path / "c.png", "rb").read()[24] == 16

    gray16 = tmp_path / "gray16.png"
    Image.fromarray(deep[..., 1]).save(gray16)  # mode I;16
    for name in ("g.png", "g.tif"):
        assert cli(capsys, "upscale", gray16, "-o", tmp_path / name, "--weights", tiny[0])[0] == 0
        with Image.open(tmp_path / name) as img:
            assert img.mode.startswith("I;16") and img.size == (28, 20)
            rgb = upscale_array(tiny[1], np.repeat(deep[..., 1:2], 3, axis=2))
            r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
            luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16  # Pillow's convert("L"), at 16 bits
            assert np.array_equal(np.array(img).astype(np.int64), luma)
    rc, _, err = cli(capsys, "upscale", gray16, "-o", tmp_path / "g.jpg", "--weights", tiny[0])
    assert rc == 0 and "written as 8-bit" in err[0]


def test_icc_profile_and_exif_are_carried_over_unless_stripped(tiny, tmp_path, capsys):
    icc = srgb_icc()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    exif[0x010F] = "litesr-test-camera"  # Make
    src = tmp_path / "photo.jpg"
    Image.fromarray(photo(12, 16)).save(src, quality=95, icc_profile=icc, exif=exif.tobytes())
    for name in ("o.jpg", "o.png", "o.webp", "o.tif"):
        rc, _, _ = cli(capsys, "upscale", src, "-o", tmp_path / name, "--weights", tiny[0], "--quiet")
        with Image.open(tmp_path / name) as img:
            assert rc == 0 and img.size == (24, 32)  # upright (portrait)
            assert img.info.get("icc_profile") == icc, name
            tags = img.getexif()
            assert tags.get(0x010F) == "litesr-test-camera" and 0x0112 not in tags, name
    rc, _, _ = cli(capsys, "upscale", src, "-o", tmp_path / "s.png", "--weights", tiny[0], "--strip-metadata")
    with Image.open(tmp_path / "s.png") as img:
        assert img.info.get("icc_profile") is None and not img.getexif() and img.size == (24, 32)
    # a gray image keeps a gray profile; an RGB profile would not describe it and is left out
    gray = tmp_path / "gray.png"
    Image.fromarray(photo()[..., 0]).save(gray, icc_profile=gray_icc())
    cli(capsys, "upscale", gray, "-o", tmp_path / "g.png", "--weights", tiny[0])
    with Image.open(tmp_path / "g.png") as img:
        assert img.mode == "L" and img.info.get("icc_profile") == gray_icc()


def test_cmyk_profile_is_not_attached_to_rgb_output(tiny, tmp_path, capsys):
    src = tmp_path / "print.jpg"
    Image.fromarray(photo()).convert("CMYK").save(src, quality=95)
    rc, _, _ = cli(capsys, "upscale", src, "-o", tmp_path / "o.png", "--weights", tiny[0])
    with Image.open(tmp_path / "o.png") as img, Image.open(src) as cmyk:
        assert rc == 0 and img.mode == "RGB" and "icc_profile" not in img.info
        assert np.array_equal(np.array(img), upscale_array(tiny[1], np.array(cmyk.convert("RGB"))))


def test_webp_is_lossless_for_a_lossless_input(tiny, tmp_path, capsys):
    png = tmp_path / "a.png"
    Image.fromarray(photo()).save(png)
    jpg = tmp_path / "b.jpg"
    Image.fromarray(photo()).save(jpg, quality=90)
    out = tmp_path / "out"
    rc, _, _ = cli(capsys, "upscale", png, jpg, "-o", out, "--ext", "webp", "--weights", tiny[0], "--quiet")
    assert rc == 0
    assert b"VP8L" in (out / "a_x2.webp").read_bytes()[:64]
    with Image.open(out / "a_x2.webp") as img:
        assert np.array_equal(np.array(img.convert("RGB")), upscale_array(tiny[1], photo()))
    assert b"VP8 " in (out / "b_x2.webp").read_bytes()[:64]  # a lossy input gives lossy WebP


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK"])
def test_modes_come_out_in_kind(tiny, tmp_path, capsys, mode):
    rgb = photo(10, 12)
    alpha = np.tile(np.linspace(0, 255, 12).astype(np.uint8), (10, 1))
    img = {"L": lambda: Image.fromarray(rgb[..., 0]),
           "LA": lambda: Image.merge("LA", [Image.fromarray(rgb[..., 0]), Image.fromarray(alpha)]),
           "RGBA": lambda: Image.fromarray(np.dstack([rgb, alpha])),
           "P": lambda: Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=32),
           "CMYK": lambda: Image.fromarray(rgb).convert("CMYK")}[mode]()
    src = tmp_path / ("in.tif" if mode == "CMYK" else "in.png")
    img.save(src)
    rc, _, _ = cli(capsys, "upscale", src, "-o", tmp_path / "o.png", "--weights", tiny[0])
    with Image.open(tmp_path / "o.png") as out:
        assert rc == 0 and out.size == (24, 20)
        assert out.mode == {"L": "L", "LA": "LA", "RGBA": "RGBA", "P": "RGB", "CMYK": "RGB"}[mode]
        if mode in ("LA", "RGBA"):
            a = np.array(out.getchannel("A"))
            assert a[:, 0].max() < 40 and a[:, -1].min() > 215  # transparency kept, upscaled
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------ 7. bench reads a checkpoint's scale

def test_bench_takes_a_checkpoints_own_scale(tiny, tmp_path, capsys):
    torch.manual_seed(0)
    imdn = tmp_path / "IMDN_x2.safetensors"
    litesr.save_model(litesr.create_model("imdn", 2), imdn)
    rc, out, err = cli(capsys, "bench", imdn, "--macs-only", "--json", tmp_path / "b.json")
    assert rc == 0 and out.startswith("x2;") and err == []
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["scale"] == 2
    pan3 = tmp_path / "renamed.pth"  # PAN x2 and x3 share every shape: the scale must be given
    torch.save({"params": litesr.create_model("pan", 3).state_dict()}, pan3)
    rc, _, err = cli(capsys, "bench", pan3, "--macs-only")
    assert rc == 2 and len(err) == 1 and "cannot be read from its weights" in err[0]
    rc, out, _ = cli(capsys, "bench", pan3, "--macs-only", "--scale", "3")
    assert rc == 0 and out.startswith("x3;")


# ------------------------------------------------------------------ 8. the Python API

def test_save_model_formats_and_load_model_sniffs(tiny, tmp_path):
    model = tiny[1]
    with pytest.raises(ValueError, match=r"cannot tell the format of .*x\.bin.*\.safetensors"):
        litesr.save_model(model, tmp_path / "x.bin")
    assert not (tmp_path / "x.bin").exists()
    with pytest.raises(TypeError, match="model must be a torch nn.Module, got .*Dict.*load_model"):
        litesr.save_model(model.state_dict(), tmp_path / "y.safetensors")
    with pytest.raises(TypeError, match="path must be"):
        litesr.save_model(model, 42)
    # safetensors bytes under another suffix (as older versions wrote them) still load
    (tmp_path / "old.bin").write_bytes(tiny[0].read_bytes())
    again = litesr.load_model(tmp_path / "old.bin")
    assert again.scale == 2 and all(torch.equal(a, b) for a, b in zip(again.state_dict().values(),
                                                                        model.state_dict().values()))


def test_python_api_wrong_inputs_name_the_argument(tiny):
    model = tiny[1]
    with pytest.raises(TypeError, match="upscale: image must be .*got Tensor.*upscale_tensor"):
        litesr.upscale(torch.zeros(8, 8), model)
    with pytest.raises(ValueError, match="upscale: image array must be uint8 or uint16"):
        litesr.upscale(np.zeros((8, 8), np.float32), model)
    with pytest.raises(ValueError, match="shape"):
        litesr.upscale(np.zeros((8, 8, 5), np.uint8), model)
    with pytest.raises(TypeError, match="upscale: model must be"):
        litesr.upscale(photo(), 3.5)
    with pytest.raises(ValueError, match="upscale: tile must be"):
        litesr.upscale(photo(), model, tile=0)
    with pytest.raises(ValueError, match="upscale: scale must be"):
        litesr.upscale(photo(), model, scale=8)
    with pytest.raises(TypeError, match=r"evaluate: model must be .*litesr.load_model\(path\)"):
        litesr.evaluate("model.pth", "data", "Set5", 4)
    with pytest.raises(TypeError, match="source must be a checkpoint path"):
        litesr.load_model(12)
    # arrays come back in the form they came in: gray stays 2-D, RGBA keeps alpha, uint16 stays uint16
    gray = litesr.upscale(photo()[..., 0], model)
    assert gray.shape == (24, 32) and gray.dtype == np.uint8
    rgba = litesr.upscale(np.dstack([photo(), np.full((12, 16), 200, np.uint8)]), model)
    assert rgba.shape == (24, 32, 4) and (rgba[..., 3] == 200).all()
    deep = litesr.upscale(photo().astype(np.uint16) * 257, model)
    assert deep.dtype == np.uint16 and np.abs(deep.astype(int) // 257 - upscale_array(model, photo())).max() <= 1


def test_python_errors_do_not_advise_cli_flags(tiny):
    from litesr.errors import LitesrError

    with pytest.raises(LitesrError) as info:
        litesr.load_model({"conv.weight": torch.zeros(3, 3, 3, 3)})
    assert "arch=" in str(info.value)
    with pytest.raises(LitesrError, match="an imdn checkpoint; it looks like a pan checkpoint"):
        litesr.load_model(tiny[0], arch="imdn")


# ------------------------------------------------------------------ 10. labels

def test_labels_name_the_variant(tiny, tmp_path, capsys):
    from litesr.checkpoint import model_label

    shipped = litesr.load_model(WEIGHTS_DIR / "elan-light_x4.safetensors")
    assert model_label(shipped) == "elan-light" and model_label(litesr.create_model("elan", 2)) == "elan"
    assert model_label(litesr.create_model("elan-light", 2, c_elan=24)) == "elan (custom)"
    rc, out, _ = cli(capsys, "convert", WEIGHTS_DIR / "elan-light_x4.safetensors", tmp_path / "e.pth")
    assert rc == 0 and "elan-light x4" in out
    torch.manual_seed(0)
    imdn = tmp_path / "imdn.safetensors"
    litesr.save_model(litesr.create_model("imdn", 4), imdn)
    rc, out, _ = cli(capsys, "convert", imdn, tmp_path / "imdn.pth", "--official-buffers")
    assert rc == 0 and "no computed buffers; none added" in out
    saved = torch.load(tmp_path / "imdn.pth", weights_only=True)["params"]
    assert set(saved) == set(litesr.load_model(imdn).state_dict())


def test_eval_labels_the_variant(tmp_path, capsys, monkeypatch):
    import sys

    ev = sys.modules["litesr.evaluate"]  # the package's `evaluate` attribute is the function
    fake = {"Set5": {"psnr_y": 30.0, "ssim_y": 0.9, "images": 5, "lr_generated": False, "per_image": {}}}
    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: fake)
    data = REPO.parent / "shared" / "data" / "benchmarks"
    rc, out, _ = cli(capsys, "eval", "--data", data, "--sets", "Set5", "--arch", "elan-light", "--scale", "4",
                     "--json", tmp_path / "r.json", "--device", "cpu")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert rc == 0 and doc["arch"] == "elan-light" and doc["family"] == "elan"
    assert out.splitlines()[2].startswith("elan-light ")


# ------------------------------------------------------------------ the error family

def test_internal_bugs_keep_their_traceback(tiny, tmp_path, monkeypatch):
    src = tmp_path / "a.png"
    Image.fromarray(photo()).save(src)
    for bug in (KeyError("oops"), ValueError("oops"), RuntimeError("oops")):
        def broken(*args, **kwargs):
            raise bug

        monkeypatch.setattr("litesr.cli.upscale.upscale_one", broken)
        with pytest.raises(type(bug)):
            main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "--weights", str(tiny[0])])


def test_error_classes_share_one_base():
    from litesr.cli import UsageError
    from litesr.data.testsets import BenchmarkNotFoundError
    from litesr.errors import LitesrError
    from litesr.io import ImageReadError
    from litesr.models.registry import CheckpointError, resolve_variant
    from litesr.train import ConfigError

    for cls in (UsageError, ImageReadError, CheckpointError, ConfigError, BenchmarkNotFoundError):
        assert issubclass(cls, LitesrError) and issubclass(cls, ValueError if cls is not BenchmarkNotFoundError
                                                           else FileNotFoundError)
    with pytest.raises(KeyError) as info:
        resolve_variant("nosuchnet")
    assert isinstance(info.value, LitesrError) and str(info.value).startswith("unknown model 'nosuchnet'")


# ------------------------------------------------------------------ 11. README

def test_readme_keeps_the_ci_lines_and_says_how_to_get_a_cpu_build():
    lines = (REPO / "README.md").read_text().splitlines()
    ci = (REPO / ".ci" / "run").read_text()
    assert lines[4] == ('pip install torch==2.13.0 && pip install -q -e ".[test]" && '
                        'python -m pytest -q -m "not slow"')
    assert "python -m pytest -q -m \"not slow\"" in ci
    assert lines[3].startswith("pip install torch==2.13.0 && pip install -e . && litesr upscale")
    head = "\n".join(lines[:20])
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in head


# ------------------------------------------------------------------ bounded output memory

def test_png_output_is_streamed_in_strips_not_held_whole(tmp_path):
    """numpy reports its buffers to tracemalloc: a deterministic peak of the arrays the pipeline holds (the model's
    tensors are one tile's, and not counted)."""
    import tracemalloc

    from litesr.tiling import upscale_array, upscale_strips
    from litesr.io import write_strips

    y, x = np.mgrid[0:3072, 0:256]
    tall = np.stack([x % 256, y % 256, (x * y) % 251], 2).astype(np.uint8)  # output 1024×12288×3: 36 MiB whole
    model = NearestX4()
    tracemalloc.start()
    try:
        write_strips(tmp_path / "big.png", upscale_strips(model, tall, InferenceOptions(tile=128, overlap=8)), 1024,
                     12288)
        streamed = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        held = upscale_array(model, tall, InferenceOptions(tile=128, overlap=8))
        whole = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert whole >= 36 * 2**20 > 4 * streamed, f"streamed {streamed / 2**20:.1f} MiB, held {whole / 2**20:.1f} MiB"
    with Image.open(tmp_path / "big.png") as img:
        assert img.size == (1024, 12288) and np.array_equal(np.array(img), held)


def test_16_bit_gray_with_alpha(tiny, tmp_path, capsys):
    gray = (photo(10, 12)[..., 0].astype(np.uint16) * 257 + 100).astype(np.uint16)
    alpha = np.tile(np.linspace(0, 65535, 12).astype(np.uint16), (10, 1))
    src = tmp_path / "ga16.png"
    litesr.io.write_strips(src, [np.repeat(gray[..., None], 3, axis=2)], 12, 10, alpha=alpha, grayscale=True)
    assert open(src, "rb").read()[24:26] == b"\x10\x04"  # 16-bit gray+alpha
    assert cli(capsys, "upscale", src, "-o", tmp_path / "o.png", "--weights", tiny[0])[0] == 0
    out = litesr.io.read_picture(tmp_path / "o.png", keep_depth=True)
    assert out.grayscale and out.rgb.dtype == np.uint16 and out.alpha.dtype == np.uint16
    assert out.alpha[:, 0].max() < 8000 and out.alpha[:, -1].min() > 57000
    rc, _, err = cli(capsys, "upscale", src, "-o", tmp_path / "o.tif", "--weights", tiny[0])
    with Image.open(tmp_path / "o.tif") as img:
        assert rc == 0 and img.mode == "LA" and "written as 8-bit" in err[0]  # alpha kept, at 8 bits


def test_16_bit_colour_png_is_turned_upright(tiny, tmp_path, capsys):
    deep = (photo(10, 14).astype(np.uint16) * 257 + 77).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise to display
    src = tmp_path / "turned16.png"
    litesr.io.write_strips(src, [deep], 14, 10, exif=exif.tobytes())
    assert cli(capsys, "upscale", src, "-o", tmp_path / "o.png", "--weights", tiny[0])[0] == 0
    got = litesr.io.read_picture(tmp_path / "o.png", keep_depth=True)
    assert got.rgb.dtype == np.uint16 and np.array_equal(got.rgb, upscale_array(tiny[1], np.rot90(deep).copy()))
    with Image.open(tmp_path / "o.png") as img:
        assert 0x0112 not in img.getexif()


def test_alpha_upscaled_by_rows_equals_the_whole_resize():
    from litesr.api import UpscaledAlpha, upscale_alpha

    rng = np.random.default_rng(3)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        alpha = rng.integers(0, top + 1, (37, 23)).astype(dtype)
        for scale in (2, 3, 4):
            whole = upscale_alpha(alpha, scale)
            lazy = UpscaledAlpha(alpha, scale)
            cuts = [0, 1, 7, 8 * scale, 8 * scale + 5, 20 * scale, 37 * scale]
            parts = [lazy[a:b] for a, b in zip(cuts, cuts[1:])]
            assert np.array_equal(np.concatenate(parts), whole) and np.array_equal(np.asarray(lazy), whole)


def test_missing_inputs_are_reported_before_a_model_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("litesr.pretrained.resolve_model", lambda *a, **k: pytest.fail("loaded a model first"))
    rc, _, err = cli(capsys, "upscale", tmp_path / "nope.png", tmp_path / "gone.jpg", "-o", tmp_path / "out")
    assert rc == 2 and err == [f"litesr upscale: error: input not found: {tmp_path / 'nope.png'}, "
                               f"{tmp_path / 'gone.jpg'}"]
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ the Python API reads PIL images as the CLI does

def _cli_output(capsys, tiny, src: Path, dst: Path) -> np.ndarray:
    rc, _, err = cli(capsys, "upscale", src, "-o", dst, "--weights", tiny[0], "--quiet")
    assert rc == 0, err
    return litesr.io.read_picture(dst, keep_depth=True)


def test_python_upscale_of_a_pil_image_gives_what_the_cli_gives_for_its_file(tiny, tmp_path, capsys):
    rng = np.random.default_rng(5)
    # turned by its EXIF orientation, with an ICC profile: comes back upright, profile and EXIF carried
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "litesr test camera"  # rotate 90° clockwise to display; a maker to keep
    src = tmp_path / "turned.png"
    Image.fromarray(photo(10, 14)).save(src, exif=exif.tobytes(), icc_profile=srgb_icc())
    expected = _cli_output(capsys, tiny, src, tmp_path / "turned_out.png")
    with Image.open(src) as img:
        got = litesr.upscale(img, tiny[1], precision="fp32")
    assert got.mode == "RGB" and got.size == (20, 28)  # upright: 10 wide, 14 high before x2
    assert np.array_equal(np.array(got), expected.rgb)
    assert got.info["icc_profile"] == srgb_icc() == expected.icc
    assert 0x0112 not in got.getexif() and got.getexif()[0x010F] == "litesr test camera"
    # LA with transparency, and an opaque LA: LA comes back
    gray = photo(10, 14)[..., 0]
    alpha = rng.integers(0, 256, (10, 14), dtype=np.uint8)
    la = Image.merge("LA", [Image.fromarray(gray), Image.fromarray(alpha)])
    la.save(tmp_path / "la.png")
    expected = _cli_output(capsys, tiny, tmp_path / "la.png", tmp_path / "la_out.png")
    got = litesr.upscale(la, tiny[1], precision="fp32")
    assert got.mode == "LA" and np.array_equal(np.array(got.getchannel("A")), expected.alpha)
    assert np.array_equal(np.array(got.getchannel("L")), expected.rgb[..., 0])
    opaque = litesr.upscale(Image.merge("LA", [Image.fromarray(gray), Image.new("L", (14, 10), 255)]), tiny[1],
                            precision="fp32")
    assert opaque.mode == "LA" and np.array(opaque.getchannel("A")).min() == 255
    # PA (palette with alpha) keeps its alpha
    pa = Image.fromarray(photo(10, 14)).convert("P").convert("PA")
    pa.putalpha(Image.fromarray(alpha))
    got = litesr.upscale(pa, tiny[1], precision="fp32")
    assert got.mode == "RGBA" and np.array_equal(np.array(got.getchannel("A")),
                                                 litesr.api.upscale_alpha(alpha, 2))
    # 16-bit and float gray keep their depth
    deep = (rng.integers(0, 65536, (10, 14))).astype(np.uint16)
    i16 = Image.fromarray(deep)
    assert i16.mode == "I;16"
    i16.save(tmp_path / "deep.png")
    expected = _cli_output(capsys, tiny, tmp_path / "deep.png", tmp_path / "deep_out.png")
    got = litesr.upscale(i16, tiny[1], precision="fp32")
    assert got.mode == "I;16" and np.array_equal(np.array(got), expected.rgb[..., 0])
    wide = litesr.upscale(Image.fromarray(deep.astype(np.int32), "I"), tiny[1], precision="fp32")
    assert wide.mode == "I" and np.array_equal(np.array(wide), np.array(got).astype(np.int32))
    floats = litesr.upscale(Image.fromarray(deep.astype(np.float32) / 65535, "F"), tiny[1], precision="fp32")
    assert floats.mode == "F" and np.abs(np.array(floats) * 65535 - np.array(got)).max() < 0.51


def test_python_upscale_of_a_path_returns_the_files_channels(tiny, tmp_path):
    gray = photo(10, 14)[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = litesr.upscale(tmp_path / "g.png", tiny[1], precision="fp32")
    assert out.shape == (20, 28) and out.dtype == np.uint8
    rgba = np.dstack([photo(10, 14), np.full((10, 14), 100, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = litesr.upscale(tmp_path / "a.png", tiny[1], precision="fp32")
    assert out.shape == (20, 28, 4) and (out[..., 3] == 100).all()


def test_a_read_only_array_gives_no_torch_warning(tiny):
    import subprocess
    import sys

    code = ("import numpy as np, torch, litesr\nfrom PIL import Image\ntorch.manual_seed(0)\n"
            "model = litesr.create_model('pan', 2).eval()\n"
            "arr = np.asarray(Image.fromarray(np.zeros((12, 16, 3), np.uint8)))\nassert not arr.flags.writeable\n"
            "out = litesr.upscale(arr, model)\nassert out.shape == (24, 32, 3)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "writable" not in result.stderr, result.stderr


# ------------------------------------------------------------------ exit codes and the small rest

def test_an_empty_input_folder_is_nothing_to_start(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("litesr.pretrained.resolve_model", lambda *a, **k: pytest.fail("loaded a model first"))
    (tmp_path / "empty").mkdir()
    rc, _, err = cli(capsys, "upscale", tmp_path / "empty", "-o", tmp_path / "out")
    assert rc == 2 and len(err) == 1 and "no images" in err[0] and str(tmp_path / "empty") in err[0], err


def test_full_disk_on_a_single_image_counts_it(tiny, tmp_path, capsys, monkeypatch):
    Image.fromarray(photo()).save(tmp_path / "p.png")

    def full(path, *args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("litesr.io.write._write_png_stream", full)
    rc, _, err = cli(capsys, "upscale", tmp_path / "p.png", "-o", tmp_path / "o.png", "--weights", tiny[0])
    assert rc == 1 and "disk is full" in err[-1] and "p.png not written" in err[-1], err
    assert "0 image" not in err[-1]


def test_rgb_and_gray_png_colour_keys_are_kept_as_alpha(tiny, tmp_path, capsys):
    rgb = photo()
    rgb[2:5, 3:7] = (10, 20, 30)
    Image.fromarray(rgb).save(tmp_path / "key.png", transparency=(10, 20, 30))
    picture = litesr.io.read_picture(tmp_path / "key.png")
    assert picture.alpha is not None and (picture.alpha[2:5, 3:7] == 0).all() and picture.alpha.sum() > 0
    rc, _, err = cli(capsys, "upscale", tmp_path / "key.png", "-o", tmp_path / "o.png", "--weights", tiny[0])
    with Image.open(tmp_path / "o.png") as out:
        assert rc == 0 and out.mode == "RGBA" and np.array(out)[6, 8, 3] == 0
    gray = rgb[..., 0].copy()
    Image.fromarray(gray).save(tmp_path / "gkey.png", transparency=10)
    picture = litesr.io.read_picture(tmp_path / "gkey.png")
    assert picture.grayscale and picture.alpha is not None and (picture.alpha[2:5, 3:7] == 0).all()


def test_bench_warmup_zero_is_allowed_and_a_failed_row_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("litesr.efficiency.measure_isolated",
                        lambda spec, timeout=None: {"error": "out of memory"} if spec.height == 16 else
                        {"latency": 0.01, "times": [0.01], "first": 0.01, "peak_bytes": 2**20, "threads": 1,
                         "warmup": spec.warmup})
    assert main(["bench", "pan", "--scale", "2", "--sizes", "8", "--runs", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "after 0 warm-up" in out
    assert main(["bench", "pan", "--scale", "2", "--sizes", "8", "16", "--runs", "1"]) == 1
    assert "pan at 16x16 failed: out of memory" in capsys.readouterr().out


def test_no_warm_up_times_the_first_call():
    from litesr.efficiency import profile_forward

    calls = []
    result = profile_forward(lambda: calls.append(1), runs=3, warmup=0)
    assert len(calls) == 3 and len(result["times"]) == 3 and result["times"][0] == result["first"]
    calls.clear()
    result = profile_forward(lambda: calls.append(1), runs=3, warmup=2)
    assert len(calls) == 5 and len(result["times"]) == 3
